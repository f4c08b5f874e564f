import pytest

from podvirt.vmspec.downward import (DownwardFileError, parse_annotations_file,
                                     render_annotations_file)


def test_kubelet_format():
    text = ('podvirt.io/memory="1Gi"\n'
            'podvirt.io/cloud-init="#cloud-config\\nusers: []\\n\\ttab \\"q\\" \\x41"\n')
    assert parse_annotations_file(text) == {
        "podvirt.io/memory": "1Gi", "podvirt.io/cloud-init": '#cloud-config\nusers: []\n\ttab "q" A'}


def test_round_trip():
    data = {"a/b": 'x"y\\z\n', "c": "ünï"}
    assert parse_annotations_file(render_annotations_file(data)) == data


@pytest.mark.parametrize("text", [pytest.param("garbage", id="no-equals"),
                                  pytest.param('k="unterminated', id="unterminated")])
def test_malformed(text):
    with pytest.raises(DownwardFileError):
        parse_annotations_file(text)
