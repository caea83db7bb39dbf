"""Model upstreams: routing a model to an upstream, the pooled HTTP client, header rules, error mapping.

One pooled HTTP/1.1 client per instance (`HTTP`, see `http1.py`: h11 framing
on our own pool and sockets, ~150 µs of CPU per call where urllib3 costs
~300 µs) carries every upstream call over keep-alive connections; urllib3
(`POOL`) only serves google-auth's token refreshes. Each configured upstream
gets one client object per instance (`client_for`), rebuilt only when its
config entry changes.
A model may have several upstreams (`routing.routes`, in failover order);
`breaker` keeps a circuit breaker per upstream and instance, and
`errors.fails_over` says which failures move a request to the next one.
`vertex` and `anthropic` (public: tests reset the instance's Vertex
credential) know their provider's URL, body and credential; everything they
share lives here.
"""

from common.proxy.upstreams.base import (
    FORWARD_HEADERS,
    HTTP,
    POOL,
    Client,
    Prepared,
    Route,
    forward_headers,
    response_headers,
    strip_suffix,
)
from common.proxy.upstreams.breaker import BREAKERS, Breakers
from common.proxy.upstreams.errors import error_from_upstream, fails_over, temporary, transport_error
from common.proxy.upstreams.routing import client_for, route, routes

__all__ = [
    "BREAKERS",
    "FORWARD_HEADERS",
    "HTTP",
    "POOL",
    "Breakers",
    "Client",
    "Prepared",
    "Route",
    "anthropic",
    "client_for",
    "error_from_upstream",
    "fails_over",
    "forward_headers",
    "response_headers",
    "route",
    "routes",
    "strip_suffix",
    "temporary",
    "transport_error",
    "vertex",
]
