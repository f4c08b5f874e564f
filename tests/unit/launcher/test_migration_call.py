"""What the launcher asks libvirt for in a live migration, and how the relay names the
channel of each connection (launcher/virt.py, launcher/migration.py): pure parts."""

from pathlib import Path

import pytest

from podvirt.launcher import migration as m
from podvirt.launcher.virt import migration_call

libvirt = pytest.importorskip("libvirt")


def test_memory_goes_on_its_own_channel_and_no_disk_is_copied_without_ephemeral_disks():
    params, flags = migration_call(())
    assert params == {libvirt.VIR_MIGRATE_PARAM_URI: m.MEMORY_URI}
    assert flags == libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER


def test_ephemeral_disks_are_copied_top_layer_only_over_the_disks_channel():
    params, flags = migration_call(("vda", "vdc"))
    assert params == {libvirt.VIR_MIGRATE_PARAM_URI: m.MEMORY_URI,
                      libvirt.VIR_MIGRATE_PARAM_DISKS_URI: m.DISKS_URI,
                      libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda", "vdc"]}
    assert flags & libvirt.VIR_MIGRATE_NON_SHARED_INC
    # libvirt copies no disks in a tunnelled migration ("argument key 'host' must not
    # have null value"), and a full copy would send the container disk's base again.
    assert not flags & (libvirt.VIR_MIGRATE_TUNNELLED | libvirt.VIR_MIGRATE_NON_SHARED_DISK)


def test_both_pods_use_the_same_socket_paths_mapped_to_where_each_daemon_sees_them():
    def private(p: str) -> Path:      # a private daemon's /run/libvirt is its state dir's
        return Path("/state") / p.removeprefix("/run/libvirt/")
    out, into = m.outgoing_sockets(private), m.incoming_routes(private)
    assert set(out) == set(into) == {m.LIBVIRT, m.MEMORY, m.DISKS}
    assert out[m.MEMORY] == into[m.MEMORY] == Path("/state/podvirt-migration/memory.sock")
    assert out[m.LIBVIRT] != into[m.LIBVIRT] == Path("/state/libvirt-sock")
    assert m.DESTINATION_URI.endswith(f"socket={m.SOCKETS[m.LIBVIRT]}")
    assert m.MEMORY_URI == "unix:///run/libvirt/podvirt-migration/memory.sock"


@pytest.mark.parametrize("header, channel", [
    pytest.param(m.channel_header(m.DISKS), m.DISKS, id="disks"),
    pytest.param(m.channel_header(m.LIBVIRT), m.LIBVIRT, id="libvirt"),
    pytest.param(b"memory", None, id="no-newline"),
    pytest.param(b"console\n", None, id="unknown"),
    pytest.param(b"", None, id="closed-before-naming"),
])
def test_a_connection_names_its_channel_first(header, channel):
    routes = m.incoming_routes(Path)
    if channel is None:
        with pytest.raises(ValueError, match="unknown migration channel"):
            m.parse_channel(header, routes)
    else:
        assert m.parse_channel(header, routes) == channel
