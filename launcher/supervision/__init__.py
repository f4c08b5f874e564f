"""The launcher's supervision of its VM as a state machine.

`machine.step(state, event, now) -> (state, commands)` decides everything; it reads no
clock, calls no libvirt and patches no pod. `events` are what happens to the launcher
(libvirt lifecycle, signals, `podvirt.io/action` requests, and the results of commands);
`commands` are what the I/O loop in launcher/run.py carries out.
"""
