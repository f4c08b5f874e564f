"""The device plugins over real gRPC on unix sockets, the test playing kubelet: the fake
Registration server receives the plugins' registrations, then the test dials the plugin
sockets as kubelet does (ListAndWatch, Allocate, ...), removes and recreates device nodes,
and restarts "kubelet" the way kubelet does it."""

import grpc
import pytest

from podvirt.launcher.deviceplugin.api import pb
from podvirt.launcher.deviceplugin.devices import plugin_specs, select_specs

from tests.unit.deviceplugin.fakes import WAIT, FakeKubelet, make_char_device, plugin_stub

pytestmark = pytest.mark.timeout(30)

SPECS = {s.name: s for s in plugin_specs()}
KVM = SPECS["kvm"]


def healthy(name: str, n: int = 3) -> list:
    return [(f"{name}-{i}", "Healthy") for i in range(n)]


def unhealthy(name: str, n: int = 3) -> list:
    return [(f"{name}-{i}", "Unhealthy") for i in range(n)]


def test_registers_every_resource_then_serves_kubelet(kubelet, run_manager, plugin_dir, watch):
    run_manager()
    requests = kubelet.registered(3)
    assert [(r.version, r.resource_name, r.endpoint) for r in requests] == sorted(
        ("v1beta1", s.resource, s.socket_name) for s in plugin_specs())
    assert all(not r.options.pre_start_required for r in requests)
    assert all(not r.options.get_preferred_allocation_available for r in requests)

    channel, stub = plugin_stub(plugin_dir / KVM.socket_name)
    with channel:
        options = stub.GetDevicePluginOptions(pb.Empty(), timeout=WAIT)
        assert not options.pre_start_required
        assert watch(plugin_dir / KVM.socket_name).next() == healthy("kvm")

        answer = stub.Allocate(pb.AllocateRequest(container_requests=[
            pb.ContainerAllocateRequest(devices_ids=["kvm-1"]),
            pb.ContainerAllocateRequest(devices_ids=["kvm-0", "kvm-2"])]), timeout=WAIT)
        assert [[(d.host_path, d.container_path, d.permissions) for d in c.devices]
                for c in answer.container_responses] == [[("/dev/kvm", "/dev/kvm", "rw")]] * 2
        assert not answer.container_responses[0].mounts
        assert not answer.container_responses[0].envs

        with pytest.raises(grpc.RpcError) as refused:
            stub.Allocate(pb.AllocateRequest(container_requests=[
                pb.ContainerAllocateRequest(devices_ids=["tun-0"])]), timeout=WAIT)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "tun-0" in refused.value.details()

        assert stub.PreStartContainer(pb.PreStartContainerRequest(devices_ids=["kvm-0"]),
                                      timeout=WAIT) == pb.PreStartContainerResponse()
        preferred = stub.GetPreferredAllocation(pb.PreferredAllocationRequest(container_requests=[
            pb.ContainerPreferredAllocationRequest(available_deviceIDs=["kvm-0", "kvm-1", "kvm-2"],
                                                   must_include_deviceIDs=["kvm-2"],
                                                   allocation_size=2)]), timeout=WAIT)
        assert [list(c.deviceIDs) for c in preferred.container_responses] == [["kvm-2", "kvm-0"]]


def test_each_plugin_answers_with_its_own_node(kubelet, run_manager, plugin_dir):
    run_manager()
    kubelet.registered(3)
    for spec in plugin_specs():
        channel, stub = plugin_stub(plugin_dir / spec.socket_name)
        with channel:
            answer = stub.Allocate(pb.AllocateRequest(container_requests=[
                pb.ContainerAllocateRequest(devices_ids=[f"{spec.name}-0"])]), timeout=WAIT)
        assert [(d.host_path, d.container_path) for d in answer.container_responses[0].devices] \
            == [(spec.device_path, spec.device_path)]


def test_health_follows_the_device_node(kubelet, run_manager, plugin_dir, dev_root, watch):
    run_manager()
    kubelet.registered(3)
    stream = watch(plugin_dir / KVM.socket_name)
    assert stream.next() == healthy("kvm")

    KVM.node_under(dev_root).unlink()
    assert stream.next() == unhealthy("kvm")
    channel, stub = plugin_stub(plugin_dir / KVM.socket_name)
    with channel, pytest.raises(grpc.RpcError) as refused:
        stub.Allocate(pb.AllocateRequest(container_requests=[
            pb.ContainerAllocateRequest(devices_ids=["kvm-0"])]), timeout=WAIT)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    KVM.node_under(dev_root).write_text("")  # a regular file is no /dev/kvm
    stream.quiet(0.5)
    KVM.node_under(dev_root).unlink()
    make_char_device(KVM.node_under(dev_root))
    assert stream.next() == healthy("kvm")
    stream.quiet(0.3)  # one update per change, not one per tick


