"""`podvirt device-plugin`: kubelet device plugins for /dev/kvm, /dev/net/tun, /dev/vhost-net,
and for VFIO-bound PCI passthrough devices.

One generic plugin type parameterized by (resource name, device node), as KubeVirt's
virt-handler serves its permanent devices; and one per passthrough resource, one device per
PCI address (docs/passthrough.md). Layers, each only looking down:

    devices.py   pure: which shared-node plugins exist, their device lists, Allocate and
                 preferred allocation answers (plain values, no gRPC), the device-node stat
    vfio.py      pure: VFIO devices per resource, their Allocate answers, and which pod's
                 assignment GetPreferredAllocation prefers
    api.py       the generated stubs (_api/, hack/deviceplugin/gen.sh), imported in one place
    service.py   the DevicePlugin gRPC servicer of one resource and its unix-socket server
    vfioserve.py a VFIO resource's answers for the servicer, and the API's pending pods
    kubelet.py   the Registration client and kubelet.sock's identity
    manager.py   the loop: health polling, sysfs rescans, serving, (re-)registering, shutdown
    cli.py       `podvirt device-plugin` arguments, signals, error messages
"""
