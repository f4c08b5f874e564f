"""Prints the README's annotation reference from podvirt.vmspec.keys (the single source).

tests/unit/test_readme.py checks that the README holds exactly this table.
"""

from podvirt.vmspec import keys


def table() -> str:
    rows = ["| annotation | meaning |", "|---|---|"]
    rows += [f"| `{key}` | {text} |" for key, text in keys.USER_KEYS.items()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
