"""Names on the wire: the opt-in label, the VM annotations users write, and the
annotations podvirt's own components write back.

Every user key is listed in USER_KEYS with a one-line description; the README's
annotation reference and the "unknown key" check are both derived from it, so a key
cannot exist in one and not the other.
"""

from __future__ import annotations

PREFIX = "podvirt.io/"

# A pod opts in with this label; the webhook's objectSelector matches it.
OPT_IN_LABEL = "podvirt.io/vm"
OPT_IN_VALUE = "true"

# --- user keys (podvirt.io/<key>) -----------------------------------------------------
VCPUS = PREFIX + "vcpus"
MEMORY = PREFIX + "memory"
CPU_MODEL = PREFIX + "cpu-model"
DEDICATED_CPUS = PREFIX + "dedicated-cpus"
HUGEPAGES = PREFIX + "hugepages"
MACHINE = PREFIX + "machine"
NODE_NAMES = PREFIX + "node-names"
NODE_LABELS = PREFIX + "node-labels"
DEVICES = PREFIX + "devices"
DISKS = PREFIX + "disks"
NICS = PREFIX + "nics"
PORTS = PREFIX + "ports"
KERNEL = PREFIX + "kernel"
KERNEL_IMAGE = PREFIX + "kernel-image"
INITRD = PREFIX + "initrd"
KERNEL_ARGS = PREFIX + "kernel-args"
CLOUD_INIT = PREFIX + "cloud-init"
CLOUD_INIT_SECRET = PREFIX + "cloud-init-secret"
CLOUD_INIT_CONFIGMAP = PREFIX + "cloud-init-configmap"
GRAPHICS = PREFIX + "graphics"
FIRMWARE = PREFIX + "firmware"
SECURE_BOOT = PREFIX + "secure-boot"
TPM = PREFIX + "tpm"
START_RETRIES = PREFIX + "start-retries"
SHUTDOWN_GRACE = PREFIX + "shutdown-grace"
ALLOW_EMULATION = PREFIX + "allow-emulation"
DOMAIN_XML = PREFIX + "domain-xml"

USER_KEYS: dict[str, str] = {
    VCPUS: "virtual CPUs, an integer (default 1)",
    MEMORY: "guest memory, a Kubernetes quantity such as 2Gi (required)",
    CPU_MODEL: "host-model (default), host-passthrough, or a named QEMU CPU model",
    DEDICATED_CPUS: "true to pin each vCPU to an exclusive host CPU (Guaranteed QoS)",
    HUGEPAGES: "back guest memory with hugepages of this size: 2Mi or 1Gi",
    MACHINE: "QEMU machine type: q35 (default) or pc",
    NODE_NAMES: "comma-separated node names the VM may run on",
    NODE_LABELS: "comma-separated key=value node labels the VM's node must carry",
    DEVICES: "comma-separated passthrough requests: <resource>=<count> or pci:<vendor>:<device>=<count>",
    DISKS: "comma-separated <name>=<source>: containerdisk:<image>, pvc:<claim>, scratch:<size>, file:<path>; a containerdisk or file disk may be followed by size=<size>, the pod storage it may fill (default 10Gi)",
    NICS: "comma-separated <name>[=<binding>][@<mac>]: pod (default: behind the pod's IP, DHCP and NAT by passt) or user (QEMU slirp, outbound only)",
    PORTS: "comma-separated guest ports forwarded from the pod's IP to the pod NIC: <port>[/tcp|/udp], e.g. 22,80/tcp",
    KERNEL: "path of a kernel to boot directly (inside the pod, or inside kernel-image)",
    KERNEL_IMAGE: "image holding the kernel and initrd to boot (kernel and initrd are then paths inside it)",
    INITRD: "path of an initrd for the direct kernel boot",
    KERNEL_ARGS: "kernel command line for the direct kernel boot",
    CLOUD_INIT: "inline cloud-init user data (NoCloud seed)",
    CLOUD_INIT_SECRET: "name of a Secret whose 'userdata' key is the cloud-init user data",
    CLOUD_INIT_CONFIGMAP: "name of a ConfigMap whose 'userdata' key is the cloud-init user data",
    GRAPHICS: "none (default) or vnc",
    FIRMWARE: "bios (default, SeaBIOS) or efi (OVMF, with its variables kept in the pod: ephemeral)",
    SECURE_BOOT: "true boots efi with Secure Boot (q35, SMM; Microsoft's keys enrolled)",
    TPM: "true gives the guest an emulated TPM 2.0 (swtpm; its state lives in the pod: ephemeral)",
    START_RETRIES: "further start attempts after a failed start (default 2, at most 10)",
    SHUTDOWN_GRACE: "seconds an ACPI shutdown may take before the VM is destroyed (default 60s)",
    ALLOW_EMULATION: "true lets the VM run under software emulation (TCG) where KVM is unusable",
    DOMAIN_XML: "a complete libvirt domain XML with placeholders, instead of the keys above",
}

