"""Client addresses as Cloud Run presents them (issue 14, finding 11): the rate limits' buckets.

On Cloud Run the container's peer is Google's front end at a link-local address and the client is
in X-Forwarded-For; behind an Application Load Balancer the balancer's own address is appended.
docs/auth.md says what `listen.trusted_proxies` must hold for each.
"""

from __future__ import annotations

import pytest
from flask import Flask, request
from support import parsed_config
from support.logcapture import capture_logs

from common import config
from common.http import clientip

CLOUD_RUN = ["169.254.0.0/16"]
LB_ADDRESS = "34.117.10.20"  # the forwarding rule's address (docs: one /32 per load balancer)
GOOGLE_FRONT_ENDS = ["35.191.0.0/16", "130.211.0.0/22"]


def _ip(cfg: config.Config, peer: str, forwarded: str | None) -> str:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with Flask("t").test_request_context("/", headers=headers, environ_base={"REMOTE_ADDR": peer}):
        return clientip.client_ip(request, cfg)


@pytest.fixture(autouse=True)
def _rewarn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clientip, "_warned", False)


def test_cloud_run_direct_the_front_end_peer_is_trusted() -> None:
    cfg = parsed_config({"listen": {"trusted_proxies": CLOUD_RUN}})
    assert _ip(cfg, "169.254.1.1", "203.0.113.9") == "203.0.113.9"
    assert _ip(cfg, "169.254.8.129", "198.51.100.4") == "198.51.100.4"  # another client, another bucket
    assert _ip(cfg, "169.254.1.1", "6.6.6.6, 203.0.113.9") == "203.0.113.9"  # a spoofed hop is not believed


def test_behind_a_load_balancer_its_appended_address_is_skipped() -> None:
    cfg = parsed_config({"listen": {"trusted_proxies": [*CLOUD_RUN, f"{LB_ADDRESS}/32", *GOOGLE_FRONT_ENDS]}})
    assert _ip(cfg, "169.254.1.1", f"203.0.113.9, {LB_ADDRESS}") == "203.0.113.9"
    assert _ip(cfg, "169.254.1.1", f"6.6.6.6, 203.0.113.9, {LB_ADDRESS}") == "203.0.113.9"
    assert _ip(cfg, "169.254.1.1", f"203.0.113.9, {LB_ADDRESS}, 35.191.4.4") == "203.0.113.9"
    # Without the balancer's address trusted, every client would be the balancer.
    partial = parsed_config({"listen": {"trusted_proxies": CLOUD_RUN}})
    assert _ip(partial, "169.254.1.1", f"203.0.113.9, {LB_ADDRESS}") == LB_ADDRESS


def test_an_untrusted_front_end_makes_one_bucket_and_says_so_once() -> None:
    cfg = parsed_config({})
    with capture_logs() as logs:
        first = _ip(cfg, "169.254.1.1", "203.0.113.9")
        second = _ip(cfg, "169.254.1.1", "198.51.100.4")
    assert first == second == "169.254.1.1"  # the failure mode docs/auth.md warns about
    warnings = [line for line in logs.lines() if "listen.trusted_proxies" in line["message"]]
    assert len(warnings) == 1 and "169.254.0.0/16" in warnings[0]["message"]


def test_loopback_development_is_not_warned_about() -> None:
    cfg = parsed_config({})
    with capture_logs() as logs:
        assert _ip(cfg, "127.0.0.1", "203.0.113.9") == "127.0.0.1"
    assert not [line for line in logs.lines() if "trusted_proxies" in line["message"]]
