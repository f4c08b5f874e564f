"""The launcher's exit codes, which the pod's restart policy acts on (docs/contracts.md)."""

EXIT_OK = 0
EXIT_START_FAILED = 1     # VMStartFailed: the extender's quarantine counts these
EXIT_CONFIG = 2           # the spec or the pod is unusable; retrying cannot help
EXIT_VM_FAILED = 3        # crashed, destroyed, or forced off after the grace period
EXIT_LIBVIRTD = 4         # libvirtd died or stopped answering
