#!/bin/sh
# Build the podvirt test guest: a Debian cloud kernel and a busybox initramfs that prints
# PODVIRT-GUEST-UP on the serial console and powers off (see init.sh for kernel args).
# Idempotent: outputs are cached in $PODVIRT_GUEST_DIR (default ~/.cache/podvirt/guest)
# and rebuilt only when init.sh changes. Prints the output directory last.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${PODVIRT_GUEST_DIR:-$HOME/.cache/podvirt/guest}
mkdir -p "$out"

if [ ! -s "$out/vmlinuz" ] || [ ! -d "$out/modules" ]; then
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
    [ -n "$pkg" ] || { echo "build.sh: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
    echo "guest: downloading $pkg" >&2
    dl="$out/dl"; rm -rf "$dl"; mkdir -p "$dl"
    (cd "$dl" && apt-get download "$pkg" >/dev/null 2>&1) \
        || { echo "build.sh: apt-get download $pkg failed" >&2; exit 1; }
    echo "guest: unpacking kernel" >&2
    dpkg-deb -x "$dl"/*.deb "$dl/root"
    mkdir -p "$out/modules"
    for mod in drivers/input/evdev.ko drivers/acpi/button.ko; do
        cp "$(ls -d "$dl"/root/lib/modules/*)/kernel/$mod" "$out/modules/"
    done
    cp "$dl"/root/boot/vmlinuz-* "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"
    rm -rf "$dl"
fi

stamp=$(cat "$here/init.sh" /bin/busybox "$out"/modules/*.ko | sha256sum | cut -c1-16)
if [ ! -s "$out/initramfs.cpio.gz" ] || [ "$(cat "$out/initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "guest: building initramfs" >&2
    root="$out/initramfs.d"; rm -rf "$root"
    mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/lib/modules" "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    cp "$out"/modules/*.ko "$root/lib/modules/"
    install -m 0755 "$here/init.sh" "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initramfs.tmp"
    mv "$out/initramfs.tmp" "$out/initramfs.cpio.gz"
    echo "$stamp" > "$out/initramfs.stamp"
    rm -rf "$root"
fi
echo "guest: ready" >&2
echo "$out"
