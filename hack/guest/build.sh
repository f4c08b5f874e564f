#!/bin/sh
# Build the podvirt test guest: a Debian cloud kernel and a busybox initramfs that prints
# PODVIRT-GUEST-UP on the serial console and powers off (see init.sh for kernel args).
# Idempotent: outputs are cached in $PODVIRT_GUEST_DIR (default ~/.cache/podvirt/guest)
# and rebuilt only when init.sh, busybox or the module list change. Prints the output
# directory last.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${PODVIRT_GUEST_DIR:-$HOME/.cache/podvirt/guest}
mkdir -p "$out"

# The cloud kernel builds these as modules: ACPI power button + evdev (an ACPI shutdown
# reaches userspace), virtio PCI/net/blk (the pod NIC, disks and the cloud-init seed, which
# podvirt attaches as a virtio disk: this kernel has no AHCI driver) and ISO 9660 (the seed).
MODULES="drivers/input/evdev.ko drivers/acpi/button.ko drivers/virtio/virtio_pci.ko
drivers/net/virtio_net.ko drivers/block/virtio_blk.ko fs/isofs/isofs.ko"
wanted=$(echo "$MODULES" | sha256sum | cut -c1-16)

if [ ! -s "$out/vmlinuz" ] || [ "$(cat "$out/modules.stamp" 2>/dev/null)" != "$wanted" ]; then
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
    [ -n "$pkg" ] || { echo "build.sh: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
    echo "guest: downloading $pkg" >&2
    dl="$out/dl"; rm -rf "$dl"; mkdir -p "$dl"
    (cd "$dl" && apt-get download "$pkg" >/dev/null 2>&1) \
        || { echo "build.sh: apt-get download $pkg failed" >&2; exit 1; }
    echo "guest: unpacking kernel" >&2
    dpkg-deb -x "$dl"/*.deb "$dl/root"
    version=$(ls "$dl/root/lib/modules")
    busybox depmod -b "$dl/root" "$version"
    # Each wanted module and what it depends on, kept in the kernel's own layout.
    rm -rf "$out/modules"
    for mod in $MODULES; do
        for dep in "kernel/$mod" $(sed -n "s|^kernel/$mod: *||p" \
                                   "$dl/root/lib/modules/$version/modules.dep"); do
            mkdir -p "$out/modules/$version/$(dirname "$dep")"
            cp "$dl/root/lib/modules/$version/$dep" "$out/modules/$version/$dep"
        done
    done
    cp "$dl"/root/boot/vmlinuz-* "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"
    echo "$wanted" > "$out/modules.stamp"
    rm -rf "$dl"
fi

stamp=$( { cat "$here/init.sh" /bin/busybox; find "$out/modules" -type f | sort | xargs cat; } \
         | sha256sum | cut -c1-16)
if [ ! -s "$out/initramfs.cpio.gz" ] || [ "$(cat "$out/initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "guest: building initramfs" >&2
    root="$out/initramfs.d"; rm -rf "$root"
    mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/lib" "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    cp -a "$out/modules" "$root/lib/modules"
    version=$(ls "$root/lib/modules")
    busybox depmod -b "$root" "$version"
    install -m 0755 "$here/init.sh" "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initramfs.tmp"
    mv "$out/initramfs.tmp" "$out/initramfs.cpio.gz"
    echo "$stamp" > "$out/initramfs.stamp"
    rm -rf "$root"
fi
echo "guest: ready" >&2
echo "$out"
