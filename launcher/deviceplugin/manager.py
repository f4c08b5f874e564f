"""The device plugins' loop: poll each device node's health, keep each plugin's socket
served and registered with the kubelet of the moment, and clean up on the way out.

Kubelet, when it (re)starts, deletes every socket in its device-plugins directory and then
creates kubelet.sock anew; plugins must serve again and register again. Every tick
therefore checks, per plugin: is our socket file still ours (else serve again), and is the
kubelet.sock we registered with still the one there (else register again). Polling keeps
it simple and needs nothing from the host but stat(); a tick is `poll_interval` seconds.
With VFIO settings a tick also rescans sysfs: a resource whose first device is bound to
vfio-pci gets its plugin then, and device lists follow binds, unbinds and group nodes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from podvirt.launcher import pci
from podvirt.launcher.deviceplugin import devices, vfio
from podvirt.launcher.deviceplugin.devices import PluginSpec
from podvirt.launcher.deviceplugin.kubelet import RegistrationError, register, socket_identity
from podvirt.launcher.deviceplugin.service import (Health, PluginServer, ServeError,
                                                   SharedNode)
from podvirt.launcher.deviceplugin.vfioserve import PodSource, VfioResource
from podvirt.vmspec.devicemap import NO_RULES, DeviceResources

log = logging.getLogger("podvirt.deviceplugin")


@dataclass(frozen=True)
class VfioSettings:
    """Where VFIO devices are seen: sysfs for what is bound (pci.scan), and the host's
    directory of group nodes, which kubelet hands to containers (the plugin stats it
    under dev_root)."""
    sys_root: Path = Path("/sys")
    host_vfio_dir: str = "/dev/vfio"
    resources: DeviceResources = NO_RULES
    pods: PodSource | None = None     # pending pods on this node, for preferred allocation


@dataclass(frozen=True)
class Settings:
    plugin_dir: Path = Path(devices.DEFAULT_PLUGIN_DIR)
    dev_root: Path = Path("/")      # where the host's /dev is seen: <dev_root>/dev/kvm
    slots: int = devices.DEFAULT_SLOTS
    specs: tuple[PluginSpec, ...] = field(default_factory=devices.plugin_specs)
    poll_interval: float = 2.0
    register_timeout: float = 5.0
    vfio: VfioSettings | None = None  # None: no passthrough devices served

    @property
    def kubelet_socket(self) -> Path:
        return self.plugin_dir / devices.KUBELET_SOCKET


def _health_word(healthy: bool) -> str:
    return devices.HEALTHY if healthy else devices.UNHEALTHY


def _describe(value) -> str:
    if isinstance(value, bool):
        return _health_word(value)
    return ", ".join(f"{d.address} {vfio.health(d)}" for d in value) or "no devices"


class _Plugin:
    """One resource's runtime state: its server, what it serves, and its registration."""

    def __init__(self, served, settings: Settings, value) -> None:
        self.served = served
        self.health = Health(value)
        self.server = PluginServer(served, settings.plugin_dir, self.health)
        self.registered_with: tuple[int, int, int] | None = None
        self.registrations = 0
        self.last_error = ""

    @property
    def name(self) -> str:
        return self.served.name

    def error_once(self, message: str) -> None:
        """Log a failure when it differs from the last one: a tick repeats it otherwise."""
        if message != self.last_error:
            log.warning("%s: %s", self.name, message)
            self.last_error = message


