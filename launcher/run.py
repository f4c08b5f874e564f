"""`podvirt launcher run`: read the spec, prepare the host, run the VM, report, exit.

Order: spec -> accelerator -> disks -> libvirt daemons -> domain XML -> start (with
retries) -> event loop until the guest stops. Every way out reports a phase and ends
with an exit code the pod's restart policy can act on.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from podvirt.launcher.cgroup import CGROUP_ROOT, MemoryCgroup, oom_killed_since, \
    read_memory_cgroup
from podvirt.launcher.console import ConsoleTail
from podvirt.launcher.daemons import DaemonError, LibvirtDaemons
from podvirt.launcher.disks import DiskError, DiskLayout, cloud_init_userdata, prepare_disk, \
    write_seed_iso
from podvirt.launcher.domain import domain_xml
from podvirt.launcher.hostcontext import AssignedDevicesInvalid, HostContext, \
    DevicesNotAllocated, check_allocation, parse_assigned_devices
from podvirt.launcher.deviceplugin.vfio import allocated_addresses
from podvirt.launcher.kvm import AccelUnavailable, KvmVerdict, check_kvm, choose_accel
from podvirt.launcher.migration import MIGRATION_PORT, IncomingRelay, OutgoingRelay, new_identity
from podvirt.launcher.podnet import Passt, PasstError, passt_guest_address
from podvirt.launcher.report import PodReporter, VMStatus, now_rfc3339
from podvirt.launcher.virt import Hypervisor, LibvirtError, VMEvent
from podvirt.quantity import human_bytes
from podvirt.vmspec import SpecInvalid, parse_vm
from podvirt.vmspec import keys as k
from podvirt.vmspec.domainxml import DomainXMLRejected
from podvirt.vmspec.downward import DownwardFileError, parse_annotations_file
from podvirt.vmspec.model import CLOUD_INIT_DIR, CONSOLE_SOCKET, POD_ROOT, VMSpec
from podvirt.vmspec.overhead import OverheadConstants

log = logging.getLogger("podvirt.launcher")

EXIT_OK = 0
EXIT_START_FAILED = 1     # VMStartFailed: the extender's quarantine counts these
EXIT_CONFIG = 2           # the spec or the pod is unusable; retrying cannot help
EXIT_VM_FAILED = 3        # crashed, destroyed, or forced off after the grace period
EXIT_LIBVIRTD = 4         # libvirtd died or stopped answering

CONSOLE_SOCKET_NAME = Path(CONSOLE_SOCKET).name   # in the work dir, which a pod puts there


@dataclass(frozen=True)
class LaunchConfig:
    spec_file: Path
    pod_root: Path = Path(POD_ROOT)
    work_dir: Path | None = None          # default: <pod_root>/launcher
    connect: str | None = None            # existing libvirtd instead of private daemons
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    isolate: bool = True                  # private mount namespace for the daemons
    node: str = ""
    cloud_init_dir: Path = Path(CLOUD_INIT_DIR)
    emulator: str = "/usr/bin/qemu-system-x86_64"
    status_interval: float = 10.0         # how often RSS and daemon health are checked
    start_retry_delay: float = 1.0
    libvirt_cache: Path | None = None     # shared QEMU capabilities cache (tests, bench)
    kvm_check_guest: Path | None = None   # boot payload for the KVM check (default: kvmboot)
    metrics_port: int = 0                 # Prometheus endpoint of the domain; 0: none
    cgroup_root: Path = CGROUP_ROOT       # the container's own cgroups (OOM kills, limit)
    migration_port: int = MIGRATION_PORT  # a migration target's relay (launcher/migration.py)
    incoming_timeout: float = 600.0       # how long a migration target waits for its VM

    @property
    def work(self) -> Path:
        return self.work_dir or self.pod_root / "launcher"


class LaunchFailed(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason = code, reason


def load_spec(spec_file: Path, name: str) -> tuple[VMSpec, dict[str, str]]:
    try:
        annotations = parse_annotations_file(spec_file.read_text())
        return parse_vm(annotations, name=name), annotations
    except OSError as exc:
        raise LaunchFailed(EXIT_CONFIG, "SpecUnreadable",
                           f"cannot read {spec_file}: {exc.strerror}") from None
    except (DownwardFileError, SpecInvalid) as exc:
        raise LaunchFailed(EXIT_CONFIG, "SpecInvalid", f"{spec_file}: {exc}") from None


def decide_accel(mode: str, spec: VMSpec, kvm: KvmVerdict | None) -> str:
    """`auto` trusts the functional check; forcing tcg still needs allow-emulation,
    since only then was the pod's memory priced with the TCG cache."""
    if mode == "kvm":
        return "kvm"
    if mode == "tcg":
        return choose_accel(KvmVerdict(False, "--accel tcg was given"),
                            allow_emulation=spec.allow_emulation)
    assert kvm is not None
    return choose_accel(kvm, allow_emulation=spec.allow_emulation)


