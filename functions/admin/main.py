"""Cloud Run function `admin`: spend limits, cost analytics, sessions, audit log.

A thin shell: it maps paths to handlers in `common/` and nothing else.
"""

import functions_framework
from flask import Request, Response

from common.web import App

app = App("admin")


@functions_framework.http
def admin(request: Request) -> Response:
    return app(request)
