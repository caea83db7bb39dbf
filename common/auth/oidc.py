"""The OIDC client side: the company IdP signs the user in (authlib), we verify what it says.

Authorization code flow with PKCE (S256), `state` and `nonce`; the ID token is
verified against the IdP's JWKS (signature with an asymmetric algorithm only,
`iss`, `aud`, `exp`, `iat`, and the `nonce` we sent). Discovery and JWKS are
cached per instance in one `Provider` per config version (`config.derive`), so
a reload that changes `oidc.issuer` can never be answered from the old IdP's
documents; an unknown `kid` refetches the JWKS (at most every 30 s) so the IdP
can rotate keys. The refresh grant is the off-boarding hook: a
user the IdP no longer knows cannot refresh.

Two kinds of failure: `IdpError` is a definitive answer (the IdP refused
the grant with an OAuth error, userinfo refused the user, an ID token does
not verify); `IdpUnavailable` (a subclass) is no answer (transport errors,
timeouts, 5xx, 429, a body that is not an OAuth answer) and must never cost
a user their session.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from common import config
from common.config import Config

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
DISCOVERY_TTL = 3600.0
JWKS_MIN_REFETCH = 30.0
TIMEOUT = 10


class IdpError(Exception):
    """The IdP refused, failed, or sent something that does not verify."""


class IdpUnavailable(IdpError):
    """The IdP gave no answer (unreachable, timed out, 5xx, 429): try again later; refuse nobody over it."""


# OAuth error codes that mean "not now" rather than "no" (RFC 6749 §4.1.2.1).
TEMPORARY_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error", "slow_down"})


@dataclass(frozen=True, slots=True)
class Result:
    claims: dict[str, Any]
    refresh_token: str | None


class Provider:
    """One IdP's discovery document and JWKS, fetched on first use and cached."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._jwks: KeySet | None = None
        self._jwks_at = 0.0

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None or time.monotonic() - self._metadata_at > DISCOVERY_TTL:
                url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
                try:
                    response = requests.get(url, timeout=TIMEOUT)
                    response.raise_for_status()
                    data = response.json()
                except (requests.RequestException, ValueError) as exc:
                    raise IdpUnavailable(f"OIDC discovery at {url} failed: {type(exc).__name__}") from None
                if data.get("issuer") != self.issuer:
                    raise IdpError(f"the IdP's discovery names issuer {data.get('issuer')!r}, not {self.issuer!r}")
                self._metadata, self._metadata_at = data, time.monotonic()
            return self._metadata

    def cached_metadata(self) -> dict[str, Any] | None:
        """The discovery document if this instance already has it (never fetches)."""
        return self._metadata

    def keys(self, refresh: bool = False) -> KeySet:
        with self._lock:
            stale = refresh and time.monotonic() - self._jwks_at > JWKS_MIN_REFETCH
            if self._jwks is not None and not stale:
                return self._jwks
        uri = self.metadata()["jwks_uri"]
        try:
            response = requests.get(uri, timeout=TIMEOUT)
            response.raise_for_status()
            keyset = KeySet.import_key_set(response.json())
        except (requests.RequestException, ValueError, JoseError) as exc:
            raise IdpUnavailable(f"cannot read the IdP's JWKS: {type(exc).__name__}") from None
        with self._lock:
            self._jwks, self._jwks_at = keyset, time.monotonic()
        return keyset


def _provider_of(cfg: Config) -> Provider:
    return Provider(cfg.oidc.issuer)


def provider(cfg: Config) -> Provider:
    """The IdP of this config version (built once per version, see `config.derive`)."""
    return config.derive(cfg, _provider_of)


def _client(cfg: Config, redirect_uri: str | None = None) -> OAuth2Session:
    return OAuth2Session(
        client_id=cfg.oidc.client_id,
        client_secret=cfg.oidc.client_secret,
        token_endpoint_auth_method="client_secret_basic" if cfg.oidc.client_secret else "none",
        scope=" ".join(cfg.oidc.scopes),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        default_timeout=TIMEOUT,
    )


def authorization_url(cfg: Config, redirect_uri: str, state: str, nonce: str, code_verifier: str) -> str:
    endpoint = provider(cfg).metadata()["authorization_endpoint"]
    with _client(cfg, redirect_uri) as client:
        url, _ = client.create_authorization_url(
            endpoint, state=state, nonce=nonce, code_verifier=code_verifier, **cfg.oidc.extra_auth_params
        )
    return str(url)


