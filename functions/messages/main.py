"""Cloud Run function `messages`: inference and the other bearer endpoints.

A thin shell: it maps paths to handlers in `common/` and nothing else.
"""

import gc

import functions_framework
from flask import Request, Response

from common.auth import revocation
from common.http import App, server
from common.policy import managed
from common.proxy import pipeline as inference
from common.spend import usage_report as usage
from common.telemetry import relay as telemetry_relay

revocation.install()  # bearer endpoints refuse revoked sessions
server.install()  # request-line, header and read-time limits on functions-framework's gunicorn

app = App("messages")
app.route("/v1/messages", ["POST"])(inference.messages)
app.route("/v1/messages/count_tokens", ["POST"])(inference.count_tokens)
app.route("/v1/models", ["GET"])(inference.list_models)
app.route("/v1/models", ["GET"], prefix=True)(inference.get_model)
app.route("/managed/settings", ["GET"])(managed.settings)
app.route("/v1/metrics", ["POST"])(telemetry_relay.relay)
app.route("/v1/logs", ["POST"])(telemetry_relay.relay)
app.route("/v1/traces", ["POST"])(telemetry_relay.relay)
app.route("/api/oauth/usage", ["GET"])(usage.usage)


@functions_framework.http
def messages(request: Request) -> Response:
    return app(request)


# functions-framework imports this file in gunicorn's master, which then forks the worker:
# frozen, the imported objects are never touched by the worker's collections, so their
# pages stay shared with the master instead of being copied (~17 MB less per instance).
gc.freeze()
