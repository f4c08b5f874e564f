"""Copy the guest's serial console log (written by QEMU through virtlogd) to the
launcher's stdout, which is the pod's `kubectl logs`.

virtlogd rotates the log when it grows past its size limit (renames it, starts a new
file); the tail follows the new file from its start instead of waiting at the old
offset, so a chatty guest does not go silent in `kubectl logs`.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import BinaryIO


class ConsoleTail:
    def __init__(self, path: Path, out: BinaryIO | None = None, interval: float = 0.1):
        self.path, self.interval = path, interval
        self.out = out or sys.stdout.buffer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)

    def start(self) -> "ConsoleTail":
        self._thread.start()
        return self

    def _emit(self, data: bytes) -> None:
        if data:
            self.out.write(data)
            self.out.flush()

    def _open(self) -> BinaryIO | None:
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            return None

    def _replaced(self, f: BinaryIO) -> bool:
        """The path now names another file (rotated) or this one shrank (truncated)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return st.st_ino != os.fstat(f.fileno()).st_ino or st.st_size < f.tell()

    def _run(self) -> None:
        f = None
        try:
            while True:
                stopping = self._stop.is_set()   # read once more after stop: catch the tail
                if f is None:
                    f = self._open()
                if f is not None:
                    data = f.read()
                    self._emit(data)
                    if not data and self._replaced(f):
                        self._emit(f.read())    # what came just before the rotation
                        f.close()
                        f = self._open()
                        if f is not None:
                            self._emit(f.read())
                if stopping:
                    return
                self._stop.wait(self.interval)
        finally:
            if f is not None:
                f.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