def qemu_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class Launcher:
    def __init__(self, cfg: LaunchConfig, reporter: PodReporter):
        self.cfg, self.reporter = cfg, reporter
        self.events: "queue.Queue[VMEvent]" = queue.Queue()
        self.status = VMStatus("Starting", node=cfg.node)
        self.daemons: LibvirtDaemons | None = None
        self.hv: Hypervisor | None = None
        self.qemu_pid: int | None = None
        self.console: ConsoleTail | None = None
        self.passt: Passt | None = None
        self.passt_lost = False
        self.metrics = None
        self.stop_signal = ""       # name of the first SIGTERM/SIGINT received, if any
        self.memory_at_start = MemoryCgroup(None, None)
        self.stop_cause = ""        # why the VM is being stopped (signal, drain, action)
        self.pod_name = ""
        self.domain_name = ""       # the pod's name, or the source pod's for a migrated VM
        self.migration: OutgoingRelay | None = None    # while this VM is being sent away
        self.migration_token = self.migration_target = ""
        self.migration_started = 0.0

    def _publish(self, **changes) -> None:
        new = self.status.with_(**changes)
        if new != self.status or not changes:
            self.status = new
            self.reporter.publish(new)

    def _fail(self, exc: LaunchFailed) -> int:
        log.error("%s: %s", exc.reason, exc)
        self._publish(phase="Failed", failure_reason=exc.reason, failure_message=str(exc)[:1000])
        self.reporter.event(exc.reason, str(exc), warning=True)
        return exc.code

    def run(self) -> int:
        cfg = self.cfg
        name = os.environ.get("POD_NAME") or _read_text(cfg.spec_file.parent / "name") or "vm"
        self.pod_name = name
        # From the first moment: a SIGTERM while preparing must end in a report, not in
        # the default action that would leave the pod's status at Starting forever.
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        self.memory_at_start = read_memory_cgroup(cfg.cgroup_root)
        try:
            try:
                spec, annotations = load_spec(cfg.spec_file, name)
                assigned = parse_assigned_devices(annotations.get(k.ASSIGNED_DEVICES))
                check_allocation(assigned, allocated_addresses(os.environ))
                if assigned:
                    log.info("passthrough devices: %s; /dev/vfio holds %s",
                             ", ".join(f"{d.address} (IOMMU group {d.iommu_group})"
                                       for d in assigned), _listing(Path("/dev/vfio")))
                self._publish()
                accel = self._choose_accel(spec)
                self._publish(accel=accel)
                ctx = self._prepare_host(spec, accel, assigned)
                xml = domain_xml(spec, ctx)
            except AssignedDevicesInvalid as exc:
                raise LaunchFailed(EXIT_CONFIG, "SpecInvalid", str(exc)) from None
            except DevicesNotAllocated as exc:
                raise LaunchFailed(EXIT_CONFIG, k.REASON_DEVICES_NOT_ALLOCATED,
                                   str(exc)) from None
            except DomainXMLRejected as exc:
                raise LaunchFailed(EXIT_CONFIG, "DomainXMLRejected", str(exc)) from None
            self._unless_stopping()
            self._connect()
            if source := annotations.get(k.MIGRATION_SOURCE):
                self._receive(spec, source)
            else:
                self._start(spec, xml)
            return self._supervise(spec)
        except LaunchFailed as exc:
            return self._fail(exc)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._teardown()

    def _unless_stopping(self) -> None:
        """Before the domain runs, a stop request ends the launch: nothing to shut down."""
        if self.stop_signal:
            # Exit 0: the stop was honoured, and restartPolicy OnFailure must not undo it;
            # the phase still says the VM never ran.
            raise LaunchFailed(EXIT_OK, k.REASON_STOPPED_BEFORE_START,
                               f"{self.stop_signal} arrived before the VM started; it was "
                               "not started")

    # --- preparation -----------------------------------------------------------------------

    def _choose_accel(self, spec: VMSpec) -> str:
        kvm = None
        if self.cfg.accel == "auto":
            guest = self.cfg.kvm_check_guest
            kvm = check_kvm(qemu=self.cfg.emulator, guest_dirs=(guest,) if guest else None)
            log.info("%s", kvm.summary)
        try:
            return decide_accel(self.cfg.accel, spec, kvm)
        except AccelUnavailable as exc:
            raise LaunchFailed(EXIT_START_FAILED, k.REASON_START_FAILED, str(exc)) from None

    def _prepare_host(self, spec: VMSpec, accel: str, assigned) -> HostContext:
        cfg = self.cfg
        work = cfg.work
        work.mkdir(parents=True, exist_ok=True)
        layout = DiskLayout(pod_root=cfg.pod_root, work_dir=work)
        vm_uuid = _read_text(cfg.spec_file.parent / "uid") or str(uuidlib.uuid4())
        try:
            disks = tuple(prepare_disk(d, layout) for d in spec.disks)
            iso = None
            if spec.cloud_init:
                iso = str(write_seed_iso(
                    work / "cloud-init.iso",
                    user_data=cloud_init_userdata(spec.cloud_init, cfg.cloud_init_dir),
                    instance_id=vm_uuid, hostname=spec.name))
        except DiskError as exc:
            raise LaunchFailed(EXIT_CONFIG, "DiskUnavailable", str(exc)) from None
        serial = work / "serial.log"
        serial.unlink(missing_ok=True)
        socket = work / CONSOLE_SOCKET_NAME
        socket.unlink(missing_ok=True)
        if spec.pod_nic:
            self.passt = Passt(work, spec.ports)
            try:
                self.passt.start()
            except PasstError as exc:
                raise LaunchFailed(EXIT_START_FAILED, k.REASON_START_FAILED,
                                   f"pod network for NIC {spec.pod_nic.name!r}: {exc}") from None
        return HostContext(
            accel=accel, uuid=vm_uuid, emulator=cfg.emulator, disks=disks, cloud_init_iso=iso,
            serial_log=str(serial), serial_socket=str(socket), assigned=assigned,
            passt_socket=str(self.passt.sock) if self.passt else None,
            nvram=str(work / "nvram.fd") if spec.firmware == "efi" else None,
            host_cpus=tuple(sorted(os.sched_getaffinity(0))),
            tcg_cache_bytes=OverheadConstants().tcg_cache)

    def _connect(self) -> None:
        uri = self.cfg.connect
        if uri is None:
            self.daemons = LibvirtDaemons(self.cfg.work / "libvirt", isolate=self.cfg.isolate,
                                          cache_dir=self.cfg.libvirt_cache)
            log.info("starting private virtlogd and libvirtd in %s", self.daemons.state_dir)
            try:
                self.daemons.start()
            except (DaemonError, OSError) as exc:
                raise LaunchFailed(EXIT_START_FAILED, k.REASON_START_FAILED,
                                   f"libvirt daemons did not start: {exc}") from None
            uri = self.daemons.uri
        try:
            self.hv = Hypervisor(uri, self.events)
        except LibvirtError as exc:
            raise LaunchFailed(EXIT_LIBVIRTD, "LibvirtdUnavailable", str(exc)) from None

    def _start(self, spec: VMSpec, xml: str) -> None:
        assert self.hv is not None
        (self.cfg.work / "domain.xml").write_text(xml)
        log.info("domain XML:\n%s", xml)    # what libvirt is asked to define, in the pod's log
        attempts = 1 + spec.start_retries
        for attempt in range(1, attempts + 1):
            self._unless_stopping()
            try:
                t0 = time.monotonic()
                self.hv.define_and_start(xml)
                log.info("domain %s started (attempt %d/%d, %.2fs)", spec.name, attempt,
                         attempts, time.monotonic() - t0)
                break
            except LibvirtError as exc:
                log.warning("start attempt %d/%d failed: %s", attempt, attempts, exc)
                self.reporter.event("StartAttemptFailed", f"attempt {attempt}/{attempts}: {exc}",
                                    warning=True)
                self.hv.cleanup_failed_start()
                if attempt == attempts:
                    raise LaunchFailed(EXIT_START_FAILED, k.REASON_START_FAILED,
                                       f"VM did not start after {attempts} attempts: {exc}") \
                        from None
                time.sleep(self.cfg.start_retry_delay)
        self._running(spec, spec.name, f"VM {spec.name} is running ({self.status.accel})")
        self._watch_actions()

    def _receive(self, spec: VMSpec, source: str) -> None:
        """Migration target: with a channel open to the source pod only, wait until the
        VM arrives and runs here, fails to, or this pod is told to stop."""
        assert self.hv is not None
        if self.daemons is None:
            raise LaunchFailed(EXIT_CONFIG, k.REASON_MIGRATION_FAILED,
                               "a migration target needs the launcher's own libvirtd")

        def source_cert() -> str | None:
            peer = self.reporter.peer(source)
            if peer is None or peer.annotations.get(k.MIGRATION_TARGET) != self.pod_name:
                return None     # only the source that names us as its target
            return peer.annotations.get(k.MIGRATION_CERT)

        identity = new_identity(self.pod_name)
        self.hv.expect_incoming(source)
        try:
            relay = IncomingRelay(identity, self.daemons.path("/run/libvirt/libvirt-sock"),
                                  source_cert, port=self.cfg.migration_port).start()
        except OSError as exc:
            raise LaunchFailed(EXIT_START_FAILED, k.REASON_MIGRATION_FAILED,
                               f"cannot listen on migration port {self.cfg.migration_port}: "
                               f"{exc}") from None
        self._publish(phase="Incoming", migration_cert=identity.cert_pem)
        self.reporter.event("WaitingForMigration", f"waiting for VM {source} from pod {source}")
        self._watch_actions()    # a stop may come while waiting
        deadline = time.monotonic() + self.cfg.incoming_timeout
        try:
            while True:
                try:
                    ev = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise LaunchFailed(EXIT_VM_FAILED, k.REASON_MIGRATION_FAILED,
                                       f"no VM arrived from pod {source} within "
                                       f"{self.cfg.incoming_timeout:g}s") from None
                if ev.kind == "resumed":
                    break
                if ev.kind == "stopped":
                    raise LaunchFailed(EXIT_VM_FAILED, k.REASON_MIGRATION_FAILED,
                                       f"the migration from pod {source} did not complete "
                                       f"(domain stopped: {ev.detail})")
                if ev.kind == "connection-closed":
                    raise LaunchFailed(EXIT_LIBVIRTD, k.REASON_LIBVIRTD_LOST,
                                       f"lost libvirtd ({ev.detail}) while waiting for VM "
                                       f"{source}")
                if ev.kind == "action" and ev.detail.startswith("stop:"):
                    self.stop_signal = self.stop_signal or "stop"
                    self._unless_stopping()
        finally:
            relay.stop()
        downtime = ""
        try:
            downtime = f", guest paused {self.hv.completed_job().get('downtime', '?')} ms"
        except LibvirtError:
            pass
        self._running(spec, source, f"VM {source} arrived from pod {source} and runs here "
                                    f"({self.status.accel}{downtime})",
                      reason=k.REASON_MIGRATED + "In")

    def _running(self, spec: VMSpec, domain: str, message: str, reason: str = "Started") -> None:
        """The domain runs: find QEMU, follow the console, serve metrics, report."""
        assert self.hv is not None
        self.domain_name = domain
        if self.daemons is not None:
            self.qemu_pid = _read_pid(self.daemons.qemu_pid_file(domain))
        if self.hv.conn.getURI().startswith("qemu") and self.qemu_pid is None:
            self.qemu_pid = _read_pid(Path(f"/run/libvirt/qemu/{domain}.pid"))
        serial = self.cfg.work / "serial.log"
        self.console = ConsoleTail(serial).start()
        if self.cfg.metrics_port:
            self._serve_metrics(domain)
        self._publish(phase="Running", domain_state=self.hv.state(), started_at=now_rfc3339(),
                      qemu_rss=qemu_rss(self.qemu_pid) if self.qemu_pid else None,
                      guest_ip=(passt_guest_address() or "") if spec.pod_nic else "",
                      migration_cert="")
        self.reporter.event(reason, message)

    def _watch_actions(self) -> None:
        """podvirt.io/action requests become events of the main loop."""
        self.reporter.watch_actions(
            lambda action, token: self.events.put(VMEvent("action", f"{action}:{token}")))

    # --- supervision -----------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        self.stop_signal = self.stop_signal or name
        self.events.put(VMEvent("action", f"stop:signal-{name}"))

    def _supervise(self, spec: VMSpec) -> int:
        assert self.hv is not None
        deadline: float | None = None     # end of the ACPI shutdown grace period
        forced = ""                       # why the guest was destroyed, if it was
        while True:
            timeout = self.cfg.status_interval
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - time.monotonic()))
            try:
                ev = self.events.get(timeout=timeout)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline and not forced:
                    log.warning("guest did not shut down within %ds; destroying it",
                                spec.shutdown_grace_seconds)
                    forced = (f"guest did not shut down within {spec.shutdown_grace_seconds}s "
                              "and was destroyed")
                    self._try(self.hv.destroy)
                    continue
                self._health_check()
                continue
            if ev.kind == "stopped":
                return self._stopped(spec, ev.detail, forced)
            if ev.kind == "connection-closed":
                return self._libvirtd_lost(ev.detail)
            if ev.kind == "migration":
                self._migration_ended(spec, ev.detail)
            elif ev.kind == "suspended":
                # A live migration pauses the guest for its last round; still Migrating.
                if self.migration is None:
                    self._publish(phase="Paused", domain_state="paused")
            elif ev.kind == "resumed":
                self._publish(phase="Migrating" if self.migration else "Running",
                              domain_state="running")
            elif ev.kind == "action":
                action, _, token = ev.detail.partition(":")
                if action in (k.MIGRATE, k.MIGRATE_CANCEL):
                    error = (self._begin_migration(spec, token) if action == k.MIGRATE
                             else self._cancel_migration())
                    if error:
                        self.reporter.event(k.EVENT_ACTION_FAILED, f"{action}: {error}",
                                            warning=True)
                    if error or action == k.MIGRATE_CANCEL:
                        self.reporter.ack(action, token, not error)
                    continue     # a migration that started is acknowledged when it ends
                if action == "stop":
                    if self.migration is not None:
                        self._try(self.hv.abort_job)    # stopping wins over moving
                    if deadline is None:
                        # A signal alone does not say why; the pod's DisruptionTarget does
                        # (drain, taint, preemption), and users want to see it.
                        if token.startswith("signal-"):
                            cause = (self.reporter.disruption()
                                     or token.removeprefix("signal-"))
                        else:
                            cause = f"{k.ACTION} stop"
                        self.stop_cause = cause
                        log.info("stopping the VM (%s): ACPI shutdown, %ds grace", cause,
                                 spec.shutdown_grace_seconds)
                        self.reporter.event("ShuttingDown", f"ACPI shutdown of VM {spec.name} "
                                            f"({cause}), {spec.shutdown_grace_seconds}s grace")
                        self._publish(phase="ShuttingDown")
                        deadline = time.monotonic() + spec.shutdown_grace_seconds
                        ok = self._try(self.hv.shutdown)
                    elif token.startswith("signal-") and not forced:
                        # A second signal during the grace: whoever sent it will not wait.
                        forced = (f"a second stop signal ({token.removeprefix('signal-')}) "
                                  "arrived during the ACPI shutdown grace; the guest was "
                                  "destroyed")
                        log.warning("%s", forced)
                        ok = self._try(self.hv.destroy)
                    else:
                        ok = True
                else:
                    error = self._attempt({"pause": self.hv.pause, "resume": self.hv.resume,
                                           "reboot": self.hv.reboot}.get(action, _unknown(action)))
                    ok = not error
                    if error:   # before the ack: whoever waits for it finds the reason
                        self.reporter.event(k.EVENT_ACTION_FAILED, f"{action}: {error}", warning=True)
                if not token.startswith("signal-"):
                    self.reporter.ack(action, token, ok)

    # --- live migration, source side (launcher/migration.py) -------------------------------

    def _begin_migration(self, spec: VMSpec, token: str) -> str:
        """Start sending the VM to the pod our MIGRATION_TARGET names; "" or why not."""
        assert self.hv is not None
        if self.migration is not None:
            return f"a migration to pod {self.migration_target} is already running"
        if self.status.phase != "Running":
            return f"the VM is {self.status.phase}, not Running"
        me = self.reporter.peer()
        if me is None:
            return "the launcher cannot read its own pod"
        target_name = me.annotations.get(k.MIGRATION_TARGET, "")
        if not target_name:
            return f"{k.MIGRATION_TARGET} names no target pod"
        target = self.reporter.peer(target_name)
        if target is None:
            return f"target pod {target_name} cannot be read"
        if target.annotations.get(k.MIGRATION_SOURCE) != self.pod_name:
            return f"pod {target_name} is not a migration target for this VM " \
                   f"({k.MIGRATION_SOURCE} is not {self.pod_name!r})"
        cert = target.annotations.get(k.MIGRATION_CERT)
        if target.annotations.get(k.PHASE) != "Incoming" or not cert or not target.ip:
            return f"target pod {target_name} is not waiting for a migration yet " \
                   f"(phase {target.annotations.get(k.PHASE) or 'none'})"
        identity = new_identity(self.pod_name)
        # Published before the first connection: the target's relay checks it.
        self._publish(migration_cert=identity.cert_pem)
        try:
            relay = OutgoingRelay(identity, cert, (target.ip, self.cfg.migration_port),
                                  self.cfg.work / "migration.sock").start()
        except OSError as exc:
            self._publish(migration_cert="")
            return f"cannot open the migration channel: {exc}"
        self.migration, self.migration_token, self.migration_target = relay, token, target_name
        self.migration_started = time.monotonic()
        self._publish(phase="Migrating")
        self.reporter.event("Migrating", f"live migration of VM {spec.name} to pod "
                            f"{target_name} on node {target.node or '?'}")
        hv = self.hv

        def migrate() -> None:
            try:
                hv.migrate(relay.uri)
                self.events.put(VMEvent("migration", "ok"))
            except LibvirtError as exc:
                self.events.put(VMEvent("migration", f"error: {exc}"))
        threading.Thread(target=migrate, name="migration", daemon=True).start()
        return ""

    def _cancel_migration(self) -> str:
        assert self.hv is not None
        if self.migration is None:
            return "no migration is running"
        return self._attempt(self.hv.abort_job)

    def _migration_ended(self, spec: VMSpec, detail: str) -> None:
        """The migrate call returned. Success ends in the "stopped: migrated" event; a
        failure leaves the VM running here, as it was."""
        if self.migration is None or detail == "ok":
            return
        self.migration.stop()
        self.migration = None
        log.error("migration to pod %s failed: %s", self.migration_target, detail)
        self._publish(phase="Running", migration_cert="")
        self.reporter.event(k.REASON_MIGRATION_FAILED, f"VM {spec.name} keeps running here; "
                            f"the migration to pod {self.migration_target} failed: "
                            f"{detail.removeprefix('error: ')}", warning=True)
        self.reporter.ack(k.MIGRATE, self.migration_token, False)

    def _try(self, fn) -> bool:
        return not self._attempt(fn)

    def _attempt(self, fn) -> str:
        """Run fn; the error's message if it failed, else ""."""
        try:
            fn()
            return ""
        except (LibvirtError, ValueError) as exc:
            log.warning("%s", exc)
            return str(exc) or type(exc).__name__

    def _health_check(self) -> None:
        if self.daemons is not None and not self.daemons.alive():
            self.events.put(VMEvent("connection-closed", "libvirtd process exited"))
            return
        if self.passt is not None and not self.passt.alive() and not self.passt_lost:
            # The guest keeps running but is cut off from the pod network: say so once.
            self.passt_lost = True
            log.error("passt exited: the guest has lost the pod network")
            self.reporter.event("PodNetworkLost", "passt exited: the guest has lost the pod "
                                "network", warning=True)
        rss = qemu_rss(self.qemu_pid) if self.qemu_pid else None
        if rss != self.status.qemu_rss:
            self._publish(qemu_rss=rss)

    def _stopped(self, spec: VMSpec, detail: str, forced: str) -> int:
        if detail == "migrated" and self.migration is not None:
            seconds = time.monotonic() - self.migration_started
            self.migration.stop()
            message = f"VM {spec.name} migrated live to pod {self.migration_target} in " \
                      f"{seconds:.1f}s; it runs there now"
            log.info("%s", message)
            self.reporter.ack(k.MIGRATE, self.migration_token, True)
            self._publish(phase="Succeeded", domain_state="shutoff", migration_cert="",
                          failure_reason=k.REASON_MIGRATED, failure_message=message)
            self.reporter.event(k.REASON_MIGRATED, message)
            return EXIT_OK
        if detail == "shutdown" and not forced:
            log.info("guest shut down")
            self._publish(phase="Succeeded", domain_state="shutoff")
            why = f" ({self.stop_cause})" if self.stop_cause else ""
            self.reporter.event("Stopped", f"VM {spec.name} shut down{why}")
            return EXIT_OK
        reason = k.REASON_VM_STOPPED
        if forced:
            message = forced
        elif detail in ("failed", "crashed") and oom_killed_since(
                self.memory_at_start, memory := read_memory_cgroup(self.cfg.cgroup_root)):
            reason = k.REASON_OOM_KILLED
            limit = human_bytes(memory.limit_bytes) if memory.limit_bytes else "unknown"
            message = (f"the launcher container reached its memory limit ({limit} for a "
                       f"{human_bytes(spec.memory_bytes)} guest) and the kernel's OOM killer "
                       f"killed QEMU{self._pid()}; the VM is gone")
        elif detail == "failed":    # libvirt: the host emulator failed, i.e. QEMU died
            reason = k.REASON_QEMU_EXITED
            message = f"QEMU{self._pid()} exited unexpectedly; the VM is gone (domain stopped: failed)"
        else:
            message = f"domain stopped: {detail}"
        log.error("%s", message)
        self._publish(phase="Failed", domain_state="shutoff", failure_reason=reason,
                      failure_message=message)
        self.reporter.event(reason if reason == k.REASON_OOM_KILLED else
                            "Crashed" if detail in ("crashed", "failed") else "Stopped",
                            message, warning=True)
        return EXIT_VM_FAILED

    def _pid(self) -> str:
        return f" (pid {self.qemu_pid})" if self.qemu_pid else ""

    def _libvirtd_lost(self, detail: str) -> int:
        message = f"lost libvirtd ({detail}); the VM cannot be managed and is stopped"
        if self.qemu_pid:
            # QEMU outlives libvirtd; without a manager it must not keep running unseen.
            try:
                os.kill(self.qemu_pid, signal.SIGKILL)
                message += f" (QEMU pid {self.qemu_pid} killed)"
            except ProcessLookupError:
                pass
        log.error("%s", message)
        self._publish(phase="Failed", failure_reason=k.REASON_LIBVIRTD_LOST, failure_message=message)
        self.reporter.event("LibvirtdLost", message, warning=True)
        return EXIT_LIBVIRTD

    def _serve_metrics(self, vm: str) -> None:
        from prometheus_client import CollectorRegistry, start_http_server
        from podvirt.launcher.metrics import DomainCollector
        hv = self.hv
        assert hv is not None
        registry = CollectorRegistry()
        registry.register(DomainCollector(vm, hv.stats))
        try:
            self.metrics, _ = start_http_server(self.cfg.metrics_port, registry=registry)
        except OSError as exc:     # the VM runs on; say why it cannot be watched
            log.error("metrics port %d: %s", self.cfg.metrics_port, exc)
            self.reporter.event("MetricsUnavailable", f"port {self.cfg.metrics_port}: {exc}",
                                warning=True)

    def _teardown(self) -> None:
        if self.console is not None:
            self.console.stop()
        if self.hv is not None:
            if self.daemons is None or self.daemons.alive():
                self.hv.cleanup_failed_start()
                self.hv.undefine()
            self.hv.close()
        if self.daemons is not None:
            self.daemons.stop()
        if self.passt is not None:
            self.passt.stop()
        if self.metrics is not None:
            self.metrics.shutdown()
        self.reporter.close()


def _unknown(action: str):
    def fail() -> None:
        raise ValueError(f"unknown action {action!r} (pause, resume, reboot, stop)")
    return fail


def _listing(directory: Path) -> str:
    try:
        return ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
    except OSError as exc:
        return f"nothing ({exc.strerror})"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
