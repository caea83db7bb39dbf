"""Cloud Run function `admin`: spend limits, cost analytics, sessions, audit log.

A thin shell: it maps paths to handlers in `common/` and nothing else.
"""

import functions_framework
from flask import Request, Response

from common.admin import analytics, audit_log, explain, openapi, spend_limits
from common.admin import sessions as admin_sessions
from common.auth import revocation
from common.http import App

revocation.install()

app = App("admin")
app.route("/v1/organizations/sessions", ["GET"])(admin_sessions.list_sessions)
app.route("/v1/organizations/sessions/revoke", ["POST"])(admin_sessions.revoke_sessions)
app.route("/v1/organizations/sessions", ["DELETE"], prefix=True)(admin_sessions.revoke_sessions)
app.route("/v1/organizations/spend_limits", ["GET", "POST"])(spend_limits.list_or_create)
app.route("/v1/organizations/spend_limits", ["GET", "POST", "DELETE"], prefix=True)(spend_limits.item)
app.route("/v1/organizations/analytics/cost", ["GET"])(analytics.cost)
app.route("/v1/organizations/policy/explain", ["GET"])(explain.explain)
app.route("/v1/organizations/audit_log", ["GET"])(audit_log.audit_log)
app.route("/v1/organizations/openapi.json", ["GET"])(openapi.serve)


@functions_framework.http
def admin(request: Request) -> Response:
    return app(request)
