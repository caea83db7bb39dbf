"""Telemetry: the gateway's own metrics, and Claude Code's OTLP exports relayed with a verified identity.

`emit` records `claude_code.token.usage`, `claude_code.cost.usage` and the
gateway's request metrics per metered request (`record`, called by
`proxy.metering.finish`) with the session's identity, over OTLP/HTTP; one SDK
pipeline per instance per `telemetry` section (`pipeline`, `running`,
`flush`, `reset`, `stats`). `relay` serves `POST /v1/{metrics,logs,traces}`:
receive, overwrite every identity attribute with the verified one
(`stamp`), forward to `telemetry.forward_to` behind a circuit breaker
(`forward`, `reset`). Neither ever fails a request.
"""

__all__ = [
    "emit",
    "relay",
]
