"""The launcher container's own memory cgroup, as the kernel shows it inside the
container: how many processes its OOM killer took there, and the limit it enforces.

When QEMU dies under a running guest, this tells "the container reached its memory
limit" (kubelet reports OOMKilled only when the container's main process is the victim,
and the victim here is QEMU, a child) from any other death. cgroup v1 keeps the counter in
memory.oom_control, v2 in memory.events; runc mounts the container's own cgroup at
/sys/fs/cgroup in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 reports "no limit" as the largest page-aligned 64-bit value.
_V1_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class MemoryCgroup:
    oom_kills: int | None      # None: this kernel/cgroup does not count them
    limit_bytes: int | None    # None: unlimited or unknown


def counters(text: str) -> dict[str, int]:
    """The "name value" lines of memory.oom_control / memory.events."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[name] = int(value)
    return out


def parse_limit(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit():       # v2 writes "max"
        return None
    value = int(text)
    return None if value >= _V1_UNLIMITED else value


def read_memory_cgroup(root: Path = CGROUP_ROOT) -> MemoryCgroup:
    for events, limit in ((root / "memory" / "memory.oom_control",
                           root / "memory" / "memory.limit_in_bytes"),
                          (root / "memory.events", root / "memory.max")):
        try:
            kills = counters(events.read_text()).get("oom_kill")
        except OSError:
            continue
        try:
            limit_bytes = parse_limit(limit.read_text())
        except OSError:
            limit_bytes = None
        return MemoryCgroup(kills, limit_bytes)
    return MemoryCgroup(None, None)


def oom_killed_since(before: MemoryCgroup, now: MemoryCgroup) -> bool:
    return before.oom_kills is not None and now.oom_kills is not None \
        and now.oom_kills > before.oom_kills
