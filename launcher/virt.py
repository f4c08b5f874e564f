"""The launcher's only libvirt caller: one connection, one domain, events as values.

libvirt callbacks run on the event-loop thread; they only put events
(supervision/events.py) on a queue, and the launcher's main loop consumes them, so no
launcher state is touched from two threads.
"""

from __future__ import annotations

import queue
import threading
from typing import Sequence

import libvirt

from podvirt.launcher.migration import DISKS_URI, MEMORY_URI
from podvirt.launcher.supervision.events import DomainResumed, DomainStarted, \
    DomainStopped, DomainSuspended, Event, GuestShutdownRequested, LibvirtdLost

# Live and peer-to-peer; the target keeps no persistent definition (the launcher defines
# nothing either). Not tunnelled: libvirt copies no disks in a tunnelled migration.
MIGRATE_FLAGS = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER


def migration_call(copy_disks: Sequence[str]) -> tuple[dict, int]:
    """migrateToURI3's parameters and flags: QEMU's stream, and the NBD copy of
    `copy_disks` (target names), on launcher/migration.py's channel sockets.

    NON_SHARED_INC copies each disk's top layer only: an overlay's base (the container
    disk, the file) is in the target pod too, and a scratch image has no base, so the
    top layer is the whole disk. The target launcher created the empty images already."""
    params: dict = {libvirt.VIR_MIGRATE_PARAM_URI: MEMORY_URI}
    if not copy_disks:
        return params, MIGRATE_FLAGS
    params |= {libvirt.VIR_MIGRATE_PARAM_DISKS_URI: DISKS_URI,
               libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: list(copy_disks)}
    return params, MIGRATE_FLAGS | libvirt.VIR_MIGRATE_NON_SHARED_INC

_STOPPED_DETAILS = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED: "migrated",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED: "saved",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "failed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT: "from-snapshot",
}
_CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "error",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "end of file on the socket",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timeout",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed by the client",
}
DOMAIN_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting-down", libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


_event_loop_lock = threading.Lock()
_event_loop_started = False


def start_event_loop() -> None:
    """Register libvirt's default event implementation once and run it on a daemon thread.

    Must happen before a connection is opened, or that connection gets no events.
    """
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        # Errors reach us as exceptions; libvirt's default handler would also print them.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()
        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


class LibvirtError(RuntimeError):
    pass


class Hypervisor:
    """A connection to libvirtd and the single domain this launcher runs."""

    def __init__(self, uri: str, events: "queue.Queue[Event]", *, keepalive: int = 2):
        start_event_loop()
        self.events = events
        try:
            self.conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"cannot connect to libvirtd at {uri}: "
                               f"{exc.get_error_message()}") from None
        self.domain: libvirt.virDomain | None = None
        self._incoming: str | None = None    # name of a domain expected by migration
        self._callback_ids: list[int] = []
        if uri.startswith("test:"):
            return  # the test driver has no keepalive or close events
        # Keepalive makes a hung (not just dead) libvirtd visible too: 3 missed pings.
        self.conn.setKeepAlive(keepalive, 3)
        self.conn.registerCloseCallback(self._on_close, None)

    def _on_close(self, _conn, reason: int, _opaque) -> None:
        self.events.put(LibvirtdLost(_CLOSE_REASONS.get(reason, str(reason))))

    def _on_lifecycle(self, _conn, dom, event: int, detail: int, _opaque) -> None:
        if self.domain is None and self._incoming == dom.name() \
                and event == libvirt.VIR_DOMAIN_EVENT_STARTED:
            self.domain = dom     # an incoming migration created it, paused until done
        if self.domain is None or dom.UUIDString() != self.domain.UUIDString():
            return
        if event == libvirt.VIR_DOMAIN_EVENT_STARTED:
            self.events.put(DomainStarted())
        elif event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            self.events.put(DomainStopped(_STOPPED_DETAILS.get(detail, str(detail))))
        elif event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED:
            self.events.put(DomainSuspended())
        elif event == libvirt.VIR_DOMAIN_EVENT_RESUMED:
            self.events.put(DomainResumed())
        elif event == libvirt.VIR_DOMAIN_EVENT_SHUTDOWN:
            self.events.put(GuestShutdownRequested())

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"{what}: {exc.get_error_message()}") from None

    def _watch_lifecycle(self) -> None:
        if not self._callback_ids:
            self._callback_ids.append(self.conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None))

    def define_and_start(self, xml: str) -> None:
        """Define the domain (replacing a leftover one) and start it."""
        self._watch_lifecycle()
        self.domain = self._call("define domain", self.conn.defineXML, xml)
        self._call("start domain", self.domain.create)

    def expect_incoming(self, name: str) -> None:
        """Adopt the domain `name` when a migration brings it: its "resumed" event says
        it runs here; a "stopped" one that it did not arrive."""
        self._incoming = name
        self._watch_lifecycle()

    def migrate(self, uri: str, copy_disks: Sequence[str] = ()) -> None:
        """Blocks until the domain runs at `uri`'s libvirtd (or raises); `copy_disks`
        (target names) go with it (migration_call)."""
        assert self.domain is not None
        params, flags = migration_call(copy_disks)
        self._call("live migration", self.domain.migrateToURI3, uri, params, flags)

    def abort_job(self) -> None:
        assert self.domain is not None
        self._call("cancel migration", self.domain.abortJob)

    def completed_job(self) -> dict:
        """Statistics of the last completed job (a migration: downtime, time, bytes)."""
        assert self.domain is not None
        return self._call("job stats", self.domain.jobStats,
                          libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)

    def cleanup_failed_start(self) -> None:
        if self.domain is None:
            return
        try:
            if self.domain.isActive():
                self.domain.destroy()
        except libvirt.libvirtError:
            pass

    def undefine(self) -> None:
        if self.domain is not None:
            try:
                self.domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            except libvirt.libvirtError:
                try:
                    self.domain.undefine()
                except libvirt.libvirtError:
                    pass

    def stats(self) -> dict | None:
        """libvirt's stats record of the domain (state, cpu, balloon, vcpu, block, net),
        or None while no domain is defined."""
        if self.domain is None:
            return None
        records = self._call("domain stats", self.conn.domainListGetStats, [self.domain], 0)
        return dict(records[0][1]) if records else None

    def state(self) -> str:
        assert self.domain is not None
        state, _reason = self._call("domain state", self.domain.state)
        return DOMAIN_STATES.get(state, str(state))

    def shutdown(self) -> None:
        assert self.domain is not None
        self._call("ACPI shutdown", self.domain.shutdownFlags,
                   libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)

    def destroy(self) -> None:
        assert self.domain is not None
        self._call("destroy", self.domain.destroy)

    def pause(self) -> None:
        assert self.domain is not None
        self._call("pause", self.domain.suspend)

    def resume(self) -> None:
        assert self.domain is not None
        self._call("resume", self.domain.resume)

    def reboot(self) -> None:
        assert self.domain is not None
        self._call("reboot", self.domain.reboot, 0)

    def close(self) -> None:
        try:
            for cid in self._callback_ids:
                self.conn.domainEventDeregisterAny(cid)
            self.conn.unregisterCloseCallback()
        except libvirt.libvirtError:
            pass
        try:
            self.conn.close()
        except libvirt.libvirtError:
            pass
