#!/bin/busybox sh
# PID 1 of the podvirt test guest (busybox initramfs, serial console on ttyS0).
#   podvirt.sleep=N    power off N seconds after boot (default 0); "wait" = until ACPI
#   podvirt.touch=MiB  write MiB of data into guest RAM (a tmpfs) first, then print
#                      PODVIRT-GUEST-TOUCHED <MiB written> (memory benchmarks)
#   podvirt.shell=1    after PODVIRT-GUEST-UP, an interactive shell on ttyS0 (respawned
#                      when it exits) instead of podvirt.sleep; ACPI still powers off
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# The cloud kernel builds the ACPI button and evdev drivers as modules; without them
# an ACPI power-button press never reaches userspace.
insmod /lib/modules/evdev.ko 2>/dev/null
insmod /lib/modules/button.ko 2>/dev/null

sleep_s=0
touch_mib=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        podvirt.sleep=*) sleep_s="${arg#podvirt.sleep=}" ;;
        podvirt.touch=*) touch_mib="${arg#podvirt.touch=}" ;;
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
echo "PODVIRT-GUEST-UP"

# podvirt.shell=1: a root shell on the serial console, for `kubectl podvirt console`.
if grep -qw "podvirt.shell=1" /proc/cmdline; then
    # setsid + cttyhack: the shell leads its own session with ttyS0 as controlling
    # terminal, so Ctrl-C reaches its foreground job.
    # The pause keeps a shell that cannot start from spinning a TCG vCPU.
    while :; do setsid cttyhack sh -i </dev/ttyS0 >/dev/ttyS0 2>&1; sleep 1; done
fi

if [ "$sleep_s" = "wait" ]; then
    while :; do sleep 3600; done
fi
sleep "$sleep_s"
echo "PODVIRT-GUEST-POWEROFF"
poweroff -f
