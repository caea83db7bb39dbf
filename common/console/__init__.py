"""The web console at /admin (served by the admin function): sign-in through the company IdP, overview, users, groups, fleet, limits, audit log, alerts.

`web` owns sign-in, the session cookie, CSRF, CSP and rendering; `pages` the
page handlers; `charts` the server-side SVG. The console has no SQL of its
own: it reads through the modules that own the tables (`spend.store`,
`admin.fleet`, `auth.store`, `audit.records`).
"""

__all__ = ["charts", "pages", "web"]
