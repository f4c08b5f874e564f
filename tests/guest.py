"""The tiny test guest (hack/guest/build.sh: a Debian cloud kernel and a busybox initramfs)
for the tests, the benchmarks and hack/demo.py. It needs a repository checkout, so it lives
here and not in the installed package."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests import REPO

BUILD_SCRIPT = REPO / "hack" / "guest" / "build.sh"


@dataclass(frozen=True)
class TestGuest:
    kernel: Path
    initrd: Path

    def install(self, pod_dir: Path) -> "TestGuest":
        """Link kernel and initrd into a pod directory the spec may name (pod_path rules)."""
        pod_dir.mkdir(parents=True, exist_ok=True)
        links = []
        for src in (self.kernel, self.initrd):
            dst = pod_dir / src.name
            dst.unlink(missing_ok=True)
            dst.symlink_to(src)
            links.append(dst)
        return TestGuest(*links)


def ensure_guest() -> TestGuest:
    """Build (or reuse the cached) test guest; progress goes to stderr."""
    out = subprocess.run(["sh", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE,
                         text=True).stdout.strip().splitlines()[-1]
    return TestGuest(Path(out) / "vmlinuz", Path(out) / "initramfs.cpio.gz")
