"""List-then-watch loops that keep WatchedCluster current.

Each kind (nodes, pods) is listed in full, then watched from the list's resourceVersion.
A watch that ends normally resumes from the last resourceVersion seen; 410 Gone (the
version expired) re-lists at once; any other error re-lists after an exponential,
jittered backoff, because events may have been lost while the connection was down.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

from podvirt.extender.kube import ApiReader, Kind
from podvirt.extender.state import WatchedCluster

log = logging.getLogger(__name__)
GONE = 410


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** max(failures - 1, 0))
        return random.uniform(ceiling / 2, ceiling)


def _apply(state: WatchedCluster, kind: Kind, event_type: str, obj: dict) -> None:
    (state.apply_node if kind == "nodes" else state.apply_pod)(event_type, obj)


def _replace(state: WatchedCluster, kind: Kind, items: list[dict]) -> None:
    (state.replace_nodes if kind == "nodes" else state.replace_pods)(items)


def sync_once(client: ApiReader, state: WatchedCluster, kind: Kind, stop: threading.Event,
              resource_version: str | None, watch_timeout: int) -> str | None:
    """List (if no version is known), then watch until the stream ends.

    Returns the version to resume from; raises on API and connection errors."""
    if resource_version is None:
        items, resource_version = client.list(kind)
        _replace(state, kind, items)
        log.info("listed %d %s at resourceVersion %s", len(items), kind, resource_version)
    for event_type, obj in client.watch(kind, resource_version, watch_timeout):
        if event_type == "ERROR":   # a Status object the client did not raise for
            code = obj.get("code") if isinstance(obj, dict) else None
            raise WatchError(code, str(obj.get("message") if isinstance(obj, dict) else obj))
        version = ((obj or {}).get("metadata") or {}).get("resourceVersion")
        if event_type != "BOOKMARK":
            _apply(state, kind, event_type, obj)
        if version:
            resource_version = str(version)
        if stop.is_set():
            break
        # A burst of events (every bind is several) can sit in the socket buffer; without
        # a yield this loop would parse them all while filter calls wait for the GIL on
        # the event loop's thread.
        time.sleep(0)
    return resource_version


class WatchError(Exception):
    def __init__(self, status: int | None, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


def sync_forever(client: ApiReader, state: WatchedCluster, kind: Kind, stop: threading.Event, *,
                 watch_timeout: int = 300, backoff: Backoff = Backoff(),
                 sleep: Callable[[float], bool] | None = None) -> None:
    wait = sleep or stop.wait
    version: str | None = None
    failures = 0
    while not stop.is_set():
        try:
            version = sync_once(client, state, kind, stop, version, watch_timeout)
            failures = 0
        except Exception as exc:   # ApiException, WatchError, urllib3 and socket errors
            version = None         # events may be lost: start over from a full list
            if getattr(exc, "status", None) == GONE:
                log.info("%s watch expired (410 Gone); re-listing", kind)
                continue
            failures += 1
            delay = backoff.delay(failures)
            log.warning("%s watch failed (%s); re-listing in %.1fs", kind, exc, delay)
            wait(delay)


def start_watches(client: ApiReader, state: WatchedCluster, stop: threading.Event,
                  **kwargs) -> list[threading.Thread]:
    threads = [threading.Thread(target=sync_forever, args=(client, state, kind, stop),
                                kwargs=kwargs, name=f"watch-{kind}", daemon=True)
               for kind in ("nodes", "pods")]
    for t in threads:
        t.start()
    return threads
