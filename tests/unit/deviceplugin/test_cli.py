"""`podvirt device-plugin` as a process: registration, SIGTERM shutdown, and errors that
are one clear line and an exit code, never a traceback."""

import signal
import subprocess
import sys

import pytest

from podvirt.cli import build_parser, main

from tests.unit.deviceplugin.fakes import WAIT, FakeKubelet

pytestmark = pytest.mark.timeout(30)


def test_listed_in_podvirt_help():
    assert "device-plugin" in build_parser().format_help()


@pytest.mark.parametrize("sigterm", [
    pytest.param(signal.SIGTERM, id="sigterm"),
    pytest.param(signal.SIGINT, id="sigint"),
])
def test_registers_then_shuts_down_cleanly(plugin_dir, dev_root, sigterm):
    kubelet = FakeKubelet(plugin_dir / "kubelet.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "podvirt.cli", "device-plugin", "--plugin-dir", str(plugin_dir),
         "--dev-root", str(dev_root), "--slots", "2", "--resources", "kvm,vhost-net",
         "--poll-interval", "0.1"], stderr=subprocess.PIPE, text=True)
    try:
        requests = kubelet.registered(2)
        assert [r.resource_name for r in requests] == ["devices.podvirt.io/kvm",
                                                       "devices.podvirt.io/vhost-net"]
        proc.send_signal(sigterm)
        _, stderr = proc.communicate(timeout=WAIT)
        assert sorted(p.name for p in plugin_dir.iterdir()) == ["kubelet.sock"]
    finally:
        proc.kill()
        kubelet.stop()
    assert proc.returncode == 0, stderr
    assert "kvm: registered devices.podvirt.io/kvm" in stderr
    assert f"{sigterm.name}: shutting down" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("args, message", [
    pytest.param(["--plugin-dir", "{tmp}/absent"], "plugin directory {tmp}/absent does not exist or is not a directory",
                 id="plugin-dir-missing"),
    pytest.param(["--dev-root", "{tmp}/absent"],
                 "dev root {tmp}/absent does not exist or is not a directory",
                 id="dev-root-missing"),
    pytest.param(["--resources", "kvm,gpu"],
                 "--resources: unknown resource(s) gpu; known: kvm, tun, vhost-net",
                 id="unknown-resource"),
])
def test_configuration_errors(tmp_path, capsys, args, message):
    argv = ["device-plugin", "--plugin-dir", str(tmp_path), "--dev-root", str(tmp_path)]
    argv += [a.format(tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"podvirt device-plugin: error: {message.format(tmp=tmp_path)}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [
    pytest.param(["--slots", "0"], id="no-slots"),
    pytest.param(["--slots", "many"], id="slots-not-a-number"),
    pytest.param(["--poll-interval", "0"], id="no-interval"),
])
def test_argument_errors(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exited:
        main(["device-plugin", "--plugin-dir", str(tmp_path), *args])
    assert exited.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_socket_that_cannot_be_served_is_an_error(plugin_dir, dev_root, capsys):
    (plugin_dir / "podvirt-kvm.sock").mkdir()  # in the way: cannot be removed as a file
    argv = ["device-plugin", "--plugin-dir", str(plugin_dir), "--dev-root", str(dev_root)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("podvirt device-plugin: error: cannot remove the old ")
    assert "podvirt-kvm.sock" in err