# --- keys podvirt writes (users may not set them on create) ------------------------------
# Webhook: hash of the VM annotations it rendered, which makes reinvocation a no-op.
RENDERED = PREFIX + "rendered"
# Webhook: the contract (vmspec/contract.py, as JSON) it admitted the VM under; the
# launcher parses the VM with the same limits and costs.
CONTRACT = PREFIX + "contract"
# Extender (bind): JSON list of the concrete PCI devices given to the pod.
ASSIGNED_DEVICES = PREFIX + "assigned-devices"
# Extender (bind): when it assigned them (RFC 3339, microseconds): binds to one node are
# serialized, so this orders them, and the device plugin finds the pod kubelet admits.
ASSIGNED_AT = PREFIX + "assigned-at"
# Launcher: what it observes of the VM.
PHASE = PREFIX + "phase"
DOMAIN_STATE = PREFIX + "domain-state"
NODE = PREFIX + "node"
STARTED_AT = PREFIX + "started-at"
GUEST_IP = PREFIX + "guest-ip"
QEMU_RSS = PREFIX + "qemu-rss"
FAILURE_REASON = PREFIX + "failure-reason"
FAILURE_MESSAGE = PREFIX + "failure-message"
ACCEL = PREFIX + "accel"
# Users request an operation with ACTION; the launcher answers in ACTION_ACK.
ACTION = PREFIX + "action"
ACTION_ACK = PREFIX + "action-ack"
# ACTION values; the ack is "<action>:<resourceVersion the launcher saw>:ok|error", and a
# failed action also leaves a Warning Event with this reason and the error.
ACTIONS = ("pause", "resume", "reboot", "stop")
EVENT_ACTION_FAILED = "ActionFailed"

# Live migration (`kubectl podvirt migrate`, launcher/migration.py). The plugin creates the
# target pod with MIGRATION_SOURCE naming the source pod, then asks the source with
# ACTION=migrate and MIGRATION_TARGET naming the target; each launcher publishes the
# certificate of its end of the channel in MIGRATION_CERT. VM_NAME_LABEL stays with the
# VM across moves (the pod's name does not).
MIGRATION_SOURCE = PREFIX + "migration-source"
MIGRATION_TARGET = PREFIX + "migration-target"
MIGRATION_CERT = PREFIX + "migration-cert"
MIGRATE, MIGRATE_CANCEL = "migrate", "migrate-cancel"     # ACTION values
VM_NAME_LABEL = PREFIX + "vm-name"

# Eviction (docs/vms.md "Draining a node"): EVICTION_STRATEGY is a user key that may change
# while the VM runs. With "migrate", the webhook refuses an eviction of the pod and marks it
# with EVACUATE (the node it must leave); `podvirt evacuator` then migrates the VM away.
EVICTION_STRATEGY = PREFIX + "eviction-strategy"
EVICT_SHUTDOWN, EVICT_MIGRATE = "shutdown", "migrate"      # EVICTION_STRATEGY values
EVACUATE = PREFIX + "evacuate"
EVENT_EVACUATING = "Evacuating"             # the evacuator started a migration
EVENT_EVACUATION_FAILED = "EvacuationFailed"  # ... which failed; retried while marked

STATUS_KEYS: frozenset[str] = frozenset({
    RENDERED, CONTRACT, ASSIGNED_DEVICES, ASSIGNED_AT, PHASE, DOMAIN_STATE, NODE, STARTED_AT,
    GUEST_IP, QEMU_RSS, FAILURE_REASON, FAILURE_MESSAGE, ACCEL, ACTION_ACK, MIGRATION_CERT, EVACUATE,
})
# ACTION and EVICTION_STRATEGY are user keys at run time, but not part of the VM's
# definition (the webhook checks EVICTION_STRATEGY on its own: admission.decide).
RUNTIME_KEYS: frozenset[str] = frozenset({ACTION, MIGRATION_SOURCE, MIGRATION_TARGET,
                                          EVICTION_STRATEGY})

# --- node facts (written by `podvirt launcher probe`, read by the extender) ---------------
NODE_KVM_LABEL = PREFIX + "kvm"               # "true" | "false": KVM functionally usable
NODE_CPU_MODEL_LABEL = PREFIX + "cpu-model"   # host CPU model name as QEMU reports it
NODE_PCI_DEVICES = PREFIX + "pci-devices"     # JSON list of PassthroughDevice dicts
NODE_HUGEPAGES = PREFIX + "hugepages"         # JSON {"2Mi": free_pages, ...} (informational)

# Extended resource every launcher pod requests (1 per VM). Nodes that can run VMs
# advertise it; the scheduler's managedResources routes exactly the pods that request it
# to the extender.
VM_MARKER_RESOURCE = "podvirt.io/vm"
# Pod condition the launcher keeps: True while the guest runs.
VM_READY_CONDITION = "podvirt.io/VMReady"

# Launcher failure reasons (FAILURE_REASON values).
REASON_START_FAILED = "VMStartFailed"      # counted by the extender's quarantine
REASON_QEMU_EXITED = "QEMUExited"          # QEMU died under a running guest
REASON_OOM_KILLED = "OOMKilled"            # ... killed by the OOM killer at the pod's limit
REASON_STOPPED_BEFORE_START = "StoppedBeforeStart"  # SIGTERM before the domain ran
REASON_VM_STOPPED = "VMStopped"            # destroyed: grace ran out or a second SIGTERM
REASON_LIBVIRTD_LOST = "LibvirtdLost"      # the launcher's libvirtd went away
REASON_MIGRATED = "Migrated"               # the source's end: the VM runs in another pod
REASON_MIGRATION_FAILED = "MigrationFailed"  # the target's end when nothing arrived
# kubelet allocated other passthrough devices than the extender assigned (or none).
REASON_DEVICES_NOT_ALLOCATED = "DevicesNotAllocated"
