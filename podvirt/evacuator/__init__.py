"""`podvirt evacuator`: migrates VMs whose eviction the webhook refused (docs/vms.md)."""
