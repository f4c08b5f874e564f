"""The container images the real node runs, built here by hack/images/build.sh.

There is no registry: the script builds every image with buildah (cached by a hash of its
inputs) and exports each as an archive; `up` loads them into the node's containerd. The
script prints its output directory last; `images.txt` there lists one image per line:
`<name> <archive file> <image id>`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "hack" / "images" / "build.sh"
MANIFEST = "images.txt"


class ImageError(RuntimeError):
    """The images could not be built; the message carries the build's own error."""


@dataclass(frozen=True)
class Image:
    name: str          # e.g. localhost/podvirt/launcher:0.1.0
    archive: Path
    image_id: str


def parse_manifest(text: str, directory: Path) -> tuple[Image, ...]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            raise ImageError(f"{directory / MANIFEST}:{number}: expected "
                             f"'<name> <archive> <id>', got {line!r}")
        name, archive, image_id = fields
        found.append(Image(name, directory / archive, image_id))
    return tuple(found)


def ensure(progress: Callable[[str], None]) -> tuple[Image, ...]:
    """Build what is missing or stale (progress lines go to `progress`), then list all."""
    proc = subprocess.Popen(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        progress(line.rstrip())
    if proc.wait() != 0 or not lines:
        tail = "\n".join(lines[-20:])
        raise ImageError(f"{BUILD_SCRIPT} failed (exit {proc.returncode}):\n{tail}")
    directory = Path(lines[-1])
    try:
        return parse_manifest((directory / MANIFEST).read_text(), directory)
    except OSError as exc:
        raise ImageError(f"{BUILD_SCRIPT} printed {directory}, which has no {MANIFEST}: "
                         f"{exc.strerror}") from None
