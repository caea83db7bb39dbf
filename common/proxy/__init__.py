"""The inference proxy: `/v1/messages` as explicit steps, from the bearer to the settled spend.

`pipeline` holds the handlers (`messages`, `count_tokens`, `list_models`,
`get_model`); `messages` reads as the request's path, one step per line, and
`steps` holds those steps (check the body, apply the policy, route, reserve,
send, relay or read whole, settle). `metering` is the one interface to spend
and telemetry (`begin` before the upstream, `finish` after its last byte).
`sse` is the event protocol without I/O (`UsageScanner`: bytes in, usage
out); `relay` is the I/O around it (`StreamRelay`: reads the upstream, pings,
writes to the client, drains after a disconnect). `upstreams` routes a model
to Vertex or the Anthropic API and maps their failures; `http1` is the pooled
HTTP/1.1 transport (h11 framing).
"""

__all__ = [
    "http1",
    "metering",
    "pipeline",
    "relay",
    "sse",
    "steps",
    "upstreams",
]
