"""The chart's shutdown settings agree: the servers drain and then wait for in-flight
requests, and the kubelet's grace period covers both (gunicorn's own deadline first)."""

from __future__ import annotations

import pytest

from tests.helm import RenderError, find


def _flags(deployment: dict) -> dict[str, str]:
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = (a.removeprefix("--").partition("=") for a in args if a.startswith("--"))
    return {name: value for name, _, value in flags}


@pytest.mark.parametrize("values, drain, graceful", [
    pytest.param({}, 5, 10, id="defaults"),
    pytest.param({"webhook": {"drainSeconds": 0, "timeoutSeconds": 30}}, 0, 30, id="no-drain"),
])
def test_webhook_drains_then_waits_for_the_api_servers_timeout(render, values, drain, graceful):
    objects = render(values)
    dep = find(objects, "Deployment", "-webhook")
    flags = _flags(dep)
    assert (flags["drain-seconds"], flags["graceful-timeout"]) == (str(drain), str(graceful))
    # In-flight reviews are worth waiting for as long as the API server waits for them.
    hook = find(objects, "MutatingWebhookConfiguration")["webhooks"][0]
    assert hook["timeoutSeconds"] == graceful
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == drain + graceful + 5


@pytest.mark.parametrize("values, drain, graceful", [
    pytest.param({}, 5, 10, id="defaults"),
    pytest.param({"extender": {"drainSeconds": 2, "gracefulTimeoutSeconds": 30}}, 2, 30,
                 id="custom"),
])
def test_extender_drains_then_waits_for_in_flight_calls(render, values, drain, graceful):
    dep = find(render(values), "Deployment", "-extender")
    flags = _flags(dep)
    assert (flags["drain-seconds"], flags["graceful-timeout"]) == (str(drain), str(graceful))
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == drain + graceful + 5


@pytest.mark.parametrize("values, message", [
    pytest.param({"webhook": {"drainSeconds": -1}}, "webhook.drainSeconds must be 0 or more",
                 id="webhook-negative-drain"),
    pytest.param({"extender": {"gracefulTimeoutSeconds": 0}},
                 "extender.gracefulTimeoutSeconds 1 or more", id="extender-no-graceful-time"),
])
def test_bad_shutdown_values_fail(render, values, message):
    with pytest.raises(RenderError, match=message):
        render(values)
