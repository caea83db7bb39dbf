"""Who signed in: email, subject and groups from the IdP's claims, and the allow gates.

`email_claim` / `user_id_claim` / `groups_claim` name the claims (a dotted path
reaches nested ones); groups may be a string or a list. For Google Workspace,
whose ID tokens carry no groups, `oidc.google_groups` reads them from the
Admin SDK Directory API with the function's own identity, impersonating
`google_groups.admin_email` through domain-wide delegation (keyless: the
service account signs the delegation JWT through the IAM Credentials API).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from common import config
from common.auth.oidc import IdpUnavailable
from common.config import Config, GoogleGroups, is_loopback_url
from common.core import logs

DIRECTORY_SCOPE = "https://www.googleapis.com/auth/admin.directory.group.readonly"


@dataclass(frozen=True, slots=True)
class User:
    sub: str
    email: str
    groups: tuple[str, ...]


class Refused(Exception):
    """The IdP signed the user in, but the gateway's gates do not let them in."""


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def groups_from_claim(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [g for g in (s.strip() for s in value.replace(",", " ").split()) if g]
    if isinstance(value, list):
        return [g for g in value if isinstance(g, str) and g]
    return []


def _verified(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def user_from_claims(cfg: Config, claims: dict[str, Any]) -> User:
    """The user the claims describe, after every gate; `Refused` says why not."""
    oidc = cfg.oidc
    email = _claim(claims, oidc.email_claim)
    if not isinstance(email, str) or "@" not in email:
        raise Refused(f"The identity provider sent no email address (claim '{oidc.email_claim}').")
    if oidc.require_email_verified and "email_verified" in claims and not _verified(claims["email_verified"]):
        raise Refused(f"The email address {email} is not verified at the identity provider.")
    sub = _claim(claims, oidc.user_id_claim)
    if not isinstance(sub, str) or not sub:
        sub = email
    domain = email.rsplit("@", 1)[1].lower()
    if oidc.allowed_email_domains and domain not in {d.lower() for d in oidc.allowed_email_domains}:
        raise Refused(f"Accounts of {domain} may not use this gateway.")
    if oidc.google_groups is not None:
        groups = directory_groups(cfg, email)
    else:
        groups = groups_from_claim(_claim(claims, oidc.groups_claim))
    if oidc.allowed_groups:
        allowed = {g.lower() for g in oidc.allowed_groups}
        if not allowed.intersection(g.lower() for g in groups):
            raise Refused(f"{email} is not in a group allowed to use this gateway.")
    return User(sub=sub, email=email, groups=tuple(dict.fromkeys(groups)))


# --- Google Workspace groups ----------------------------------------------------------


def _directory_session(cfg: Config) -> requests.Session:
    """A session carrying the function's delegated credential (none for a loopback stand-in)."""
    settings = cfg.oidc.google_groups
    assert settings is not None
    if is_loopback_url(settings.endpoint):
        return requests.Session()
    from google.auth.transport.requests import AuthorizedSession

    # One credential per config version: a reload that changes admin_email gets a new one.
    return AuthorizedSession(config.derive(cfg, _credentials_of))  # type: ignore[no-untyped-call]


def _credentials_of(cfg: Config) -> Any:
    assert cfg.oidc.google_groups is not None
    return _delegated_credentials(cfg.oidc.google_groups)


def _delegated_credentials(settings: GoogleGroups) -> Any:
    """Domain-wide delegation without a key file: the IAM Credentials API signs for us."""
    import google.auth
    from google.auth import iam
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    source, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    source.refresh(Request())  # type: ignore[no-untyped-call]
    email = getattr(source, "service_account_email", None)
    if not email or not settings.admin_email:
        raise RuntimeError("oidc.google_groups needs admin_email and a service-account identity")
    signer = iam.Signer(Request(), source, email)  # type: ignore[no-untyped-call]
    return service_account.Credentials(  # type: ignore[no-untyped-call]
        signer,
        email,
        "https://oauth2.googleapis.com/token",
        scopes=[DIRECTORY_SCOPE],
        subject=settings.admin_email,
    )


def directory_groups(cfg: Config, email: str) -> list[str]:
    """Email addresses of the groups `email` belongs to (Directory API groups.list?userKey=), per `oidc.google_groups`."""
    settings = cfg.oidc.google_groups
    assert settings is not None, "directory_groups needs oidc.google_groups"
    url = settings.endpoint.rstrip("/") + "/admin/directory/v1/groups"
    params: dict[str, str] = {"userKey": email, "maxResults": "200"}
    groups: list[str] = []
    with _directory_session(cfg) as http:
        for _ in range(50):  # 10,000 groups is more than enough
            try:
                response = http.get(url, params=params, timeout=10)
            except Exception as exc:  # requests' and google-auth's transport and credential errors alike
                raise IdpUnavailable(f"the Directory API did not answer: {type(exc).__name__}") from None
            if response.status_code == 404:
                raise Refused(f"{email} is not a user of the Google Workspace directory.")
            if response.status_code != 200:
                # Not the user's fault (an outage, a quota, our delegation): never a refusal that revokes.
                logs.error("directory API error", status=response.status_code, body=response.text[:300])
                raise IdpUnavailable(f"the Directory API answered {response.status_code}")
            body = response.json()
            groups.extend(g["email"] for g in body.get("groups", []) if isinstance(g.get("email"), str))
            token = body.get("nextPageToken")
            if not token:
                break
            params["pageToken"] = token
    return groups
