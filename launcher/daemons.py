"""Private libvirt daemons for one launcher: virtlogd + libvirtd in their own mount namespace.

As root, libvirtd's QEMU driver uses fixed paths (/etc/libvirt/qemu.conf,
/run/libvirt/qemu, /var/lib/libvirt/...). Two launchers on one machine would share
them and see each other's domains. So the daemons run in a private mount namespace in
which the launcher's state directory is bind-mounted over those paths: each launcher
has its own config, sockets, pid files and logs, and they are still visible from
outside at `state_dir/{etc,run,lib,log,cache}`. In a pod (own filesystem, maybe no
CAP_SYS_ADMIN) `isolate=False` runs the daemons directly with the same config files.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

QEMU_CONF = """\
# Written by podvirt launcher. Inside a pod the pod is the sandbox: QEMU runs as the
# launcher's user, without cgroups or namespaces of its own and without a MAC driver.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
# swtpm (an emulated TPM) too; Debian's default account for it, tss, does not exist here.
swtpm_user = "root"
swtpm_group = "root"
"""
LIBVIRTD_CONF = """\
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""
VIRTLOGD_CONF = 'log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n'

# System path -> subdirectory of the state dir mounted over it.
_MOUNTS = (("/etc/libvirt", "etc"), ("/run/libvirt", "run"), ("/var/lib/libvirt", "lib"),
           ("/var/log/libvirt", "log"), ("/var/cache/libvirt", "cache"))


class DaemonError(RuntimeError):
    pass


@dataclass
class LibvirtDaemons:
    state_dir: Path
    isolate: bool = True
    start_timeout: float = 20.0
    # libvirtd probes QEMU's capabilities (~4 s under load) unless its cache survives;
    # tests and benchmarks share one cache directory between launchers.
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        self.virtlogd: subprocess.Popen | None = None
        self.libvirtd: subprocess.Popen | None = None

    def _source(self, sub: str) -> Path:
        return self.cache_dir if sub == "cache" and self.cache_dir else self.state_dir / sub

    def path(self, system_path: str) -> Path:
        """Where a /run/libvirt/... style path lives as seen from outside the namespace."""
        if not self.isolate:
            return Path(system_path)
        for system, sub in _MOUNTS:
            if system_path == system or system_path.startswith(system + "/"):
                return self._source(sub) / system_path[len(system) + 1:]
        return Path(system_path)

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.path('/run/libvirt/libvirt-sock')}"

    def qemu_pid_file(self, domain: str) -> Path:
        return self.path(f"/run/libvirt/qemu/{domain}.pid")

    def _write_config(self) -> None:
        for _, sub in _MOUNTS:
            self._source(sub).mkdir(parents=True, exist_ok=True)
        etc = self.state_dir / "etc" if self.isolate else Path("/etc/libvirt")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "qemu.conf").write_text(QEMU_CONF)
        (etc / "libvirtd.conf").write_text(LIBVIRTD_CONF)
        (etc / "virtlogd.conf").write_text(VIRTLOGD_CONF)
        if not self.isolate:
            for system, _ in _MOUNTS:
                Path(system).mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self._write_config()
        out = open(self.state_dir / "daemons.out", "ab")
        virtlogd = ["virtlogd", "-f", "/etc/libvirt/virtlogd.conf", "-p", "/run/libvirt/virtlogd.pid"]
        if self.isolate:
            for system, _ in _MOUNTS:
                Path(system).mkdir(parents=True, exist_ok=True)  # mount points
            binds = " && ".join(f"mount --bind {shlex.quote(str(self._source(sub)))} {system}"
                                for system, sub in _MOUNTS)
            virtlogd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                        f"{binds} && exec {shlex.join(virtlogd)}"]
        self.virtlogd = subprocess.Popen(virtlogd, stdout=out, stderr=out, start_new_session=True)
        self._wait_for(self.path("/run/libvirt/virtlogd-sock"), self.virtlogd, "virtlogd")
        libvirtd = ["libvirtd", "-f", "/etc/libvirt/libvirtd.conf",
                    "-p", "/run/libvirt/libvirtd.pid"]
        if self.isolate:
            # Join virtlogd's namespace: the mounts exist once its socket is there.
            libvirtd = ["nsenter", "-t", str(self.virtlogd.pid), "-m", "--", *libvirtd]
        self.libvirtd = subprocess.Popen(libvirtd, stdout=out, stderr=out, start_new_session=True)
        self._wait_for(self.path("/run/libvirt/libvirt-sock"), self.libvirtd, "libvirtd")
        self._wait_until_answering()

    def _wait_for(self, sock: Path, proc: subprocess.Popen, name: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not sock.exists():
            if proc.poll() is not None:
                raise DaemonError(f"{name} exited with {proc.returncode} during start; see "
                                  f"{self.state_dir / 'daemons.out'} and "
                                  f"{self.path('/var/log/libvirt')}/{name}.log")
            if time.monotonic() > deadline:
                raise DaemonError(f"{name} did not create {sock} within {self.start_timeout:g}s")
            time.sleep(0.05)

    def _wait_until_answering(self) -> None:
        import libvirt
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                libvirt.open(self.uri).close()
                return
            except libvirt.libvirtError as exc:
                if time.monotonic() > deadline:
                    raise DaemonError(f"libvirtd does not answer on {self.uri}: {exc}") from None
                time.sleep(0.1)

    def alive(self) -> bool:
        return self.libvirtd is not None and self.libvirtd.poll() is None

    def stop(self) -> None:
        for proc in (self.libvirtd, self.virtlogd):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def namespaces_available() -> bool:
    """Can we make a private mount namespace (root, CAP_SYS_ADMIN, unshare installed)?"""
    if os.geteuid() != 0:
        return False
    try:
        return subprocess.run(["unshare", "--mount", "true"], capture_output=True,
                              timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
