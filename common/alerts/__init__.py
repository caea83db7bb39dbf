"""Budget alerts (`alerts:` in gateway.yaml): thresholds per cap scope, fired once per (cap, period, threshold) across every instance, delivered to signed webhooks and Slack.

`engine.on_settled()` is what the settle path calls (no round trip for callers
far from a threshold; never delays a response); `delivery` owns the
`alert_events` / `alert_deliveries` tables, payloads, signatures and retries.
"""

__all__ = ["delivery", "engine"]
