"""Logging for the request-serving processes (webhook, extender): one line per record,
written with one write(2).

Workers (and their greenlets) share one stderr. A record written whole by one write(2)
on the descriptor arrives whole: a pipe (a container's stderr) never interleaves writes
up to PIPE_BUF, and nothing sits in a stream buffer to be lost at a crash.
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