def exchange_code(cfg: Config, code: str, code_verifier: str, redirect_uri: str, nonce: str) -> Result:
    """Trade the authorization code for tokens; the ID token must carry our nonce."""
    endpoint = provider(cfg).metadata()["token_endpoint"]
    try:
        with _client(cfg, redirect_uri) as client:
            token = client.fetch_token(endpoint, code=code, code_verifier=code_verifier)
    except Exception as exc:  # authlib raises its OAuthError, requests its own
        raise IdpError(f"the code exchange at the IdP failed: {_describe(exc)}") from None
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise IdpError("the IdP returned no ID token; include 'openid' in oidc.scopes")
    claims = verify_id_token(cfg, id_token, nonce=nonce)
    claims = _with_userinfo(cfg, claims, token.get("access_token"))
    return Result(claims=claims, refresh_token=token.get("refresh_token"))


def refresh(cfg: Config, refresh_token: str) -> Result:
    """Refresh at the IdP and re-read the user's claims: fails once the user is gone or disabled."""
    endpoint = provider(cfg).metadata()["token_endpoint"]
    try:
        with _client(cfg) as client:
            token = client.refresh_token(endpoint, refresh_token=refresh_token)
    except Exception as exc:
        if _definitive(exc):
            raise IdpError(f"the IdP refused the refresh: {_describe(exc)}") from None
        raise IdpUnavailable(f"the IdP did not answer the refresh: {_describe(exc)}") from None
    claims: dict[str, Any] = {}
    id_token = token.get("id_token")
    if isinstance(id_token, str):
        claims = verify_id_token(cfg, id_token, nonce=None)
    access_token = token.get("access_token")
    if not claims or cfg.oidc.userinfo_fallback:
        claims = _with_userinfo(cfg, claims, access_token, force=not claims)
    return Result(claims=claims, refresh_token=token.get("refresh_token") or refresh_token)


def verify_id_token(cfg: Config, id_token: str, nonce: str | None) -> dict[str, Any]:
    """The verified claims of an ID token from our IdP for our client."""
    prov = provider(cfg)
    supported = prov.metadata().get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [a for a in supported if a in ASYMMETRIC] or ["RS256"]
    try:
        try:
            token = jwt.decode(id_token, prov.keys(), algorithms=algorithms)
        except JoseError as exc:
            if "key" not in str(exc).lower():
                raise
            token = jwt.decode(id_token, prov.keys(refresh=True), algorithms=algorithms)
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": cfg.oidc.issuer},
            "aud": {"essential": True, "value": cfg.oidc.client_id},
            "exp": {"essential": True},
            "sub": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        jwt.JWTClaimsRegistry(leeway=60, **options).validate(token.claims)
    except (JoseError, ValueError) as exc:
        raise IdpError(f"the ID token does not verify: {type(exc).__name__}: {exc}") from None
    return dict(token.claims)


def _with_userinfo(cfg: Config, claims: dict[str, Any], access_token: Any, force: bool = False) -> dict[str, Any]:
    if not (force or cfg.oidc.userinfo_fallback) or not isinstance(access_token, str):
        if force:
            raise IdpError("the IdP returned neither an ID token nor a usable access token")
        return claims
    endpoint = provider(cfg).metadata().get("userinfo_endpoint")
    if not endpoint:
        if force:
            raise IdpError("the IdP has no userinfo endpoint to re-read the user from")
        return claims
    try:
        response = requests.get(endpoint, headers={"Authorization": f"Bearer {access_token}"}, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise IdpUnavailable(f"userinfo failed: {type(exc).__name__}") from None
    if response.status_code in (401, 403):
        raise IdpError(f"userinfo refused the user ({response.status_code})")
    if response.status_code != 200:
        raise IdpUnavailable(f"userinfo answered {response.status_code}")
    try:
        info = response.json()
    except ValueError:
        raise IdpUnavailable("userinfo answered something that is not JSON") from None
    if not isinstance(info, dict):
        raise IdpUnavailable("userinfo answered something that is not a JSON object")
    if claims and info.get("sub") != claims.get("sub"):
        raise IdpError("userinfo answered for another subject")
    return {**info, **claims} if claims else dict(info)


def _definitive(exc: Exception) -> bool:
    """Did the token endpoint answer with an OAuth error (a refusal), rather than fail to answer?

    authlib raises its OAuthError (with `.error`) only for a JSON error body of a
    non-5xx reply; 5xx, non-JSON bodies and transport failures arrive as
    requests' exceptions or ValueError.
    """
    error = getattr(exc, "error", None)
    return isinstance(error, str) and error not in TEMPORARY_OAUTH_ERRORS


def _describe(exc: Exception) -> str:
    error = getattr(exc, "error", None)
    return str(error) if error else type(exc).__name__
