"""Every example VM parses as documented: the valid ones yield a spec, vm-bad is denied."""

from pathlib import Path

import pytest
import yaml

from podvirt.vmspec import SpecInvalid, is_vm_pod, parse_vm

EXAMPLES = sorted(p for p in (Path(__file__).parents[2] / "examples").glob("vm-*.yaml"))


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in EXAMPLES])
def test_example(path):
    pod = yaml.safe_load(path.read_text())
    if pod["kind"] != "Pod":       # a controller: its pod template is the VM pod
        pod = {**pod["spec"]["template"], "metadata": {
            **pod["spec"]["template"]["metadata"], "name": pod["metadata"]["name"]}}
    assert is_vm_pod(pod["metadata"]["labels"])
    annotations = pod["metadata"]["annotations"]
    if path.stem == "vm-bad":
        with pytest.raises(SpecInvalid) as err:
            parse_vm(annotations)
        assert {v.key for v in err.value.violations} == {
            "podvirt.io/vcpus", "podvirt.io/memory", "podvirt.io/disks"}
    else:
        assert parse_vm(annotations, name=pod["metadata"]["name"]).memory_bytes > 0
