import logging
import os

from podvirt import loglines


def test_each_record_is_one_whole_line(monkeypatch):
    read, write = os.pipe()
    writes = []
    real_write = os.write

    def short_write(fd, data):      # the OS may take part of a write; the rest must follow
        writes.append(len(data))
        return real_write(fd, data[:7])

    handler = loglines.LineHandler(write)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.Logger("t")
    logger.addHandler(handler)
    monkeypatch.setattr(os, "write", short_write)
    logger.warning('{"uid": "a", "outcome": "mutated", "text": "grüße"}')
    monkeypatch.undo()
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        assert pipe.read().decode() == 'WARNING {"uid": "a", "outcome": "mutated", "text": "grüße"}\n'
    assert len(writes) > 1


def test_configure_replaces_root_handlers(tmp_path):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT)
    try:
        loglines.configure("%(name)s: %(message)s", fd=fd)
        assert [type(h) for h in root.handlers] == [loglines.LineHandler]
        logging.getLogger("podvirt.test").info("hello")
        # Other formats in the process (gunicorn's error log) still get every field.
        record = logging.getLogger("x").makeRecord("x", logging.INFO, "f.py", 1, "m", (), None)
        assert logging.Formatter("[%(process)d] [%(thread)d] %(message)s").format(record)
        assert (tmp_path / "log").read_text() == "podvirt.test: hello\n"
    finally:
        os.close(fd)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
