"""Cloud Run function `auth`: discovery, device flow, verification page, token, revoke.

A thin shell: it maps paths to handlers in `common/` and nothing else.
"""

import functions_framework
from flask import Request, Response

from common.auth import revocation, rfc7009, rfc8414, rfc8628, tokens, verification
from common.http import App, server

revocation.install()
server.install()  # request-line, header and read-time limits on functions-framework's gunicorn

app = App("auth", oauth_paths=("/oauth/device_authorization", "/oauth/token", "/oauth/revoke"))
app.route("/.well-known/oauth-authorization-server", ["GET"])(rfc8414.discovery)
app.route("/oauth/device_authorization", ["POST"])(rfc8628.device_authorization)
app.route("/oauth/token", ["POST"])(tokens.token)
app.route("/oauth/revoke", ["POST"])(rfc7009.revoke)
app.route("/device", ["GET"])(verification.show)
app.route("/device", ["POST"])(verification.submit)
app.route("/device/callback", ["GET"])(verification.callback)
app.route("/device/style.css", ["GET"])(verification.style)


@functions_framework.http
def auth(request: Request) -> Response:
    return app(request)
