"""Writing PEM files so that a process watching them never reads half a certificate."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping


def write_pem_files(directory: str | os.PathLike, files: Mapping[str, bytes]) -> list[Path]:
    """Write each name -> PEM into directory; `*.key` files are 0600, the rest 0644.

    Each file is written to a temporary name and renamed into place (atomic on POSIX),
    so the webhook's certificate reloader sees either the old or the new file. Keys are
    written before certificates: a reloader that sees a new cert then finds its key.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(files, key=lambda n: not n.endswith(".key")):
        mode = 0o600 if name.endswith(".key") else 0o644
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(files[name])
            os.replace(tmp, out / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(out / name)
    return written
