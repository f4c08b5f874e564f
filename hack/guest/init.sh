#!/bin/busybox sh
# PID 1 of the podvirt test guest (busybox initramfs, serial console on ttyS0).
#   podvirt.sleep=N    power off N seconds after boot (default 0); "wait" = until ACPI
#   podvirt.touch=MiB  write MiB of data into guest RAM (a tmpfs) first, then print
#                      PODVIRT-GUEST-TOUCHED <MiB written> (memory benchmarks)
#   podvirt.net=dhcp   bring up eth0 by DHCP, print PODVIRT-GUEST-IP <address/prefix>
#   podvirt.serve=PORT answer HTTP on PORT with PODVIRT-GUEST-HTTP <address>
#   podvirt.reach=URL  fetch URL once the network is up, print PODVIRT-GUEST-REACHED <body>
#   podvirt.disk-read=vda,...         print PODVIRT-GUEST-READ <dev> <first line of the disk>
#   podvirt.disk-write=vda:TEXT,...   then write "PODVIRT-DATA TEXT" at the disk's start
#   podvirt.disk-watch=vda,...        after PODVIRT-GUEST-UP, every second, PODVIRT-GUEST-READ
#                      as above, read past the page cache (a migrated guest reads the disk
#                      of the pod it runs in now)
#   podvirt.firmware   print PODVIRT-GUEST-FIRMWARE efi|bios (whether the kernel came up
#                      under UEFI) and PODVIRT-GUEST-TPM <TPM devices the kernel found>
#   podvirt.seed=KEY   mount the cloud-init seed (the ISO disk with meta-data), print
#                      PODVIRT-GUEST-SEED <value of "KEY:" in its user-data>
#   podvirt.count      after PODVIRT-GUEST-UP, print PODVIRT-COUNT <n> every 100 ms, n
#                      counting up from 0 (a migrated guest must continue, not restart)
#   podvirt.shell=1    after PODVIRT-GUEST-UP, an interactive shell on ttyS0 (respawned
#                      when it exits) instead of podvirt.sleep; ACPI still powers off
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# The cloud kernel builds the ACPI button and evdev drivers as modules (without them an
# ACPI power-button press never reaches userspace), and the virtio drivers too.
for mod in evdev button virtio_pci virtio_net virtio_blk isofs; do
    modprobe "$mod" 2>/dev/null
done

sleep_s=0
touch_mib=0
firmware="" net="" serve="" reach="" seed="" disk_read="" disk_write="" disk_watch=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        podvirt.sleep=*) sleep_s="${arg#podvirt.sleep=}" ;;
        podvirt.touch=*) touch_mib="${arg#podvirt.touch=}" ;;
        podvirt.net=*) net="${arg#podvirt.net=}" ;;
        podvirt.serve=*) serve="${arg#podvirt.serve=}" ;;
        podvirt.reach=*) reach="${arg#podvirt.reach=}" ;;
        podvirt.seed=*) seed="${arg#podvirt.seed=}" ;;
        podvirt.firmware) firmware=1 ;;
        podvirt.disk-read=*) disk_read="${arg#podvirt.disk-read=}" ;;
        podvirt.disk-write=*) disk_write="${arg#podvirt.disk-write=}" ;;
        podvirt.disk-watch=*) disk_watch="${arg#podvirt.disk-watch=}" ;;
    esac
done

# Each power-button input device delivers an event when the host asks for an ACPI
# shutdown; reading one event is enough to know the button was pressed.
for ev in /sys/class/input/event*; do
    if grep -q "Power Button" "$ev/device/name" 2>/dev/null; then
        ( dd if="/dev/input/${ev##*/}" bs=24 count=1 >/dev/null 2>&1
          echo "PODVIRT-GUEST-ACPI-SHUTDOWN"
          sync; poweroff -f ) &
    fi
done

if [ "$touch_mib" -gt 0 ] 2>/dev/null; then
    # A tmpfs of its own: the initramfs root is capped at half the guest's memory.
    mkdir -p /touch
    mount -t tmpfs -o size="$((touch_mib + 1))m" touch /touch
    dd if=/dev/urandom of=/touch/data bs=1M count="$touch_mib" 2>/dev/null
    # What was really written (an OOM inside the guest would cut it short).
    echo "PODVIRT-GUEST-TOUCHED $(($(wc -c < /touch/data) / 1048576))"
fi
if [ "$net" = "dhcp" ]; then
    # udhcpc hands the lease to a script; this one applies it (busybox ships none).
    cat > /bin/dhcp-lease <<'SCRIPT'
