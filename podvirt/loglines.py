"""Logging for the request-serving processes (webhook, extender): one line per record,
written with one write(2), no lock.

Why not logging.StreamHandler: under gevent workers a log record cost the webhook ~25 µs
of a ~250 µs review. gevent's monkey-patching turns logging's RLocks into pure-Python
ones (the handler takes its lock twice per record) and the text stream flushes each
line separately. A line is written whole by one write(2) on the descriptor instead:
a pipe (a container's stderr) never interleaves writes up to PIPE_BUF, so workers and
greenlets need no lock, and nothing is buffered to be lost at a crash.
"""

from __future__ import annotations

import logging
import os
import sys


class LineHandler(logging.Handler):
    """Each record as one line, written with as few write(2) calls as the OS allows
    (one, for lines up to PIPE_BUF on a pipe)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def createLock(self) -> None:
        pass                # no lock, and no fork hook to re-create one

    # Handler.acquire/release skip a None lock. gevent's monkey-patching hands every
    # registered handler a new (pure-Python) RLock; this one declines it.
    @property               # type: ignore[override]
    def lock(self) -> None:
        return None

    @lock.setter
    def lock(self, _value: object) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            while data:
                data = data[os.write(self.fd, data):]
        except Exception:
            self.handleError(record)


def configure(fmt: str, *, level: int = logging.INFO, fd: int | None = None) -> None:
    """Root logging for a serving process: `fmt` lines on `fd` (default stderr's)."""
    handler: logging.Handler
    try:
        handler = LineHandler(sys.stderr.fileno() if fd is None else fd)
    except (AttributeError, OSError, ValueError):   # a stderr without a descriptor
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    # The logging HOWTO's switches that drop record fields (caller, thread, process) would
    # save ~2 µs more per record, but they are process-wide: gunicorn's own error log
    # formats %(process)d and failed on the None they leave.
    logging.basicConfig(level=level, handlers=[handler], force=True)
