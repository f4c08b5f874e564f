"""The action wait logic against a fake API whose launcher follows the real rules."""

import pytest

from podvirt.plugin.actions import ActionWaiter, ack_of, answered
from podvirt.plugin.target import PluginError
from podvirt.vmspec import keys as k
from tests.unit.plugin.fakes import FakePods, real_launcher, vm_facts


def _waiter(pods: FakePods, action: str, timeout: float = 10) -> ActionWaiter:
    return ActionWaiter(pods, "vm1", action, timeout=timeout, interval=0.5, clock=pods.clock,
                        sleep=pods.sleep)


@pytest.mark.parametrize("ack,expected", [
    pytest.param("pause:123:ok", ("pause", "ok"), id="ok"),
    pytest.param("reboot:9:error", ("reboot", "error"), id="error"),
    pytest.param("", None, id="none"),
])
def test_ack_of(ack, expected):
    assert ack_of({k.ACTION_ACK: ack} if ack else {}) == expected


def test_pause_sets_the_action_and_returns_on_the_ack():
    pods = FakePods(vm_facts(), real_launcher())
    assert _waiter(pods, "pause").run() == "VM vms/vm1 paused"
    assert pods.patches == [{k.ACTION: "pause"}]
    assert pods.pod.annotations[k.PHASE] == "Paused"


def test_a_different_previous_ack_is_not_taken_for_ours():
    pods = FakePods(vm_facts("Paused", **{k.ACTION: "pause", k.ACTION_ACK: "pause:7:ok"}),
                    real_launcher())
    assert _waiter(pods, "resume").run() == "VM vms/vm1 resumed"
    assert pods.patches == [{k.ACTION: "resume"}]
    assert pods.pod.annotations[k.ACTION_ACK].startswith("resume:")


def test_repeating_the_acknowledged_action_withdraws_it_first():
    """A second reboot: the launcher would ignore `reboot` while its ack names reboot."""
    pods = FakePods(vm_facts(**{k.ACTION: "reboot", k.ACTION_ACK: "reboot:7:ok"}),
                    real_launcher())
    assert _waiter(pods, "reboot").run() == "VM vms/vm1 is rebooting"
    assert pods.patches == [{k.ACTION: None}, {k.ACTION: "reboot"}]
    assert pods.pod.annotations[k.ACTION_ACK] != "reboot:7:ok"


def test_an_error_ack_is_a_refusal_with_the_launchers_reason():
    pods = FakePods(vm_facts(), real_launcher("error"))
    pods.events = ["reboot: an old failure", "pause: Requested operation is not valid"]
    with pytest.raises(PluginError, match="could not pause VM vms/vm1: Requested operation"):
        _waiter(pods, "pause").run()


def test_an_error_ack_without_an_event_points_to_the_logs():
    pods = FakePods(vm_facts(), real_launcher("error"))
    with pytest.raises(PluginError, match=r"could not pause .*kubectl logs -n vms vm1"):
        _waiter(pods, "pause").run()


def test_no_ack_times_out_naming_the_ack():
    pods = FakePods(vm_facts(), lambda pod: None)      # a launcher that never answers
    with pytest.raises(PluginError, match=r"timed out after 3s .*action-ack: none"):
        _waiter(pods, "pause", timeout=3).run()
    assert pods.now == pytest.approx(3.0)
    assert pods.reads == 8            # the first look, then one per 0.5 s up to the deadline


def test_withdrawal_that_is_never_noticed_times_out():
    pods = FakePods(vm_facts(**{k.ACTION: "stop", k.ACTION_ACK: "stop:7:ok"}), lambda p: None)
    with pytest.raises(PluginError, match="withdraw its acknowledgement of the previous stop"):
        _waiter(pods, "stop", timeout=2).run()


def test_pod_deleted_while_waiting():
    pods = FakePods(vm_facts(), lambda pod: None)
    pods.deleted_after = 2
    with pytest.raises(PluginError, match="while waiting for the launcher to acknowledge "
                                          "pause: pod vms/vm1: not found"):
        _waiter(pods, "pause").run()


def test_vm_that_fails_while_waiting():
    from dataclasses import replace

    def crash(pod):
        if k.ACTION in pod.annotations:
            return replace(pod, annotations={**pod.annotations, k.PHASE: "Failed"})
        return None
    pods = FakePods(vm_facts(), crash)
    with pytest.raises(PluginError, match=r"ended \(Failed\) before the launcher"):
        _waiter(pods, "reboot").run()


def test_stop_is_done_when_the_vm_powered_off_before_the_ack_was_seen():
    from dataclasses import replace
    pods = FakePods(vm_facts(), lambda pod: replace(
        pod, annotations={**pod.annotations, k.PHASE: "Succeeded"}, phase="Succeeded")
        if k.ACTION in pod.annotations else None)
    assert "shutting down" in _waiter(pods, "stop").run()
    assert answered(pods.pod, "stop") == "ok"


@pytest.mark.parametrize("pod,action,message", [
    pytest.param(vm_facts("Starting"), "pause", "is Starting .* needs it Running or Paused",
                 id="starting"),
    pytest.param(vm_facts("ShuttingDown"), "reboot", "is ShuttingDown", id="shutting-down"),
    pytest.param(vm_facts("Succeeded"), "stop", "is Succeeded", id="already-stopped"),
])
def test_actions_need_a_vm_that_takes_them(pod, action, message):
    pods = FakePods(pod, real_launcher())
    with pytest.raises(PluginError, match=message):
        _waiter(pods, action).run()
    assert pods.patches == []


def test_stop_while_shutting_down_is_accepted():
    pods = FakePods(vm_facts("ShuttingDown"), real_launcher())
    assert "shutting down" in _waiter(pods, "stop").run()


def test_unknown_action():
    with pytest.raises(PluginError, match="unknown action 'hibernate'"):
        ActionWaiter(FakePods(vm_facts(), real_launcher()), "vm1", "hibernate")
