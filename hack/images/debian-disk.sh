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
# No network configuration of our own: cloud-init writes one from the seed (or DHCP on
# the first NIC, whatever udev's predictable name for it is: enp0s30 here).
