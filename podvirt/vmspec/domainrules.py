"""What a domain XML may contain inside a pod: the allowlist, as data.

Read with libvirt's domain schema (domaincommon.rng) beside it, device type by device
type. Each rule admits what is known safe in a launcher pod: guest-side hardware
(buses, models, addresses), files under the pod's podvirt directories, sockets on the
pod's loopback, the PCI devices the extender assigned. Known escapes are listed with
the reason they are refused; anything the table does not name is refused too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from podvirt.vmspec.domainpolicy import (ANY, FIRMWARE_PATH, INT, LOOPBACK, NUMBER, ON_OFF,
                                         POD_PATH, UINT, YES_NO, El, Refused, Scope, Typed,
                                         choice, never, pattern)
from podvirt.vmspec.pciaddress import pci_address_of

# libvirt's memory units (virScaleInteger): the size checks convert with the same table.
MEMORY_UNITS = {
    "b": 1, "bytes": 1, "KB": 10**3, "k": 2**10, "KiB": 2**10, "MB": 10**6, "M": 2**20,
    "MiB": 2**20, "GB": 10**9, "G": 2**30, "GiB": 2**30, "TB": 10**12, "T": 2**40,
    "TiB": 2**40, "PB": 10**15, "P": 2**50, "PiB": 2**50, "EB": 10**18, "E": 2**60,
    "EiB": 2**60,
}
UNIT = choice(*MEMORY_UNITS)
CPUSET = pattern(r"\^?[0-9]+(-[0-9]+)?(,\^?[0-9]+(-[0-9]+)?)*", "a CPU list such as 0-3,^2")
NAME = pattern(r"[A-Za-z0-9_.+:-]{1,253}", "letters, digits and _.+:- (at most 253)")
# Entropy sources in any container's /dev; other device nodes are the node's hardware.
ENTROPY = choice("/dev/urandom", "/dev/random")
VIRTIO_MODEL = choice("virtio", "virtio-transitional", "virtio-non-transitional")
VIRTIO_OPTIONS = {"iommu": ON_OFF, "ats": ON_OFF, "packed": ON_OFF, "page_per_vq": ON_OFF}

NO_SECRETS = Refused("needs a libvirt secret: the pod's private libvirt holds none, and "
                     "the domain XML cannot bring one")
SECLABEL = Refused("sets a security label: the pod, not the domain XML, confines QEMU")


def _assigned_pci(el: ET.Element, scope: Scope) -> tuple[str | None, str] | None:
    try:
        text = pci_address_of(el.attrib)
    except ValueError:
        return None, "a malformed PCI address"
    if text in scope.assigned:
        return None
    return None, (f"{text} is not a device assigned to this pod (assigned: "
                  f"{', '.join(sorted(scope.assigned)) or 'none'}); the launcher adds "
                  "assigned devices itself")


def _has_source_address(el: ET.Element, scope: Scope) -> tuple[str | None, str] | None:
    if el.find("source/address") is None:
        return None, "needs <source><address> naming a PCI device assigned to this pod"
    return None


# --- pieces every device shares ----------------------------------------------------------

ADDRESS = El(attrs={a: ANY for a in (
    "type", "domain", "bus", "slot", "function", "multifunction", "controller", "target",
    "unit", "port", "reg", "cssid", "ssid", "devno", "iobase", "irq", "base")})
COMMON = {"alias": El(attrs={"name": NAME}), "address": ADDRESS,
          "acpi": El(attrs={"index": UINT})}
BOOT = El(attrs={"order": UINT, "loadparm": ANY})
LOG = El(attrs={"file": POD_PATH, "append": ON_OFF})
RECONNECT = El(attrs={"enabled": YES_NO, "timeout": UINT})
SOCKET_SOURCE = {"mode": choice("bind", "connect"), "host": LOOPBACK, "service": UINT}


def _needs_host(el: ET.Element, scope: Scope) -> tuple[str | None, str] | None:
    # Without host= QEMU binds every address of the pod, the pod network's included.
    if el.get("host") is None:
        return None, "needs host= on the pod's loopback (127.0.0.1, ::1, localhost)"
    return None


def chardev(**extra) -> dict[str, El]:
    """The character-device backends a pod may use (serial, console, channel, rng egd,
    smartcard, redirdev): ptys, files and unix sockets in the pod, TCP/UDP on loopback."""
    def variant(source: El | None = None, more: dict | None = None) -> El:
        children = {**COMMON, "log": LOG, **extra.get("children", {}), **(more or {})}
        if source is not None:
            children["source"] = source
        return El(attrs=dict(extra.get("attrs", {})), children=children)
    return {
        "pty": variant(),
        "null": variant(),
        "vc": variant(),
        "spicevmc": variant(),
        "qemu-vdagent": variant(El(children={
            "clipboard": El(attrs={"copypaste": YES_NO}),
            "mouse": El(attrs={"mode": choice("client", "server")})})),
        "file": variant(El(attrs={"path": POD_PATH, "append": ON_OFF})),
        "unix": variant(El(attrs={"mode": choice("bind", "connect"), "path": POD_PATH},
                           children={"reconnect": RECONNECT})),
        "tcp": variant(El(attrs=SOCKET_SOURCE, children={"reconnect": RECONNECT},
                          check=_needs_host),
                       {"protocol": El(attrs={"type": choice("raw", "telnet")})}),
        "udp": variant(El(attrs=SOCKET_SOURCE, check=_needs_host)),
    }


CHARDEV_REFUSED = {
    "dev": "connects the guest to a host device node",
    "pipe": "a named pipe; use a unix socket in the pod",
    "stdio": "QEMU's stdio, which belongs to libvirt",
    "nmdm": "a FreeBSD null-modem device",
    "spiceport": "not on podvirt's list known safe inside a pod",
}


def chardev_element(target: El, default: str | None = "pty") -> Typed:
    return Typed("type", chardev(children={"target": target}), default=default,
                 refused=CHARDEV_REFUSED)


# --- devices ---------------------------------------------------------------------------

DISK_DRIVER = El(attrs={
    "name": choice("qemu"), "type": choice("raw", "qcow2"),
    "cache": choice("default", "none", "writethrough", "writeback", "directsync", "unsafe"),
    "io": choice("threads", "native", "io_uring"), "discard": choice("unmap", "ignore"),
    "detect_zeroes": choice("off", "on", "unmap"),
    "error_policy": choice("stop", "report", "ignore", "enospace"),
    "rerror_policy": choice("stop", "report", "ignore"), "iothread": UINT, "queues": UINT,
    "queue_size": UINT, "copy_on_read": ON_OFF, "event_idx": ON_OFF, "ioeventfd": ON_OFF,
    **VIRTIO_OPTIONS})
FILE_SOURCE = El(attrs={"file": POD_PATH, "startupPolicy": choice("mandatory", "requisite",
                                                                  "optional"),
                        "index": UINT},
                 children={"seclabel": SECLABEL,
                           "reservations": Refused("talks to a host persistent-reservation "
                                                   "helper")})
BACKING_FILE = El(attrs={"index": UINT},
                  children={"format": El(attrs={"type": choice("raw", "qcow2")}),
                            "source": FILE_SOURCE})
# Recursive: a backing file may have its own backing store; an empty one ends the chain.
BACKING_STORE = Typed("type", {"": El(), "file": BACKING_FILE}, default="")
BACKING_FILE.children["backingStore"] = BACKING_STORE     # type: ignore[index]
IOTUNE = El(children={n: El(text=UINT) for n in (
    "total_bytes_sec", "read_bytes_sec", "write_bytes_sec", "total_iops_sec", "read_iops_sec",
    "write_iops_sec", "total_bytes_sec_max", "read_bytes_sec_max", "write_bytes_sec_max",
    "total_iops_sec_max", "read_iops_sec_max", "write_iops_sec_max",
    "total_bytes_sec_max_length", "read_bytes_sec_max_length", "write_bytes_sec_max_length",
    "total_iops_sec_max_length", "read_iops_sec_max_length", "write_iops_sec_max_length",
    "size_iops_sec")} | {"group_name": El(text=ANY)})

DISK = Typed("type", {"file": El(
    attrs={"device": choice("disk", "cdrom", "floppy",
                            refused={"lun": "passes SCSI commands to a host device"}),
           "model": VIRTIO_MODEL, "snapshot": choice("internal", "external", "no")},
    children={**COMMON, "driver": DISK_DRIVER, "source": FILE_SOURCE,
              "target": El(attrs={"dev": pattern(r"[a-z]{2,3}[a-z]{1,3}", "a name like vda"),
                                  "bus": choice("virtio", "scsi", "sata", "ide", "usb", "fdc",
                                                "sd"),
                                  "tray": choice("open", "closed"), "removable": ON_OFF,
                                  "rotation_rate": UINT}),
              "backingStore": BACKING_STORE, "boot": BOOT, "readonly": El(),
              "shareable": El(), "transient": El(attrs={"shareBacking": YES_NO}),
              "serial": El(text=ANY), "wwn": El(text=pattern(r"[0-9a-fA-F]{16}", "16 hex digits")),
              "vendor": El(text=ANY), "product": El(text=ANY), "iotune": IOTUNE,
              "blockio": El(attrs={"logical_block_size": UINT, "physical_block_size": UINT,
                                   "discard_granularity": UINT}),
              "geometry": El(attrs={"cyls": UINT, "heads": UINT, "secs": UINT,
                                    "trans": choice("none", "lba", "auto")}),
              "encryption": NO_SECRETS, "auth": NO_SECRETS,
              "mirror": Refused("copies the disk to a destination outside the pod")})},
    default="file", refused={
        "block": "hands the guest a host block device",
        "dir": "hands the guest a host directory as a FAT disk",
        "network": "reads the disk from a network server outside the pod",
        "volume": "uses a host storage pool outside the pod",
        "nvme": "hands the guest a host NVMe controller",
        "vhostuser": "connects to a host vhost-user storage daemon",
        "vhostvdpa": "hands the guest a host vDPA device"})

CONTROLLER = El(
    attrs={"index": UINT, "model": ANY, "ports": UINT, "vectors": UINT},
    children={**COMMON,
              "driver": El(attrs={"queues": UINT, "cmd_per_lun": UINT, "max_sectors": UINT,
                                  "ioeventfd": ON_OFF, "iothread": UINT, **VIRTIO_OPTIONS}),
              "target": El(attrs={"chassisNr": UINT, "chassis": UINT, "port": NUMBER,
                                  "busNr": UINT, "hotplug": ON_OFF, "index": UINT}),
              "model": El(attrs={"name": ANY}), "master": El(attrs={"startport": UINT}),
              "pcihole64": El(attrs={"unit": UNIT}, text=UINT)})

NIC_OFFLOAD = El(attrs={a: ON_OFF for a in ("csum", "gso", "tso4", "tso6", "ecn", "ufo",
                                            "mrg_rxbuf")})
INTERFACE = Typed("type", {"user": El(
    children={**COMMON, "boot": BOOT,
              "mac": El(attrs={"address": pattern(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}",
                                                  "a MAC address")}),
              "model": El(attrs={"type": pattern(r"[a-z0-9_-]{1,32}", "a NIC model name")}),
              "driver": El(attrs={"name": choice("qemu", refused={
                                      "vhost": "opens the host's /dev/vhost-net"}),
                                  "queues": UINT, "rx_queue_size": UINT, "tx_queue_size": UINT,
                                  "txmode": choice("iothread", "timer"), "ioeventfd": ON_OFF,
                                  "event_idx": ON_OFF, **VIRTIO_OPTIONS},
                           children={"host": NIC_OFFLOAD, "guest": NIC_OFFLOAD}),
              "rom": El(attrs={"bar": ON_OFF, "enabled": YES_NO, "file": POD_PATH}),
              "link": El(attrs={"state": choice("up", "down")}),
              "mtu": El(attrs={"size": UINT}),
              "ip": El(attrs={"address": ANY, "prefix": UINT, "family": choice("ipv4", "ipv6")}),
              "coalesce": El(children={"rx": El(children={"frames": El(attrs={"max": UINT})})}),
              "backend": Refused("starts a host network helper (passt) or opens host tap and "
                                 "vhost devices; QEMU's user networking needs none"),
              "script": Refused("runs a host program"),
              "downscript": Refused("runs a host program"),
              "filterref": Refused("needs a host network filter (nwfilter)"),
              "bandwidth": Refused("shapes traffic on a host device"),
              "vlan": Refused("tags traffic on a host network"),
              "virtualport": Refused("plugs into a host virtual switch"),
              "portForward": Refused("forwards ports with passt, which the launcher runs "
                                     "for the pod NIC")})},
    default=None, refused={
        "network": "attaches the guest to a libvirt network on the host",
        "bridge": "attaches the guest to a host bridge",
        "direct": "attaches the guest to a host NIC (macvtap)",
        "hostdev": "hands the guest a host NIC's virtual function",
        "vhostuser": "connects the guest to a host vhost-user switch",
        "ethernet": "needs a host tap device and runs its scripts",
        "vdpa": "hands the guest a host vDPA device",
        "server": "QEMU socket networking is not on podvirt's list known safe inside a pod",
        "client": "QEMU socket networking is not on podvirt's list known safe inside a pod",
        "mcast": "QEMU socket networking is not on podvirt's list known safe inside a pod",
        "udp": "QEMU socket networking is not on podvirt's list known safe inside a pod"})

HOSTDEV = Typed("mode", {"subsystem": Typed("type", {"pci": El(
    attrs={"managed": choice("no", refused={
        "yes": "makes libvirt rebind the host driver; the device plugin bound vfio-pci "
               "already and the pod cannot rebind"})},
    children={**COMMON, "boot": BOOT,
              "driver": El(attrs={"name": choice("vfio")}),
              "source": El(children={"address": El(attrs={a: NUMBER for a in (
                  "domain", "bus", "slot", "function")}, check=_assigned_pci)}),
              "rom": El(attrs={"bar": ON_OFF, "enabled": YES_NO, "file": POD_PATH}),
              "teaming": Refused("bonds with a host network device")},
    check=_has_source_address)}, default=None, refused={
        "usb": "hands the guest a host USB device",
        "scsi": "hands the guest a host SCSI device",
        "scsi_host": "hands the guest a host vhost-scsi target",
        "mdev": "hands the guest a host mediated device"})},
    default="subsystem", refused={
        "capabilities": "hands the guest a host block, character or network device"})

LISTEN = Typed("type", {
    "address": El(attrs={"address": LOOPBACK}),
    "socket": El(attrs={"socket": POD_PATH}),
    "none": El()}, default="address", refused={
        "network": "listens on a libvirt network's host address"})
GRAPHICS_COMMON = {"port": INT, "autoport": YES_NO, "listen": LOOPBACK, "passwd": ANY,
                   "passwdValidTo": ANY, "connected": ANY, "keymap": ANY}
GRAPHICS = Typed("type", {
    "vnc": El(attrs={**GRAPHICS_COMMON, "websocket": INT, "socket": POD_PATH,
                     "sharePolicy": choice("allow-exclusive", "force-shared", "ignore"),
                     "powerControl": YES_NO},
              children={"listen": LISTEN, "audio": El(attrs={"id": UINT})}),
    "spice": El(attrs={**GRAPHICS_COMMON, "tlsPort": INT,
                       "defaultMode": choice("any", "secure", "insecure")},
                children={"listen": LISTEN,
                          "channel": El(attrs={"name": ANY, "mode": choice("any", "secure",
                                                                           "insecure")}),
                          **{n: El(attrs={a: ANY for a in ("compression", "mode", "copypaste",
                                                           "enable")})
                             for n in ("image", "jpeg", "zlib", "playback", "streaming",
                                       "clipboard", "mouse", "filetransfer")},
                          "gl": Refused("renders on a host GPU (/dev/dri)")})},
    default=None, refused={
        "sdl": "draws on a host display", "desktop": "draws on a host display",
        "egl-headless": "renders on a host GPU (/dev/dri)",
        "dbus": "exports the display on a host D-Bus",
        "rdp": "not on podvirt's list known safe inside a pod"})

VIDEO_MODEL = El(attrs={"type": choice("vga", "cirrus", "vmvga", "qxl", "virtio", "bochs",
                                       "ramfb", "none"),
                        "vram": UINT, "ram": UINT, "vram64": UINT, "vgamem": UINT,
                        "heads": UINT, "primary": YES_NO, "blob": ON_OFF},
                 children={"acceleration": El(attrs={
                               "accel2d": YES_NO,
                               "accel3d": choice("no", refused={
                                   "yes": "renders on a host GPU (/dev/dri)"})}),
                           "resolution": El(attrs={"x": UINT, "y": UINT})})
VIDEO = El(children={**COMMON, "model": VIDEO_MODEL,
                     "driver": El(attrs={"name": choice("qemu", refused={
                         "vhostuser": "runs a host vhost-user GPU process"}),
                         "vgaconf": choice("io", "on", "off"), **VIRTIO_OPTIONS})})

INPUT = Typed("type", {t: El(attrs={"bus": choice("ps2", "usb", "virtio"),
                                    "model": VIRTIO_MODEL},
                             children={**COMMON, "driver": El(attrs=VIRTIO_OPTIONS)})
                       for t in ("tablet", "mouse", "keyboard")},
              refused={"passthrough": "reads a host input device (evdev)",
                       "evdev": "reads a host input device (evdev)"})

SOUND = El(attrs={"model": choice("ich6", "ich9", "ac97", "es1370", "sb16", "usb", "ich7")},
           children={**COMMON, "codec": El(attrs={"type": choice("duplex", "micro", "output")}),
                     "audio": El(attrs={"id": UINT})})
AUDIO_STREAM = El(attrs={a: ANY for a in ("mixingEngine", "fixedSettings", "voices",
                                          "bufferLength")},
                  children={"settings": El(attrs={"frequency": UINT, "channels": UINT,
                                                  "format": ANY})})
HOST_AUDIO = "plays through the host's sound system"
AUDIO = Typed("type", {
    "none": El(attrs={"id": UINT}, children={"input": AUDIO_STREAM, "output": AUDIO_STREAM}),
    "spice": El(attrs={"id": UINT}, children={"input": AUDIO_STREAM, "output": AUDIO_STREAM}),
    "file": El(attrs={"id": UINT, "path": POD_PATH},
               children={"input": AUDIO_STREAM, "output": AUDIO_STREAM})},
    refused={t: HOST_AUDIO for t in ("alsa", "pulseaudio", "pipewire", "oss", "coreaudio",
                                     "jack", "sdl", "dbus")})

WATCHDOG = El(attrs={"model": choice("i6300esb", "ib700", "diag288", "itco"),
                     "action": choice("reset", "shutdown", "poweroff", "pause", "none",
                                      "inject-nmi", refused={
                                          "dump": "writes a core dump outside the pod's "
                                                  "podvirt directories"})},
              children=COMMON)

RNG = El(attrs={"model": VIRTIO_MODEL},
         children={**COMMON, "rate": El(attrs={"period": UINT, "bytes": UINT}),
                   "driver": El(attrs=VIRTIO_OPTIONS),
                   "backend": Typed("model", {
                       "random": El(text=ENTROPY),
                       "builtin": El(),
                       "egd": Typed("type", chardev(), refused=CHARDEV_REFUSED)})})

TPM = El(attrs={"model": choice("tpm-crb", "tpm-tis")},
         children={**COMMON, "backend": Typed("type", {"emulator": El(
             attrs={"version": choice("1.2", "2.0"), "persistent_state": YES_NO},
             children={"encryption": NO_SECRETS,
                       "active_pcr_banks": El(children={b: El() for b in (
                           "sha1", "sha256", "sha384", "sha512")})})},
             refused={"passthrough": "hands the guest the host's TPM",
                      "external": "talks to a TPM emulator outside the pod"})})

MEMBALLOON = El(attrs={"model": choice("virtio", "virtio-transitional",
                                       "virtio-non-transitional", "none"),
                       "autodeflate": ON_OFF, "freePageReporting": ON_OFF},
                children={**COMMON, "stats": El(attrs={"period": UINT}),
                          "driver": El(attrs=VIRTIO_OPTIONS)})

SERIAL_TARGET = El(attrs={"type": choice("isa-serial", "usb-serial", "pci-serial",
                                         "system-serial", "isa-debug"), "port": UINT},
                   children={"model": El(attrs={"name": ANY})})
CONSOLE_TARGET = El(attrs={"type": choice("serial", "virtio"), "port": UINT})
CHANNEL_TARGET = Typed("type", {
    "virtio": El(attrs={"name": ANY, "state": choice("connected", "disconnected")}),
    # slirp forwards the guest's connections to this address to the chardev (in the pod).
    "guestfwd": El(attrs={"address": ANY, "port": UINT})}, default=None)

DEVICES = El(children={
    "disk": DISK,
    "controller": Typed("type", {t: CONTROLLER for t in (
        "usb", "pci", "scsi", "virtio-serial", "sata", "ide", "fdc", "ccid", "isa")},
        default=None),
    "interface": INTERFACE,
    "hostdev": HOSTDEV,
    "graphics": GRAPHICS,
    "video": VIDEO,
    "input": INPUT,
    "sound": SOUND,
    "audio": AUDIO,
    "serial": chardev_element(SERIAL_TARGET),
    "console": chardev_element(CONSOLE_TARGET),
    "parallel": chardev_element(El(attrs={"port": UINT})),
    "channel": chardev_element(CHANNEL_TARGET, default=None),
    "smartcard": Typed("mode", {"passthrough": Typed("type", chardev(), default=None,
                                                     refused=CHARDEV_REFUSED)},
                       refused={"host": "reads the host's smartcard readers",
                                "host-certificates": "reads certificates from an NSS "
                                                     "database"}),
    "redirdev": Typed("type", chardev(attrs={"bus": choice("usb")},
                                      children={"boot": BOOT}), default=None,
                      refused=CHARDEV_REFUSED),
    "redirfilter": El(children={"usbdev": El(attrs={a: ANY for a in (
        "class", "vendor", "product", "version", "allow")})}),
    "hub": El(attrs={"type": choice("usb")}, children=COMMON),
    "rng": RNG,
    "tpm": TPM,
    "watchdog": WATCHDOG,
    "memballoon": MEMBALLOON,
    "panic": El(attrs={"model": choice("isa", "pvpanic", "hyperv")}, children=COMMON),
    "iommu": El(attrs={"model": choice("intel", "virtio")},
                children={**COMMON, "driver": El(attrs={
                    "intremap": ON_OFF, "caching_mode": ON_OFF, "eim": ON_OFF,
                    "iotlb": ON_OFF, "aw_bits": UINT})}),
    "emulator": Refused("overrides the QEMU binary the launcher runs"),
    "filesystem": Refused("passes a host directory into the guest"),
    "lease": Refused("takes a lock in a host lock manager (sanlock)"),
    "shmem": Refused("shares memory with processes outside the guest"),
    "memory": Refused("hot-plugs guest memory that podvirt.io/memory does not price"),
    "vsock": Refused("opens a socket channel to the host kernel (/dev/vhost-vsock)"),
    "crypto": Refused("uses the host kernel's crypto devices"),
    "nvram": Refused("a pSeries device"),
    "pstore": Refused("keeps guest crash logs in a host file"),
})

# --- the domain's own elements -----------------------------------------------------------

SIZE = El(attrs={"unit": UNIT}, text=UINT)
LIFECYCLE = El(text=choice("destroy", "restart", "preserve", "rename-restart", refused={
    "coredump-destroy": "writes a core dump outside the pod's podvirt directories",
    "coredump-restart": "writes a core dump outside the pod's podvirt directories"}))
STATE = El(attrs={"state": ON_OFF})
SMBIOS_BLOCK = El(children={"entry": El(attrs={"name": ANY}, text=ANY)})
HYPERV = El(attrs={"mode": choice("custom", "passthrough")}, children={
    **{n: STATE for n in ("relaxed", "vapic", "vpindex", "runtime", "synic", "reset",
                          "frequencies", "reenlightenment", "ipi", "evmcs", "avic",
                          "emsr_bitmap", "xmm_input")},
    "spinlocks": El(attrs={"state": ON_OFF, "retries": UINT}),
    "vendor_id": El(attrs={"state": ON_OFF, "value": ANY}),
    "stimer": El(attrs={"state": ON_OFF}, children={"direct": STATE}),
    "tlbflush": El(attrs={"state": ON_OFF}, children={"direct": STATE, "extended": STATE})})

OS = El(attrs={"firmware": choice("bios", "efi")}, children={
    "type": El(attrs={"arch": choice("x86_64", "i686"),
                      "machine": pattern(r"[a-zA-Z0-9_.-]{1,64}", "a QEMU machine type")},
               text=choice("hvm")),
    "firmware": El(children={"feature": El(attrs={
        "enabled": YES_NO, "name": choice("enrolled-keys", "secure-boot")})}),
    "loader": El(attrs={"readonly": YES_NO, "secure": YES_NO, "type": choice("rom", "pflash"),
                        "stateless": YES_NO, "format": choice("raw", "qcow2")},
                 text=FIRMWARE_PATH),
    # libvirt copies the template (the image's) to the store (the pod's) on first start.
    "nvram": El(attrs={"template": FIRMWARE_PATH, "format": choice("raw", "qcow2"),
                       "templateFormat": choice("raw", "qcow2")}, text=POD_PATH),
    "kernel": El(text=POD_PATH), "initrd": El(text=POD_PATH), "dtb": El(text=POD_PATH),
    "cmdline": El(text=ANY),
    "boot": El(attrs={"dev": choice("hd", "cdrom", "network", "fd")}),
    "bootmenu": El(attrs={"enable": YES_NO, "timeout": UINT}),
    "smbios": El(attrs={"mode": choice("emulate", "sysinfo", refused={
        "host": "copies the node's SMBIOS tables (serial numbers) into the guest"})}),
    "bios": El(attrs={"useserial": YES_NO, "rebootTimeout": INT}),
    "acpi": El(children={"table": El(attrs={"type": choice("slic", "msdm", "rawset")},
                                     text=POD_PATH)}),
    **{n: Refused("configures a container's init, not a VM")
       for n in ("init", "initarg", "initenv", "initdir", "inituser", "initgroup")},
})

FEATURES = El(children={
    **{n: El() for n in ("acpi", "pae", "viridian", "privnet")},
    "apic": El(attrs={"eoi": ON_OFF}),
    **{n: STATE for n in ("hap", "pvspinlock", "pmu", "vmport", "vmcoreinfo", "htm",
                          "nested-hv", "ccf-assist")},
    "hyperv": HYPERV,
    "kvm": El(children={**{n: STATE for n in ("hidden", "hint-dedicated", "poll-control",
                                              "pv-ipi")},
                        "dirty-ring": El(attrs={"state": ON_OFF, "size": UINT})}),
    "smm": El(attrs={"state": ON_OFF}, children={"tseg": SIZE}),
    "ioapic": El(attrs={"driver": choice("kvm", "qemu")}),
    "msrs": El(attrs={"unknown": choice("ignore", "fault")}),
    "async-teardown": El(attrs={"enabled": YES_NO}),
    "tcg": El(children={"tb-cache": SIZE}),
})

CPU = El(attrs={"mode": choice("host-model", "host-passthrough", "custom", "maximum"),
                "match": choice("minimum", "exact", "strict"),
                "check": choice("none", "partial", "full"), "migratable": ON_OFF},
         children={
             "model": El(attrs={"fallback": choice("allow", "forbid"), "vendor_id": ANY},
                         text=pattern(r"[A-Za-z0-9_.-]{1,64}", "a CPU model name")),
             "vendor": El(text=ANY),
             "topology": El(attrs={a: UINT for a in ("sockets", "dies", "clusters", "cores",
                                                     "threads")}),
             "feature": El(attrs={"policy": choice("force", "require", "optional", "disable",
                                                   "forbid"),
                                  "name": pattern(r"[A-Za-z0-9_.-]{1,64}", "a feature name")}),
             "cache": El(attrs={"level": UINT, "mode": choice("emulate", "passthrough",
                                                              "disable")}),
             "maxphysaddr": El(attrs={"mode": choice("emulate", "passthrough"), "bits": UINT}),
             "numa": Refused("lays guest memory out in NUMA cells, which podvirt.io/ "
                             "annotations do not price"),
         })

CLOCK = El(attrs={"offset": choice("utc", "localtime", "timezone", "variable"),
                  "adjustment": ANY, "basis": choice("utc", "localtime"), "timezone": ANY},
           children={"timer": El(attrs={
               "name": choice("platform", "pit", "rtc", "hpet", "tsc", "kvmclock",
                              "hypervclock"),
               "present": YES_NO, "tickpolicy": choice("delay", "catchup", "merge", "discard"),
               "track": choice("boot", "guest", "wall", "realtime"), "frequency": UINT,
               "mode": choice("auto", "native", "emulate", "paravirt", "smpsafe")},
               children={"catchup": El(attrs={"threshold": UINT, "slew": UINT,
                                              "limit": UINT})})})

PINNING = "pins QEMU's threads to host CPUs; podvirt pins vCPUs only, with dedicated-cpus"
CPUTUNE = El(children={
    "vcpupin": El(attrs={"vcpu": UINT, "cpuset": CPUSET}),
    **{n: El(text=INT) for n in ("shares", "period", "quota", "global_period", "global_quota",
                                 "emulator_period", "emulator_quota", "iothread_period",
                                 "iothread_quota")},
    "emulatorpin": Refused(PINNING), "iothreadpin": Refused(PINNING),
    **{n: Refused("gives QEMU's threads a real-time scheduler, which can starve the node's "
                  "other pods") for n in ("vcpusched", "iothreadsched", "emulatorsched")},
    "cachetune": Refused("partitions the host's CPU cache (resctrl)"),
    "memorytune": Refused("partitions the host's memory bandwidth (resctrl)"),
})

MEMORY_BACKING = El(children={
    "hugepages": El(children={"page": El(attrs={
        "size": UINT, "unit": UNIT,
        "nodeset": never("binds hugepages to host NUMA nodes, which podvirt.io/ annotations "
                         "do not price")})}),
    "nosharepages": El(),
    "source": El(attrs={"type": choice("anonymous", "memfd", refused={
        "file": "backs guest memory with files outside the pod's podvirt directories"})}),
    "access": El(attrs={"mode": choice("private", "shared")}),
    "allocation": El(attrs={"mode": choice("immediate", "ondemand"), "threads": UINT}),
    "discard": El(),
    "locked": Refused("locks guest memory, which needs CAP_IPC_LOCK: the launcher has none"),
})

DOMAIN = El(attrs={"type": choice("kvm", "qemu")}, children={
    "name": El(text=NAME),
    "uuid": El(text=pattern(r"[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}",
                            "a UUID")),
    "genid": El(text=ANY),
    "title": El(text=ANY),
    "description": El(text=ANY),
    "metadata": El(opaque=True),
    "memory": El(attrs={"unit": UNIT, "dumpCore": ON_OFF}, text=UINT),
    "currentMemory": SIZE,
    "maxMemory": El(attrs={"unit": UNIT, "slots": UINT}, text=UINT),
    "vcpu": El(attrs={"placement": choice("static", "auto"), "current": UINT,
                      "cpuset": never(PINNING)}, text=UINT),
    "vcpus": El(children={"vcpu": El(attrs={"id": UINT, "enabled": YES_NO,
                                            "hotpluggable": YES_NO, "order": UINT})}),
    "iothreads": El(text=UINT),
    "iothreadids": El(children={"iothread": El(attrs={"id": UINT, "thread_pool_min": UINT,
                                                      "thread_pool_max": UINT})}),
    "cputune": CPUTUNE,
    "memoryBacking": MEMORY_BACKING,
    "memtune": El(children={n: SIZE for n in ("hard_limit", "soft_limit", "swap_hard_limit",
                                              "min_guarantee")}),
    "blkiotune": El(children={"weight": El(text=UINT),
                              "device": Refused("throttles a host block device")}),
    "numatune": Refused("binds guest memory to host NUMA nodes, which podvirt.io/ "
                        "annotations do not price"),
    "resource": Refused("places the domain in a host cgroup partition outside the pod"),
    "sysinfo": Typed("type", {"smbios": El(children={
        n: SMBIOS_BLOCK for n in ("bios", "system", "baseBoard", "chassis", "processor",
                                  "memory", "oemStrings")})},
        default=None, refused={"fwcfg": "hands the guest files through fw_cfg"}),
    "bootloader": Refused("runs a host bootloader program"),
    "bootloader_args": Refused("runs a host bootloader program"),
    "os": OS,
    "features": FEATURES,
    "cpu": CPU,
    "clock": CLOCK,
    "on_poweroff": LIFECYCLE, "on_reboot": LIFECYCLE, "on_crash": LIFECYCLE,
    "on_lockfailure": Refused("needs a host lock manager"),
    "pm": El(children={n: El(attrs={"enabled": YES_NO})
                       for n in ("suspend-to-mem", "suspend-to-disk")}),
    "devices": DEVICES,
    "perf": Refused("reads the host's performance counters"),
    "idmap": Refused("maps container ids, not a VM's"),
    "seclabel": SECLABEL,
    "keywrap": Refused("an s390 feature"),
    "launchSecurity": Refused("needs the host's memory encryption device (/dev/sev)"),
    "throttlegroups": Refused("not on podvirt's list known safe inside a pod"),
})
