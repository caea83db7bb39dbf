"""The web console at /admin (served by the admin function): sign-in through the company IdP, overview, users, groups, fleet, limits, audit log, alerts.

`web` owns sign-in, the session cookie, CSRF, CSP and rendering; `pages` the
page handlers; `charts` the server-side SVG; `queries` every SQL statement the
console runs (to move into the spend package's store module).
"""

__all__ = ["charts", "pages", "queries", "web"]
