"""The reliability figures the hardening tests measure, for the README's reliability table."""


def figure(name: str, value: object) -> None:
    """One reliability figure as a `FIGURE name=value` line (run pytest with -s to see it)."""
    print(f"\nFIGURE {name}={value}", flush=True)
