"""`podvirt device-plugin`: kubelet device plugins for /dev/kvm, /dev/net/tun, /dev/vhost-net.

One generic plugin type parameterized by (resource name, device node), as KubeVirt's
virt-handler serves its permanent devices. Layers, each only looking down:

    devices.py   pure: which plugins exist, their device lists, Allocate and preferred
                 allocation answers (plain values, no gRPC), and the one device-node stat
    api.py       the generated stubs (_api/, hack/deviceplugin/gen.sh), imported in one place
    service.py   the DevicePlugin gRPC servicer of one resource and its unix-socket server
    kubelet.py   the Registration client and kubelet.sock's identity
    manager.py   the loop: health polling, serving, (re-)registering, shutdown
    cli.py       `podvirt device-plugin` arguments, signals, error messages
"""
