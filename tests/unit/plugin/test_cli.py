"""`kubectl podvirt` argument parsing, the pod checks, and the commands it builds."""

import pytest

from podvirt.plugin.cli import build_parser, main
from podvirt.plugin.console import exec_command, remote_errors
from podvirt.plugin.kubeapi import Connection
from podvirt.plugin.kubectl import base_args
from podvirt.plugin.target import PluginError, PodFacts, require_running, require_vnc
from podvirt.plugin.vnc import forward_command, forwarded_to, how_to_connect
from podvirt.vmspec import keys as k
from tests.unit.plugin.fakes import vm_facts


@pytest.mark.parametrize("argv,expected", [
    pytest.param(["console", "vm1"], {"command": "console", "name": "vm1", "namespace": None},
                 id="console"),
    pytest.param(["console", "vm1", "-n", "vms", "--context", "c"],
                 {"name": "vm1", "namespace": "vms", "context": "c"}, id="console-ns"),
    pytest.param(["vnc", "vm1"], {"command": "vnc", "port": 0, "address": "127.0.0.1"},
                 id="vnc-defaults"),
    pytest.param(["vnc", "vm1", "--port", "5901", "--address", "0.0.0.0"],
                 {"port": 5901, "address": "0.0.0.0"}, id="vnc-port"),
    pytest.param(["pause", "vm1"], {"command": "pause", "action": "pause", "timeout": 60.0},
                 id="pause"),
    pytest.param(["stop", "vm1", "--timeout", "5", "--kubeconfig", "/k"],
                 {"action": "stop", "timeout": 5.0, "kubeconfig": "/k"}, id="stop-timeout"),
])
def test_parses(argv, expected):
    args = vars(build_parser().parse_args(argv))
    assert {key: args[key] for key in expected} == expected


@pytest.mark.parametrize("argv,message", [
    pytest.param(["vnc", "vm1", "--port", "70000"], "outside 0-65535", id="port-range"),
    pytest.param(["vnc", "vm1", "--port", "x"], "not a port number", id="port-text"),
    pytest.param(["pause", "vm1", "--timeout", "0"], "more than 0 seconds", id="timeout"),
    pytest.param(["console"], "NAME", id="no-name"),
    pytest.param(["hibernate", "vm1"], "invalid choice", id="unknown-command"),
])
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["pause", "vm1", "--kubeconfig", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no usable kubeconfig") and "Traceback" not in err


@pytest.mark.parametrize("pod,message", [
    pytest.param(PodFacts("web", "vms", phase="Running", launcher_running=True),
                 "not a podvirt VM pod", id="plain-pod"),
    pytest.param(PodFacts("vm1", "vms", labels={k.OPT_IN_LABEL: "true"}),
                 "never turned into a launcher pod", id="not-rendered"),
    pytest.param(PodFacts("vm1", "vms", labels={k.OPT_IN_LABEL: "true"},
                          annotations={k.RENDERED: "h"}, phase="Pending"),
                 r"not running \(pod phase Pending, VM Pending\)", id="pending"),
    pytest.param(PodFacts("vm1", "vms", labels={k.OPT_IN_LABEL: "true"},
                          annotations={k.RENDERED: "h", k.PHASE: "Failed",
                                       k.FAILURE_REASON: "VMStartFailed"}, phase="Failed"),
                 r"not running \(pod phase Failed, VM Failed, VMStartFailed\)", id="failed"),
    pytest.param(vm_facts("Starting"), "is Starting", id="starting"),
    pytest.param(PodFacts("vm1", "vms", labels={k.OPT_IN_LABEL: "true"},
                          annotations={k.RENDERED: "h", k.PHASE: "Running"}, phase="Running",
                          launcher_running=True, deleting=True),
                 "being deleted", id="deleting"),
])
def test_console_needs_a_running_vm_pod(pod, message):
    with pytest.raises(PluginError, match=message):
        require_running(pod)


def test_running_and_paused_vms_take_a_console():
    require_running(vm_facts("Running"))
    require_running(vm_facts("Paused"))


def test_vnc_needs_graphics():
    with pytest.raises(PluginError, match=r"has no graphics \(podvirt.io/graphics: none\)"):
        require_vnc(vm_facts())
    require_vnc(vm_facts(**{k.GRAPHICS: "vnc"}))


def test_console_runs_the_launchers_attach_command_in_the_launcher_container():
    base = base_args(Connection(kubeconfig="/k", context="c"), "vms")
    assert exec_command("/bin/kubectl", base, "vm1") == [
        "/bin/kubectl", "--kubeconfig=/k", "--context=c", "--namespace=vms", "exec", "-i",
        "vm1", "-c", "launcher", "--", "podvirt", "launcher", "console"]
    assert remote_errors("podvirt launcher console: another console session\n"
                         "command terminated with exit code 1\n") == \
        "podvirt launcher console: another console session"


@pytest.mark.parametrize("port,remote", [pytest.param(0, ":5900", id="any-free-port"),
                                         pytest.param(5901, "5901:5900", id="given-port")])
def test_vnc_forwards_the_fixed_vnc_port(port, remote):
    assert forward_command("kubectl", ["--namespace=vms"], "vm1", port, "127.0.0.1") == [
        "kubectl", "--namespace=vms", "port-forward", "--address=127.0.0.1", "pod/vm1", remote]


@pytest.mark.parametrize("line,expected", [
    pytest.param("Forwarding from 127.0.0.1:40123 -> 5900\n", ("127.0.0.1", 40123), id="ipv4"),
    pytest.param("Forwarding from [::1]:5901 -> 5900", ("::1", 5901), id="ipv6"),
    pytest.param("Handling connection for 40123", None, id="connection"),
])
def test_forwarded_to(line, expected):
    assert forwarded_to(line) == expected


def test_how_to_connect_names_the_address_and_port():
    text = how_to_connect("vms/vm1", "127.0.0.1", 40123)
    assert "127.0.0.1:40123" in text and "vncviewer 127.0.0.1::40123" in text
    assert "[::1]:5901" in how_to_connect("vms/vm1", "::1", 5901)
