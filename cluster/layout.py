"""Where everything of one local cluster lives inside its state directory."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = Path("/tmp/podvirt-cluster")


def default_state_dir() -> Path:
    return Path(os.environ.get("PODVIRT_STATE_DIR") or DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def state_file(self) -> Path:      # components, pids, ports: written by `up`, read by all
        return self.root / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def config(self) -> Path:          # rendered component configuration files
        return self.root / "config"

    @property
    def apiserver_certs(self) -> Path:  # kube-apiserver's --cert-dir
        return self.root / "apiserver"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def owned(self) -> tuple[Path, ...]:
        """Everything `up` creates: all that `down` may delete (never the root's other files,
        since --state-dir may point at a directory the user keeps other things in)."""
        return (self.state_file, self.kubeconfig, self.pki, self.etcd_data, self.logs,
                self.config, self.apiserver_certs)

    def clear(self) -> None:
        for path in self.owned():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        try:
            self.root.rmdir()       # only when nothing else is left in it
        except OSError:
            pass
