"""What `up` started, persisted as JSON so `down` and `status` work from another process."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from podvirt.cluster import processes
from podvirt.cluster.processes import Probe


@dataclass(frozen=True)
class Component:
    name: str
    pid: int
    started: int                             # start ticks: see processes.start_ticks
    port: int
    log: str
    probe: Probe

    @property
    def running(self) -> bool:
        return processes.ours(self.pid, self.started)

    @staticmethod
    def from_json(raw: dict) -> "Component":
        probe = raw["probe"]
        client = probe.get("client_cert")
        return Component(name=raw["name"], pid=int(raw["pid"]), started=int(raw["started"]),
                         port=int(raw["port"]),
                         log=raw["log"], probe=Probe(url=probe["url"], ca_file=probe.get("ca_file"),
                                                     client_cert=tuple(client) if client else None))


@dataclass(frozen=True)
class ClusterRecord:
    """The record of one local control plane: its API server and the processes `up` started."""
    server: str                              # https://127.0.0.1:PORT of kube-apiserver
    kubeconfig: str
    components: tuple[Component, ...] = field(default=())

    def with_component(self, component: Component) -> "ClusterRecord":
        return ClusterRecord(self.server, self.kubeconfig, (*self.components, component))

    def without(self, name: str) -> "ClusterRecord":
        return ClusterRecord(self.server, self.kubeconfig,
                             tuple(c for c in self.components if c.name != name))

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)


def save(path: Path, state: ClusterRecord) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(path)


def load(path: Path) -> ClusterRecord | None:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"unreadable cluster state {path}: {exc}") from None
    return ClusterRecord(server=raw["server"], kubeconfig=raw["kubeconfig"],
                        components=tuple(Component.from_json(c) for c in raw["components"]))
