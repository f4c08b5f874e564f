"""The downward-API annotations file the launcher reads its VM spec from.

kubelet writes one `key="value"` line per annotation, the value quoted as Go's %q
does (backslash escapes, \\n, \\t, \\xNN, \\uNNNN); `render_annotations_file` writes
the same format, which lets tests and `podvirt launcher --spec` use plain files.
"""

from __future__ import annotations

import json
import re

_LINE = re.compile(r'^([^=]+)=(".*")$')


class DownwardFileError(ValueError):
    pass


def _unquote_go(quoted: str) -> str:
    # Go's %q output is a valid JSON string except for \x, \a, \v and \U escapes.
    body = quoted[1:-1]
    body = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: "\\u00" + m.group(1), body)
    body = body.replace("\\a", "\\u0007").replace("\\v", "\\u000b")
    body = re.sub(r"\\U([0-9a-fA-F]{8})",
                  lambda m: json.dumps(chr(int(m.group(1), 16)))[1:-1], body)
    try:
        return json.loads('"' + body + '"')
    except json.JSONDecodeError as exc:
        raise DownwardFileError(f"bad quoted value {quoted[:40]!r}: {exc}") from None


def parse_annotations_file(text: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            raise DownwardFileError(f"line {number}: expected key=\"value\"")
        result[m.group(1)] = _unquote_go(m.group(2))
    return result


def render_annotations_file(annotations: dict[str, str]) -> str:
    return "".join(f"{key}={json.dumps(value, ensure_ascii=False)}\n"
                   for key, value in sorted(annotations.items()))
