import pytest

from hack.demo import _reason_lines

MESSAGE = ("0/3 nodes are available: 1 KVM is not usable on this node (podvirt.io/kvm=false); set "
           "podvirt.io/allow-emulation=true to run the VM emulated, 2 needs 200.7Gi (200Gi guest "
           "+ 696Mi overhead), 8Gi free. preemption: 0/3 nodes are available: 3 Preemption is "
           "not helpful for scheduling.")


@pytest.mark.parametrize("message, expected", [
    pytest.param(MESSAGE, [
        "0/3 nodes are available:",
        "  1 KVM is not usable on this node (podvirt.io/kvm=false); set "
        "podvirt.io/allow-emulation=true to run the VM emulated",
        "  2 needs 200.7Gi (200Gi guest + 696Mi overhead), 8Gi free",
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."],
        id="extender-reasons-one-per-line"),
    pytest.param("something else", ["something else"], id="unknown-shape-kept"),
])
def test_reason_lines(message, expected):
    assert _reason_lines(message) == expected
