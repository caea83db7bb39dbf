"""Cloud Run function `auth`: discovery, device flow, verification page, token, revoke.

A thin shell: it maps paths to handlers in `common/` and nothing else.
"""

import functions_framework
from flask import Request, Response

from common.web import App

app = App("auth")


@functions_framework.http
def auth(request: Request) -> Response:
    return app(request)
