"""Values the docs name as the way to change a behaviour reach the component that has it."""

from __future__ import annotations

from tests.helm import find


def test_quarantine_values_reach_the_extender(render):
    """docs/vms.md: start failures quarantine a node per extender.quarantine.*."""
    from podvirt.cli import build_parser
    objects = render({"extender": {"quarantine": {"failures": 5, "windowSeconds": 120}}})
    args = find(objects, "Deployment", "-extender")["spec"]["template"]["spec"]["containers"][0]["args"]
    parsed = build_parser().parse_args(args)
    assert (parsed.quarantine_failures, parsed.quarantine_window) == (5, 120.0)


def test_webhook_log_level_reaches_the_webhook(render):
    """webhook.logLevel (debug logs every review, not only the refused ones): every level
    the CLI takes renders, and reaches it; the chart's own list is checked against it."""
    from podvirt.cli import build_parser
    from podvirt.webhook.cli import LOG_LEVELS
    for level in LOG_LEVELS:
        objects = render({"webhook": {"logLevel": level}})
        args = find(objects, "Deployment", "-webhook")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert build_parser().parse_args(args).log_level == level
