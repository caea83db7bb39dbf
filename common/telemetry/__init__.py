"""Telemetry: what the gateway emits (`emit`: claude_code.token.usage and cost with the verified identity, OTLP/HTTP) and the relay of Claude Code's own OTLP exports (`relay`: receive, stamp the verified identity, forward)."""

__all__ = [
    "emit",
    "relay",
]
