"""The web layer every function shares: routing, request ids, access control, health, error envelopes, bodies.

`app.App` is a function's route table and the functions-framework target;
`clientip` decides which address a request comes from (trusted proxies).
Handlers in the domain packages return `flask.Response` objects built with
`app.json_response`.
"""

__all__ = [
    "app",
    "clientip",
]
