"""`podvirt launcher run`: read the spec, prepare the host, run the VM, report, exit.

Order: spec -> accelerator -> disks -> libvirt daemons -> domain XML, then the
supervision loop: start (with retries) or wait for an incoming migration, and watch the
VM until it stops. What to do is decided by supervision/machine.py; this module gathers
the facts and carries the decisions out. Every way out reports a phase and ends with an
exit code (launcher/exitcodes.py) the pod's restart policy can act on.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
import uuid as uuidlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from podvirt.launcher.cgroup import CGROUP_ROOT, MemoryCgroup, read_memory_cgroup
from podvirt.launcher.console import ConsoleTail
from podvirt.launcher.daemons import DaemonError, LibvirtDaemons
from podvirt.launcher.disks import DiskError, DiskLayout, cloud_init_userdata, prepare_disk, \
    write_seed_iso
from podvirt.launcher.domain import copied_disks, domain_xml
from podvirt.launcher.hostcontext import AssignedDevicesInvalid, HostContext, \
    DevicesNotAllocated, check_allocation, parse_assigned_devices
from podvirt.launcher.deviceplugin.vfio import allocated_addresses
from podvirt.launcher.kvm import AccelUnavailable, KvmVerdict, check_kvm, choose_accel
from podvirt.launcher.exitcodes import EXIT_CONFIG, EXIT_LIBVIRTD, EXIT_OK, \
    EXIT_START_FAILED, EXIT_VM_FAILED
from podvirt.launcher.migration import DESTINATION_URI, MIGRATION_PORT, IncomingRelay, \
    OutgoingRelay, incoming_routes, migration_refusal, new_identity, outgoing_sockets
from podvirt.launcher.podnet import Passt, PasstError, passt_guest_address
from podvirt.kubeclient import now_rfc3339
from podvirt.launcher.report import PodReporter, VMStatus
from podvirt.launcher.supervision import machine
from podvirt.launcher.supervision.commands import Ack, AdoptDomain, AttemptStart, Call, \
    CheckHealth, CleanUpFailedStart, CloseChannel, Command, Exit, KillQemu, Log, \
    MeasureMemory, Migrate, PrepareMigration, Publish, ReadDisruption, RecordEvent, \
    WatchActions
from podvirt.launcher.supervision.events import ActionRequested, CallReturned, \
    DisruptionRead, DomainRunning, Event, HealthReport, HypervisorOp, MemoryMeasured, \
    MigrationEnded, MigrationReady, MigrationRefused, QemuKilled, StartAttempted, \
    StopSignal, Tick
from podvirt.launcher.supervision.machine import Guest, State
from podvirt.launcher.virt import Hypervisor, LibvirtError
from podvirt.vmspec import SpecInvalid
from podvirt.vmspec import keys as k
from podvirt.vmspec.domainxml import DomainXMLRejected
from podvirt.vmspec.downward import DownwardFileError, parse_annotations_file
from podvirt.vmspec.model import CLOUD_INIT_DIR, CONSOLE_SOCKET, POD_ROOT, VMSpec
from podvirt.vmspec.contract import DEFAULT_CONTRACT, Contract, ContractInvalid, contract_of_pod

log = logging.getLogger("podvirt.launcher")

__all__ = ["EXIT_CONFIG", "EXIT_LIBVIRTD", "EXIT_OK", "EXIT_START_FAILED", "EXIT_VM_FAILED",
           "LaunchConfig", "LaunchFailed", "Launcher"]

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


def load_spec(spec_file: Path, name: str) -> tuple[VMSpec, dict[str, str], Contract]:
    """The VM, the pod's annotations and the contract the webhook admitted it under: the
    VM is parsed with that contract's limits, as the webhook parsed it."""
    try:
        annotations = parse_annotations_file(spec_file.read_text())
        contract = contract_of_pod(annotations)
        return contract.parse_vm(annotations, name=name), annotations, contract
    except OSError as exc:
        raise LaunchFailed(EXIT_CONFIG, "SpecUnreadable",
                           f"cannot read {spec_file}: {exc.strerror}") from None
    except (DownwardFileError, SpecInvalid, ContractInvalid) as exc:
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
    """Prepares the host, then carries out what supervision/machine.py decides.

    The hypervisor connection, the pod reporter and the clock are injected, so the loop
    runs the same against libvirt and against the fakes of the unit tests."""

    def __init__(self, cfg: LaunchConfig, reporter: PodReporter, *,
                 clock: Callable[[], float] = time.monotonic,
                 connect_hypervisor: Callable[..., Hypervisor] = Hypervisor):
        self.cfg, self.reporter = cfg, reporter
        self.clock, self.connect_hypervisor = clock, connect_hypervisor
        self.inbox: "queue.Queue[Event]" = queue.Queue()   # what the loop reacts to
        self.status = VMStatus("Starting", node=cfg.node)  # as last published
        self.daemons: LibvirtDaemons | None = None
        self.hv: Hypervisor | None = None
        self.xml = ""
        self.copy_disks: tuple[str, ...] = ()   # what a live migration copies (domain.py)
        self.qemu_pid: int | None = None
        self.console: ConsoleTail | None = None
        self.passt: Passt | None = None
        self.metrics = None
        self.stop_signal = ""       # name of the first SIGTERM/SIGINT received, if any
        self.memory_at_start = MemoryCgroup(None, None)
        self.pod_name = ""
        self.channel: IncomingRelay | OutgoingRelay | None = None   # a migration's relay
        self.contract = DEFAULT_CONTRACT       # the pod's podvirt.io/contract, once read

    def _publish(self, **changes) -> None:
        new = self.status.with_(**changes)
        if new != self.status or not changes:
            self.status = new
            self.reporter.publish(new)

    def _fail(self, exc: LaunchFailed) -> int:
        _status, commands = machine.failure(self.status, exc.code, exc.reason, str(exc))
        for command in commands:
            if not isinstance(command, Exit):
                self._execute(command)
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
                spec, annotations, self.contract = load_spec(cfg.spec_file, name)
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
                self.copy_disks = copied_disks(xml, spec, ctx)
            except AssignedDevicesInvalid as exc:
                raise LaunchFailed(EXIT_CONFIG, "SpecInvalid", str(exc)) from None
            except DevicesNotAllocated as exc:
                raise LaunchFailed(EXIT_CONFIG, k.REASON_DEVICES_NOT_ALLOCATED,
                                   str(exc)) from None
            except DomainXMLRejected as exc:
                raise LaunchFailed(EXIT_CONFIG, "DomainXMLRejected", str(exc)) from None
            self._unless_stopping()
            self._connect()
            guest = Guest(name=spec.name, shutdown_grace_seconds=spec.shutdown_grace_seconds,
                          memory_bytes=spec.memory_bytes, start_attempts=1 + spec.start_retries,
                          start_retry_delay=self.cfg.start_retry_delay,
                          memory_at_start=self.memory_at_start)
            if source := annotations.get(k.MIGRATION_SOURCE):
                state = self._receive(guest, source)
            else:
                self.xml = xml
                (self.cfg.work / "domain.xml").write_text(xml)
                log.info("domain XML:\n%s", xml)    # what libvirt is asked to define, in the pod's log
                state = machine.starting(guest, self.status, self.clock())
            return self._supervise(state)
        except LaunchFailed as exc:
            return self._fail(exc)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._teardown()

    def _unless_stopping(self) -> None:
        """Before the domain runs, a stop request ends the launch: nothing to shut down."""
        if self.stop_signal:
            raise LaunchFailed(EXIT_OK, k.REASON_STOPPED_BEFORE_START,
                               machine.not_started(self.stop_signal))

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
            tcg_cache_bytes=self.contract.costs.overhead.tcg_cache)

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
            self.hv = self.connect_hypervisor(uri, self.inbox)
        except LibvirtError as exc:
            raise LaunchFailed(EXIT_LIBVIRTD, "LibvirtdUnavailable", str(exc)) from None

    def _receive(self, guest: Guest, source: str) -> State:
        """Migration target: with a channel open to the source pod only, wait (in the
        Incoming phase) until the VM arrives and runs here, fails to, or we must stop."""
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
            self.channel = IncomingRelay(identity, incoming_routes(self.daemons.path),
                                         source_cert, port=self.cfg.migration_port).start()
        except OSError as exc:
            raise LaunchFailed(EXIT_START_FAILED, k.REASON_MIGRATION_FAILED,
                               f"cannot listen on migration port {self.cfg.migration_port}: "
                               f"{exc}") from None
        self._publish(phase="Incoming", migration_cert=identity.cert_pem)
        self.reporter.event("WaitingForMigration", f"waiting for VM {source} from pod {source}")
        self._watch_actions()    # a stop may come while waiting
        return machine.incoming(guest, self.status, source, self.clock(),
                                self.cfg.incoming_timeout)

    def _watch_actions(self) -> None:
        """podvirt.io/action requests become events of the main loop."""
        self.reporter.watch_actions(
            lambda action, token: self.inbox.put(ActionRequested(action, token)))

    # --- supervision: machine.step decides, this loop carries its commands out --------------

    def _on_signal(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        self.stop_signal = self.stop_signal or name
        self.inbox.put(StopSignal(name))

    def _supervise(self, state: State) -> int:
        while True:
            wait = machine.next_wakeup(state, self.clock(), self.cfg.status_interval)
            try:
                event: Event = self.inbox.get(timeout=wait)
            except queue.Empty:
                event = Tick()
            pending = deque([event])
            while pending:       # a command's answer is decided before the next event
                state, commands = machine.step(state, pending.popleft(), self.clock())
                for command in commands:
                    if isinstance(command, Exit):
                        return command.code
                    answer = self._execute(command)
                    if answer is not None:
                        pending.append(answer)

    def _execute(self, command: Command) -> Event | None:
        match command:
            case Publish(status):
                self.status = status
                self.reporter.publish(status)
            case RecordEvent(reason, message, warning):
                self.reporter.event(reason, message, warning=warning)
            case Ack(action, token, ok):
                self.reporter.ack(action, token, ok)
            case Log(level, message):
                log.log(level, "%s", message)
            case Call(op, answer):
                return CallReturned(op, self._attempt(self._operation(op)), answer)
            case AttemptStart(attempt):
                t0 = self.clock()
                try:
                    self._hypervisor().define_and_start(self.xml)
                except LibvirtError as exc:
                    return StartAttempted(attempt, str(exc) or type(exc).__name__)
                return StartAttempted(attempt, seconds=self.clock() - t0)
            case CleanUpFailedStart():
                self._hypervisor().cleanup_failed_start()
            case AdoptDomain(domain, arrived):
                return self._adopt(domain, arrived)
            case WatchActions():
                self._watch_actions()
            case PrepareMigration(token):
                return self._prepare_migration(token)
            case Migrate():
                self._migrate()
            case CloseChannel():
                if self.channel is not None:
                    self.channel.stop()
                    self.channel = None
            case ReadDisruption(sig):
                return DisruptionRead(sig, self.reporter.disruption())
            case MeasureMemory(detail):
                return MemoryMeasured(detail, read_memory_cgroup(self.cfg.cgroup_root))
            case CheckHealth():
                return HealthReport(
                    libvirtd_alive=self.daemons is None or self.daemons.alive(),
                    passt_alive=self.passt is None or self.passt.alive(),
                    qemu_rss=qemu_rss(self.qemu_pid) if self.qemu_pid else None)
            case KillQemu(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    return QemuKilled(False)
                return QemuKilled(True)
            case _:
                raise TypeError(f"no way to carry out {command!r}")
        return None

    def _hypervisor(self) -> Hypervisor:
        assert self.hv is not None, "the loop runs only once connected"
        return self.hv

    def _operation(self, op: HypervisorOp) -> Callable[[], None]:
        return getattr(self._hypervisor(), _HYPERVISOR_METHODS[op])

    def _attempt(self, fn: Callable[[], None]) -> str:
        """Run fn; the error's message if it failed, else ""."""
        try:
            fn()
            return ""
        except (LibvirtError, ValueError) as exc:
            log.warning("%s", exc)
            return str(exc) or type(exc).__name__

    def _adopt(self, domain: str, arrived: bool) -> DomainRunning:
        """The domain runs: find QEMU, follow the console, serve metrics."""
        assert self.hv is not None
        if self.daemons is not None:
            self.qemu_pid = _read_pid(self.daemons.qemu_pid_file(domain))
        if self.hv.conn.getURI().startswith("qemu") and self.qemu_pid is None:
            self.qemu_pid = _read_pid(Path(f"/run/libvirt/qemu/{domain}.pid"))
        self.console = ConsoleTail(self.cfg.work / "serial.log").start()
        if self.cfg.metrics_port:
            self._serve_metrics(domain)
        downtime = ""
        if arrived:
            try:
                downtime = str(self.hv.completed_job().get("downtime", "?"))
            except LibvirtError:
                pass
        try:
            domain_state = self.hv.state()
        except LibvirtError as exc:     # the report goes on without it
            log.warning("%s", exc)
            domain_state = ""
        return DomainRunning(
            qemu_pid=self.qemu_pid, domain_state=domain_state,
            qemu_rss=qemu_rss(self.qemu_pid) if self.qemu_pid else None,
            guest_ip=(passt_guest_address() or "") if self.passt else "",
            started_at=now_rfc3339(), downtime=downtime)

    # --- live migration, source side (launcher/migration.py) -------------------------------

    def _prepare_migration(self, token: str) -> MigrationReady | MigrationRefused:
        """Open the channel to the pod our MIGRATION_TARGET names, if it waits for us."""
        me = self.reporter.peer()
        target_name = me.annotations.get(k.MIGRATION_TARGET, "") if me else ""
        target = self.reporter.peer(target_name) if target_name else None
        refusal = migration_refusal(me, target_name, target, self.pod_name)
        if refusal or target is None:
            return MigrationRefused(token, refusal)
        identity = new_identity(self.pod_name)
        path = self.daemons.path if self.daemons else Path
        try:
            self.channel = OutgoingRelay(identity, target.annotations[k.MIGRATION_CERT],
                                         (target.ip, self.cfg.migration_port),
                                         outgoing_sockets(path)).start()
        except OSError as exc:
            return MigrationRefused(token, f"cannot open the migration channel: {exc}")
        return MigrationReady(token, target_name, target.node, identity.cert_pem)

    def _migrate(self) -> None:
        hv, channel = self.hv, self.channel
        assert hv is not None and isinstance(channel, OutgoingRelay)

        def migrate() -> None:
            try:
                hv.migrate(DESTINATION_URI, self.copy_disks)
                self.inbox.put(MigrationEnded())
            except LibvirtError as exc:
                self.inbox.put(MigrationEnded(str(exc) or type(exc).__name__))
        threading.Thread(target=migrate, name="migration", daemon=True).start()

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
        if self.channel is not None:
            self.channel.stop()
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


# The Hypervisor method (launcher/virt.py) that carries out each operation.
_HYPERVISOR_METHODS = {HypervisorOp.SHUTDOWN: "shutdown", HypervisorOp.DESTROY: "destroy",
                       HypervisorOp.PAUSE: "pause", HypervisorOp.RESUME: "resume",
                       HypervisorOp.REBOOT: "reboot", HypervisorOp.ABORT_MIGRATION: "abort_job"}


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
