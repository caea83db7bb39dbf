"""Cloud Run function `admin`: spend limits, cost analytics, sessions, audit log, and the web console at /admin.

A thin shell: it maps paths to handlers in `common/` and nothing else.
"""

import functions_framework
from flask import Request, Response

from common.admin import analytics, audit_log, explain, openapi, spend_limits
from common.admin import sessions as admin_sessions
from common.auth import revocation
from common.console import pages as console
from common.console import web as console_web
from common.http import App, server

revocation.install()
server.install()  # request-line, header and read-time limits on functions-framework's gunicorn

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
# The web console (docs/console.md).
app.route("/admin", ["GET"])(console.overview)
app.route("/admin/signin", ["GET"])(console_web.signin)
app.route("/admin/callback", ["GET"])(console_web.callback)
app.route("/admin/signout", ["POST"])(console_web.signout)
app.route("/admin/static", ["GET"], prefix=True)(console_web.static)
app.route("/admin/users", ["GET"])(console.users)
app.route("/admin/users", ["GET", "POST"], prefix=True)(console.user_item)
app.route("/admin/groups", ["GET"])(console.groups)
app.route("/admin/groups", ["GET"], prefix=True)(console.group_item)
app.route("/admin/fleet", ["GET"])(console.fleet)
app.route("/admin/limits", ["GET", "POST"])(console.limits)
app.route("/admin/limits", ["GET", "POST"], prefix=True)(console.limit_item)
app.route("/admin/audit", ["GET"])(console.audit)
app.route("/admin/alerts", ["GET", "POST"])(console.alerts)


@functions_framework.http
def admin(request: Request) -> Response:
    return app(request)
