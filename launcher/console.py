"""Copy the guest's serial console (a file QEMU appends to) to the launcher's stdout."""

from __future__ import annotations

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

    def _run(self) -> None:
        offset = 0
        while True:
            stopping = self._stop.is_set()   # read once more after stop: catch the tail
            try:
                with open(self.path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            if data:
                offset += len(data)
                self.out.write(data)
                self.out.flush()
            if stopping:
                return
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
