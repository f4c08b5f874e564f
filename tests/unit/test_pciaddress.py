"""PCI addresses in one form, whichever way they were written."""

from __future__ import annotations

import pytest

from podvirt.vmspec.model import PassthroughDevice
from podvirt.vmspec.pciaddress import pci_address, pci_address_of, pci_parts


@pytest.mark.parametrize("text, canonical", [
    pytest.param("0000:3b:00.0", "0000:3b:00.0", id="canonical"),
    pytest.param("0000:AF:00.1", "0000:af:00.1", id="uppercase"),
    pytest.param("3b:00.0", "0000:3b:00.0", id="no-domain"),
    pytest.param("1:3:1f.7", "0001:03:1f.7", id="unpadded"),
    pytest.param(" 0000:3b:00.0\n", "0000:3b:00.0", id="surrounding-space"),
])
def test_addresses_normalise(text, canonical):
    assert pci_address(text) == canonical


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty"),
    pytest.param("0000:3b:00", id="no-function"),
    pytest.param("0000:3b:20.0", id="slot-over-5-bits"),
    pytest.param("0000:3b:00.8", id="function-over-3-bits"),
    pytest.param("00000:3b:00.0", id="domain-over-16-bits"),
    pytest.param("0000:3g:00.0", id="not-hex"),
])
def test_malformed_addresses_are_refused_by_name(text):
    with pytest.raises(ValueError, match="is not a PCI address"):
        pci_parts(text)


@pytest.mark.parametrize("attrs, canonical", [
    pytest.param({"domain": "0x0000", "bus": "0x3b", "slot": "0x00", "function": "0x0"},
                 "0000:3b:00.0", id="hex"),
    pytest.param({"bus": "59", "slot": "0", "function": "1"}, "0000:3b:00.1",
                 id="decimal-domain-missing"),
])
def test_a_domain_xml_address_names_the_same_device(attrs, canonical):
    assert pci_address_of(attrs) == canonical


def test_an_annotation_address_is_stored_canonical_and_a_bad_one_refused():
    entry = {"address": "3B:00.0", "vendor": "10DE", "device": "1EB8"}
    assert PassthroughDevice.from_json(entry).address == "0000:3b:00.0"
    with pytest.raises(ValueError, match="not a PCI address"):
        PassthroughDevice.from_json({**entry, "address": "gpu0"})
