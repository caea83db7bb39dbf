"""The request path's per-config values: derived once per config version, never stale after a reload."""

from __future__ import annotations

from support import parsed_config

from common.proxy import steps


def test_settings_are_built_once_per_config_version_and_follow_a_reload() -> None:
    cfg = parsed_config({"timeouts": {"ping_interval_ms": 2_500, "upstream_ttfb_ms": 9_000, "upstream_read_ms": 4_000}})
    first = steps.settings(cfg)
    assert steps.settings(cfg) is first
    assert (first.ping_seconds, first.ttfb_seconds, first.read_seconds) == (2.5, 9.0, 4.0)
    assert first.plain_seconds == 9.0  # a plain reply may be silent for the longer of the two
    assert first.billing_tag == "cost-center"  # the base config's admin.billing_group_tag
    reloaded = parsed_config({"timeouts": {"ping_interval_ms": 500}, "admin": {"billing_group_tag": "team"}})
    again = steps.settings(reloaded)
    assert again is not first and again.ping_seconds == 0.5 and again.billing_tag == "team"
    assert steps.settings(cfg) is first  # the older version, still held by requests in flight, keeps its own