def test_a_missing_node_is_served_unhealthy(kubelet, run_manager, plugin_dir, dev_root, watch):
    vhost = SPECS["vhost-net"]
    vhost.node_under(dev_root).unlink()
    run_manager()
    assert len(kubelet.registered(3)) == 3  # registered all the same, as KubeVirt does
    stream = watch(plugin_dir / vhost.socket_name)
    assert stream.next() == unhealthy("vhost-net")
    assert watch(plugin_dir / KVM.socket_name).next() == healthy("kvm")

    make_char_device(vhost.node_under(dev_root))  # e.g. modprobe vhost_net later
    assert stream.next() == healthy("vhost-net")


def test_kubelet_restart_serves_and_registers_again(kubelet, run_manager, plugin_dir, watch):
    """kubelet's restart: it removes every socket in its directory, then creates kubelet.sock."""
    run_manager()
    kubelet.registered(3)
    old_stream = watch(plugin_dir / KVM.socket_name)
    assert old_stream.next() == healthy("kvm")

    kubelet.stop()
    for path in plugin_dir.iterdir():
        path.unlink()
    restarted = FakeKubelet(plugin_dir / "kubelet.sock")
    try:
        requests = restarted.registered(3)
        assert sorted(r.endpoint for r in requests) == sorted(s.socket_name for s in plugin_specs())
        for spec in plugin_specs():
            assert (plugin_dir / spec.socket_name).exists()
        old_stream.ended()  # the old server is stopped, its stream with it
        assert watch(plugin_dir / KVM.socket_name).next() == healthy("kvm")
        assert restarted.requests.empty()
    finally:
        restarted.stop()


def test_a_new_kubelet_sock_alone_means_register_again(kubelet, run_manager, plugin_dir):
    run_manager(specs=select_specs(plugin_specs(), ["kvm"]))
    kubelet.registered(1)
    kubelet.stop()
    (plugin_dir / "kubelet.sock").unlink(missing_ok=True)
    restarted = FakeKubelet(plugin_dir / "kubelet.sock")
    try:
        [request] = restarted.registered(1)
        assert request.resource_name == KVM.resource
    finally:
        restarted.stop()


def test_waits_for_kubelet_and_retries_a_refusal(plugin_dir, run_manager):
    run_manager(specs=select_specs(plugin_specs(), ["tun"]))
    assert (plugin_dir / SPECS["tun"].socket_name).exists()  # served before kubelet is up
    late = FakeKubelet(plugin_dir / "kubelet.sock", refuse=2)
    try:
        [request] = late.registered(1)
        assert request.resource_name == SPECS["tun"].resource
        assert late.refuse == 0
    finally:
        late.stop()


def test_stop_ends_streams_and_removes_only_its_sockets(kubelet, run_manager, plugin_dir, watch):
    _, stop, thread = run_manager()
    kubelet.registered(3)
    stream = watch(plugin_dir / KVM.socket_name)
    assert stream.next() == healthy("kvm")
    stop.set()
    thread.join(WAIT)
    assert not thread.is_alive()
    stream.ended()
    assert sorted(p.name for p in plugin_dir.iterdir()) == ["kubelet.sock"]


def test_serve_errors_are_reported(tmp_path, dev_root):
    from podvirt.launcher.deviceplugin.manager import Manager, Settings
    from podvirt.launcher.deviceplugin.service import ServeError
    missing = tmp_path / "no-such-dir"
    manager = Manager(Settings(plugin_dir=missing, dev_root=dev_root, slots=1))
    with pytest.raises(ServeError, match="no-such-dir"):
        manager.start()


def test_slots_is_the_device_count(kubelet, run_manager, plugin_dir, watch):
    run_manager(slots=110)
    kubelet.registered(3)
    devices = watch(plugin_dir / KVM.socket_name).next()
    assert len(devices) == 110 and devices[-1] == ("kvm-109", "Healthy")
