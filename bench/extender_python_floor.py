"""podvirt's extender process with its decisions taken out: the Python floor.

The same server as `podvirt extender` (extender/serve.py: granian, HTTP/2, TLS, the RSGI
app of extender/app.py), the same request decoding (extender/wire.py), the same watch-fed
cluster state (sync.py, state.py) and the same Binding call (apiconn.py); but /filter
passes every node it is offered without looking (no filter_pod, no verdict memo) and
/bind creates the Binding without the re-check, the assumption or device choice.

scheduler_bench.py swaps it in for the extender, as it does the Go floor, on the same port
and certificate: the extender against this floor is what podvirt's decisions cost; this
floor against the Go one is what the Python stack costs.

    python bench/extender_python_floor.py --port P --cert F --key F --kubeconfig F
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any, Callable

from podvirt.extender import wire
from podvirt.extender.app import Settings
from podvirt.extender.kube import ApiWriter
from podvirt.extender.scheduling import FilterOutcome
from podvirt.extender.serve import ServeOptions, run


class FloorVerbs:
    """The floor's verbs, with SchedulingVerbs' interface (extender/app.py): filter passes
    every node offered, bind only creates the Binding, prioritize scores all alike."""

    def __init__(self, api: ApiWriter):
        self.api = api

    def answer(self, verb: str, read: Callable[[], Any]) -> Any:
        if verb == "bind":
            req = wire.decode_binding(read())
            try:
                self.api.create_binding(req.pod_namespace, req.pod_name, req.pod_uid, req.node)
            except Exception as exc:  # noqa: BLE001 - the scheduler retries; say why
                return {"Error": f"binding {req.pod_namespace}/{req.pod_name}: {exc}"}
            return {"Error": ""}
        args = wire.decode_args(read())
        if verb == "filter":
            return wire.filter_result(args, FilterOutcome(list(args.names)))
        return wire.priority_list([(n, 0) for n in args.names])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The extender's own flags, as the local cluster starts it (cluster/components.py).
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--kubeconfig", required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(run(ServeOptions(bind=args.bind, port=args.port, cert=args.cert,
                                        key=args.key, kubeconfig=args.kubeconfig),
                           Settings(), floor_verbs=FloorVerbs))


if __name__ == "__main__":
    sys.exit(main())
