#!/usr/bin/env bash
# Customizes the Debian guest's root filesystem (an mmdebstrap --customize-hook; $1 is the
# root): what Debian's own cloud images set up so one disk boots on any VM, configured
# from its NoCloud seed by cloud-init.
set -euo pipefail
root="$1"
# The root filesystem by label: the disk is vda here, but need not be.
echo 'LABEL=rootfs / ext4 defaults,discard 0 1' >"$root/etc/fstab"
# NoCloud only: no network datasources to wait for (the seed is a disk).
cat >"$root/etc/cloud/cloud.cfg.d/90-podvirt.cfg" <<'CFG'
datasource_list: [ NoCloud, None ]
# The minimal system carries only C.UTF-8.
locale: C.UTF-8
CFG
# Per-VM identity comes at first boot: machine-id by systemd, SSH host keys by cloud-init.
rm -f "$root/etc/hostname" "$root"/etc/ssh/ssh_host_*
: >"$root/etc/machine-id"
# The first virtio NIC by DHCP (cloud-init writes the same on boot; this is for a boot
# without a seed).
cat >"$root/etc/network/interfaces.d/50-podvirt" <<'NET'
auto eth0
iface eth0 inet dhcp
NET
