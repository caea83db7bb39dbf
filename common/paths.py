"""The one path table: which function serves which path on the one origin.

Both the local one-origin server (`gateway run`, `gateway/local.py`) and the Terraform URL map
(`terraform/paths.auto.tfvars.json`, generated from this table and checked by a
test) read it, so the local router and the cloud front door cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FunctionName = Literal["auth", "messages", "admin"]
FUNCTIONS: tuple[FunctionName, ...] = ("auth", "messages", "admin")


@dataclass(frozen=True, slots=True)
class Route:
    """A path rule. `prefix=True` matches the path itself and everything below it."""

    path: str
    function: FunctionName
    prefix: bool = False

    def matches(self, path: str) -> bool:
        if path == self.path:
            return True
        return self.prefix and path.startswith(self.path.rstrip("/") + "/")

    def url_map_paths(self) -> list[str]:
        """The path patterns of a Google Cloud URL map path rule for this route."""
        if self.prefix:
            return [self.path.rstrip("/"), self.path.rstrip("/") + "/*"]
        return [self.path]


# Order matters only for readability: no two routes overlap.
ROUTES: tuple[Route, ...] = (
    Route("/.well-known/oauth-authorization-server", "auth"),
    Route("/oauth", "auth", prefix=True),
    Route("/device", "auth", prefix=True),
    Route("/v1/messages", "messages", prefix=True),
    Route("/v1/models", "messages", prefix=True),
    Route("/v1/metrics", "messages"),
    Route("/v1/logs", "messages"),
    Route("/v1/traces", "messages"),
    Route("/managed/settings", "messages"),
    Route("/api/oauth/usage", "messages"),
    Route("/v1/organizations", "admin", prefix=True),
    Route("/admin", "admin", prefix=True),  # the web console (common/console)
    # Health of each function through the one origin; each function also answers
    # /healthz and /readyz on its own URL.
    Route("/_gateway/auth", "auth", prefix=True),
    Route("/_gateway/messages", "messages", prefix=True),
    Route("/_gateway/admin", "admin", prefix=True),
)

# Paths no route claims (/, /healthz, …) go to the default service.
DEFAULT_FUNCTION: FunctionName = "messages"

HEALTH_SUFFIXES = ("/healthz", "/readyz")


def function_for(path: str) -> FunctionName:
    """The function that serves `path` (query string already removed)."""
    for route in ROUTES:
        if route.matches(path):
            return route.function
    return DEFAULT_FUNCTION


def health_kind(path: str) -> str | None:
    """'healthz' or 'readyz' when `path` is a health probe of any function."""
    for suffix in HEALTH_SUFFIXES:
        if path == suffix or (path.startswith("/_gateway/") and path.endswith(suffix)):
            return suffix[1:]
    return None


def url_map() -> dict[str, list[str]]:
    """Path patterns per function, as the Terraform URL map uses them."""
    out: dict[str, list[str]] = {name: [] for name in FUNCTIONS}
    for route in ROUTES:
        out[route.function].extend(route.url_map_paths())
    return out
