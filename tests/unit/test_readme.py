"""The README's annotation reference is exactly the table generated from podvirt.vmspec.keys."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_annotation_table_matches_keys():
    spec = importlib.util.spec_from_file_location("annotation_table",
                                                  ROOT / "hack" / "annotation_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- annotation-table:[^\n]*-->\n(.*?)\n<!-- /annotation-table -->", readme,
                  re.S)
    assert m, "README lost its annotation-table markers"
    assert m.group(1).strip() == module.table().strip()
