"""`kubectl podvirt`: the kubectl plugin for using VMs (console, VNC, lifecycle actions).

Layers look down only: `cli` parses and prints; `console`, `vnc` and `actions` run one
command each; `target` holds the pure checks on a pod; `kubeapi` is the only module
that talks to the API server, and `kubectl` the only one that runs kubectl.
"""
