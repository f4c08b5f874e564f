"""Fixtures of the device plugin tests: fake device nodes, a fake kubelet, a plugin manager on
its own thread, and ListAndWatch readers (the fakes themselves: fakes.py)."""

import threading
from pathlib import Path

import pytest

# First: importing the fakes generates the gRPC stubs the podvirt modules below import.
from tests.unit.deviceplugin.fakes import WAIT, FakeKubelet, Watch, make_char_device  # isort: skip

from podvirt.launcher.deviceplugin.devices import plugin_specs
from podvirt.launcher.deviceplugin.manager import Manager, Settings


@pytest.fixture
def dev_root(tmp_path) -> Path:
    """A fake host root with all three device nodes."""
    root = tmp_path / "host"
    for spec in plugin_specs():
        make_char_device(spec.node_under(root))
    return root


@pytest.fixture
def plugin_dir(tmp_path) -> Path:
    d = tmp_path / "dp"
    d.mkdir()
    return d


@pytest.fixture
def kubelet(plugin_dir):
    k = FakeKubelet(plugin_dir / "kubelet.sock")
    yield k
    k.stop()


@pytest.fixture
def run_manager(plugin_dir, dev_root):
    """start(**settings) -> (manager, stop event, thread), stopped at teardown."""
    started = []

    def start(**overrides):
        settings = Settings(**{"plugin_dir": plugin_dir, "dev_root": dev_root, "slots": 3,
                               "poll_interval": 0.05, "register_timeout": 2.0, **overrides})
        manager = Manager(settings)
        manager.start()
        stop = threading.Event()
        thread = threading.Thread(target=manager.run, args=(stop,), daemon=True)
        thread.start()
        started.append((stop, thread))
        return manager, stop, thread

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(WAIT)


@pytest.fixture
def watch():
    opened = []

    def open_watch(socket: Path) -> Watch:
        w = Watch(socket)
        opened.append(w)
        return w

    yield open_watch
    for w in opened:
        w.close()
