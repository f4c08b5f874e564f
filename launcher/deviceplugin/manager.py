"""The device plugins' loop: poll each device node's health, keep each plugin's socket
served and registered with the kubelet of the moment, and clean up on the way out.

Kubelet, when it (re)starts, deletes every socket in its device-plugins directory and then
creates kubelet.sock anew; plugins must serve again and register again. Every tick
therefore checks, per plugin: is our socket file still ours (else serve again), and is the
kubelet.sock we registered with still the one there (else register again). Polling keeps
it simple and needs nothing from the host but stat(); a tick is `poll_interval` seconds.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from podvirt.launcher.deviceplugin import devices
from podvirt.launcher.deviceplugin.devices import PluginSpec
from podvirt.launcher.deviceplugin.kubelet import RegistrationError, register, socket_identity
from podvirt.launcher.deviceplugin.service import Health, PluginServer, ServeError

log = logging.getLogger("podvirt.deviceplugin")


@dataclass(frozen=True)
class Settings:
    plugin_dir: Path = Path(devices.DEFAULT_PLUGIN_DIR)
    dev_root: Path = Path("/")      # where the host's /dev is seen: <dev_root>/dev/kvm
    slots: int = devices.DEFAULT_SLOTS
    specs: tuple[PluginSpec, ...] = field(default_factory=devices.plugin_specs)
    poll_interval: float = 2.0
    register_timeout: float = 5.0

    @property
    def kubelet_socket(self) -> Path:
        return self.plugin_dir / devices.KUBELET_SOCKET


def _health_word(healthy: bool) -> str:
    return devices.HEALTHY if healthy else devices.UNHEALTHY


class _Plugin:
    """One resource's runtime state: its server, health and registration."""

    def __init__(self, spec: PluginSpec, settings: Settings) -> None:
        self.spec = spec
        self.node = spec.node_under(settings.dev_root)
        self.health = Health(devices.device_present(self.node))
        self.server = PluginServer(spec, settings.slots, settings.plugin_dir, self.node,
                                   self.health)
        self.registered_with: tuple[int, int, int] | None = None
        self.registrations = 0
        self.last_error = ""

    def error_once(self, message: str) -> None:
        """Log a failure when it differs from the last one: a tick repeats it otherwise."""
        if message != self.last_error:
            log.warning("%s: %s", self.spec.name, message)
            self.last_error = message


class Manager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._plugins = [_Plugin(spec, settings) for spec in settings.specs]
        self._kubelet_missing_logged = False

    def start(self) -> None:
        """Serve every plugin; raises ServeError (nothing left served) when one cannot."""
        try:
            for p in self._plugins:
                self._serve(p)
        except ServeError:
            self.shutdown()
            raise

    def _serve(self, p: _Plugin) -> None:
        p.server.start()
        p.registered_with = None
        _, healthy = p.health.snapshot()
        log.info("%s: serving %s on %s: %d devices %s (%s)", p.spec.name, p.spec.resource,
                 p.server.socket, self.settings.slots, _health_word(healthy), p.node)

    def tick(self) -> None:
        kubelet = socket_identity(self.settings.kubelet_socket)
        if kubelet is None and not self._kubelet_missing_logged:
            log.info("waiting for kubelet: %s does not exist", self.settings.kubelet_socket)
        self._kubelet_missing_logged = kubelet is None
        for p in self._plugins:
            self._check_health(p)
            if not p.server.intact():
                if p.server.serving:
                    log.info("%s: %s is gone (kubelet restarted?): serving again",
                             p.spec.name, p.server.socket)
                    p.server.stop()
                try:
                    self._serve(p)
                except ServeError as e:
                    p.error_once(str(e))
                    continue
            if kubelet is not None and p.registered_with != kubelet:
                self._register(p, kubelet)

    def _check_health(self, p: _Plugin) -> None:
        healthy = devices.device_present(p.node)
        if p.health.set(healthy):
            log.info("%s: health %s -> %s: %s %s", p.spec.name, _health_word(not healthy),
                     _health_word(healthy), p.node,
                     "is a character device again" if healthy
                     else "is missing or not a character device")

    def _register(self, p: _Plugin, kubelet: tuple[int, int, int]) -> None:
        why = "our socket is new" if p.registered_with is None else "kubelet.sock is new"
        try:
            register(self.settings.kubelet_socket, p.spec, timeout=self.settings.register_timeout)
        except RegistrationError as e:
            p.error_once(f"registration with {self.settings.kubelet_socket} failed: {e}")
            return
        p.registered_with = kubelet
        p.registrations += 1
        p.last_error = ""
        if p.registrations == 1:
            log.info("%s: registered %s with kubelet (endpoint %s)", p.spec.name,
                     p.spec.resource, p.spec.socket_name)
        else:
            log.info("%s: re-registered %s with kubelet (endpoint %s): %s", p.spec.name,
                     p.spec.resource, p.spec.socket_name, why)

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
                log.info("%s: stopped, removed %s", p.spec.name, p.server.socket)