class Manager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._plugins: list[_Plugin] = []
        for spec in settings.specs:
            shared = SharedNode(spec, settings.slots, spec.node_under(settings.dev_root))
            self._plugins.append(_Plugin(shared, settings, shared.refresh()))
        self._vfio: dict[str, _Plugin] = {}
        self._kubelet_missing_logged = False

    def start(self) -> None:
        """Serve every plugin; raises ServeError (nothing left served) when one cannot."""
        try:
            self._add_vfio_plugins(self._vfio_scan())
            for p in self._plugins:
                self._serve(p)
        except ServeError:
            self.shutdown()
            raise

    def _serve(self, p: _Plugin) -> None:
        p.server.start()
        p.registered_with = None
        _, value = p.health.snapshot()
        where = p.served.node if isinstance(p.served, SharedNode) else "VFIO"
        log.info("%s: serving %s on %s: %s (%s)", p.name, p.served.resource, p.server.socket,
                 f"{self.settings.slots} devices {_health_word(value)}"
                 if isinstance(value, bool) else _describe(value), where)

    # --- VFIO ------------------------------------------------------------------------------

    def _vfio_scan(self):
        """(resource -> its devices now), or {} without VFIO settings."""
        v = self.settings.vfio
        if v is None:
            return {}
        scan = pci.scan(v.sys_root, v.resources)
        seen = Path(self.settings.dev_root, v.host_vfio_dir.lstrip("/"))
        present = {g: devices.device_present(seen / str(g))
                   for g in {d.iommu_group for d in scan if d.iommu_group >= 0}}
        vfio_present = devices.device_present(seen / vfio.VFIO_CONTAINER)
        return {r: vfio.devices_of(r, scan, present, vfio_present)
                for r in set(vfio.resources_of(scan)) | set(self._vfio)}

    def _add_vfio_plugins(self, found) -> None:
        """A plugin for each new resource; the tick's loop serves and registers it."""
        v = self.settings.vfio
        for resource, value in sorted(found.items()):
            if resource in self._vfio or v is None:
                continue
            p = _Plugin(VfioResource(resource, v.host_vfio_dir, v.pods), self.settings, value)
            self._vfio[resource] = p
            self._plugins.append(p)

    def tick(self) -> None:
        kubelet = socket_identity(self.settings.kubelet_socket)
        if kubelet is None and not self._kubelet_missing_logged:
            log.info("waiting for kubelet: %s does not exist", self.settings.kubelet_socket)
        self._kubelet_missing_logged = kubelet is None
        found = self._vfio_scan()
        for p in self._plugins:
            self._refresh(p, found)
        self._add_vfio_plugins(found)
        for p in self._plugins:
            if not p.server.intact():
                if p.server.serving:
                    log.info("%s: %s is gone (kubelet restarted?): serving again",
                             p.name, p.server.socket)
                    p.server.stop()
                try:
                    self._serve(p)
                except ServeError as e:
                    p.error_once(str(e))
                    continue
            if kubelet is not None and p.registered_with != kubelet:
                self._register(p, kubelet)

    def _refresh(self, p: _Plugin, found) -> None:
        if isinstance(p.served, SharedNode):
            value = p.served.refresh()
        else:
            value = found.get(p.served.resource, ())
        _, old = p.health.snapshot()
        if p.health.set(value):
            if isinstance(value, bool):
                log.info("%s: health %s -> %s: %s %s", p.name, _health_word(old),
                         _health_word(value), p.served.node,
                         "is a character device again" if value
                         else "is missing or not a character device")
            else:
                log.info("%s: devices %s -> %s", p.name, _describe(old), _describe(value))

    def _register(self, p: _Plugin, kubelet: tuple[int, int, int]) -> None:
        why = "our socket is new" if p.registered_with is None else "kubelet.sock is new"
        try:
            register(self.settings.kubelet_socket, p.served,
                     timeout=self.settings.register_timeout)
        except RegistrationError as e:
            p.error_once(f"registration with {self.settings.kubelet_socket} failed: {e}")
            return
        p.registered_with = kubelet
        p.registrations += 1
        p.last_error = ""
        if p.registrations == 1:
            log.info("%s: registered %s with kubelet (endpoint %s)", p.name,
                     p.served.resource, p.served.socket_name)
        else:
            log.info("%s: re-registered %s with kubelet (endpoint %s): %s", p.name,
                     p.served.resource, p.served.socket_name, why)

    def run(self, stop: threading.Event) -> None:
        """Tick until stop is set, then shut down. start() must have succeeded."""
        try:
            while True:
                self.tick()
                if stop.wait(self.settings.poll_interval):
                    break
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        for p in self._plugins:
            ours = p.server.intact()
            p.server.stop()
            if ours:
                log.info("%s: stopped, removed %s", p.name, p.server.socket)