#!/bin/busybox sh
case "$1" in
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        for r in $router; do ip route add default via "$r" dev "$interface"; break; done
        : > /etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done ;;
esac
SCRIPT
    chmod +x /bin/dhcp-lease
    mkdir -p /etc
    ip link set lo up
    ip link set eth0 up
    if udhcpc -i eth0 -s /bin/dhcp-lease -q -n -t 10 -T 2 >/dev/null 2>&1; then
        echo "PODVIRT-GUEST-IP $(ip -4 -o addr show dev eth0 | awk '{print $4}')"
    else
        echo "PODVIRT-GUEST-DHCP-FAILED"
    fi
fi
if [ -n "$serve" ]; then
    mkdir -p /www
    echo "PODVIRT-GUEST-HTTP $(ip -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')" \
        > /www/index.html
    httpd -p "$serve" -h /www
fi
if [ -n "$reach" ]; then
    for try in 1 2 3 4 5; do
        # (no -T: Debian 12's busybox wget segfaults with a timeout option)
        if body=$(wget -q -O - "$reach" 2>/tmp/wget.err); then break; fi
        body="" ; sleep 1
    done
    if [ -n "$body" ]; then
        echo "PODVIRT-GUEST-REACHED $(echo "$body" | head -c 200)"
    else
        echo "PODVIRT-GUEST-UNREACHED $(head -c 200 /tmp/wget.err)"
    fi
fi
if [ -n "$seed" ]; then
    # The NoCloud seed is the ISO 9660 disk holding meta-data and user-data (busybox's
    # findfs cannot read ISO labels, so every virtio disk is tried).
    mkdir -p /seed
    found=""
    for dev in /dev/vd?; do
        if mount -t iso9660 -o ro "$dev" /seed 2>/dev/null; then
            if [ -f /seed/meta-data ] && [ -f /seed/user-data ]; then found=$dev; break; fi
            umount /seed
        fi
    done
    if [ -n "$found" ]; then
        echo "PODVIRT-GUEST-SEED $(sed -n "s/^$seed: *//p" /seed/user-data | head -1)"
    else
        echo "PODVIRT-GUEST-SEED-MISSING"
    fi
fi
if [ -n "$firmware" ]; then
    if [ -d /sys/firmware/efi ]; then echo "PODVIRT-GUEST-FIRMWARE efi"
    else echo "PODVIRT-GUEST-FIRMWARE bios"; fi
    echo "PODVIRT-GUEST-TPM $(ls /sys/class/tpm 2>/dev/null | tr '\n' ' ')none"
fi
read_disks() {
    for dev in $(echo "$1" | tr , ' '); do
        # The first sector only (a blank disk has no newline to stop at); printable ASCII
        # only (this busybox's tr has no character classes).
        echo "PODVIRT-GUEST-READ $dev $(dd if="/dev/$dev" bs=512 count=1 2>/dev/null \
                                         | head -n 1 | tr -cd ' -~')"
    done
}
read_disks "$disk_read"
for item in $(echo "$disk_write" | tr , ' '); do
    dev="${item%%:*}"
    echo "PODVIRT-DATA ${item#*:}" | dd of="/dev/$dev" conv=notrunc,fsync 2>/dev/null \
        && echo "PODVIRT-GUEST-WROTE $dev"
done
echo "PODVIRT-GUEST-UP"

if [ -n "$disk_watch" ]; then
    # drop_caches: each read reaches the disk, not what the guest cached of it.
    ( while :; do sleep 1; echo 3 > /proc/sys/vm/drop_caches; read_disks "$disk_watch"; done ) &
fi

# podvirt.shell=1: a root shell on the serial console, for `kubectl podvirt console`.
if grep -qw "podvirt.shell=1" /proc/cmdline; then
    # setsid + cttyhack: the shell leads its own session with ttyS0 as controlling
    # terminal, so Ctrl-C reaches its foreground job.
    # The pause keeps a shell that cannot start from spinning a TCG vCPU.
    while :; do setsid cttyhack sh -i </dev/ttyS0 >/dev/ttyS0 2>&1; sleep 1; done
fi

if grep -qw "podvirt.count" /proc/cmdline; then
    n=0
    while :; do echo "PODVIRT-COUNT $n"; n=$((n + 1)); usleep 100000; done
fi

if [ "$sleep_s" = "wait" ]; then
    while :; do sleep 3600; done
fi
sleep "$sleep_s"
echo "PODVIRT-GUEST-POWEROFF"
poweroff -f
