"""The `/v1/messages` pipeline: authenticate, apply policy, reserve, call the upstream, relay, settle.

`pipeline` holds the handlers (`/v1/messages`, `count_tokens`, `/v1/models`);
`metering` is the one interface to spend and telemetry (`begin` before the
upstream, `finish` after its last byte); `sse` reads usage from events
without I/O, `relay` streams them to the client; `upstreams` routes a model
to Vertex or the Anthropic API;
`http1` is the pooled HTTP/1.1 transport (h11 framing).
"""

__all__ = [
    "http1",
    "metering",
    "pipeline",
    "relay",
    "sse",
    "upstreams",
]
