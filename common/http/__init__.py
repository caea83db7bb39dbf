"""The web layer every function shares: routing, request context, access, health, errors, bodies.

`router.App` is a function's route table and the functions-framework target;
`requestid` gives each request an id that every log line carries, streamed
bodies included, and lets handlers `annotate` the request for its access-log
line (`accesslog`); `access` applies `access_control` to the client address
`clientip` works out; `health` answers /healthz and /readyz; `errors` renders
exceptions through a registry keyed by exception class; `bodies` reads request
bodies within a bound (and decompresses them within one); `responses` builds
JSON responses; `server` bounds the HTTP server itself (request line, headers,
read time) under functions-framework's gunicorn. Handlers in the domain packages return `flask.Response`
objects, raise `core.errors` exceptions and never build an error body.
"""

from common.http.bodies import read_json_body
from common.http.requestid import annotate
from common.http.responses import NO_STORE, json_response
from common.http.router import App

__all__ = [
    "NO_STORE",
    "App",
    "access",
    "accesslog",
    "annotate",
    "bodies",
    "clientip",
    "errors",
    "health",
    "json_response",
    "read_json_body",
    "requestid",
    "responses",
    "router",
    "server",
]
