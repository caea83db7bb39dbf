"""Token material: random values, their hashes, and sealing of what must be stored readable.

Device codes and refresh tokens are stored only as SHA-256 hashes: they are
256-bit random values, so a plain hash cannot be brute-forced and a lookup is
one indexed equality. The IdP refresh token must be used again, so it is sealed
with AES-256-GCM under a key derived (HKDF) from each `session.jwt_secret`: the
first key seals, every key opens, so the secrets rotate together.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common.config import Config

# RFC 8628 §6.1: a user code alphabet without vowels (no words) and without
# look-alike characters; 20 letters, 8 of them: 20^8 ≈ 2^34.6 codes.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8


def random_token(nbytes: int = 32) -> str:
    """An opaque URL-safe token with `nbytes` of entropy (32 bytes = 256 bits)."""
    return secrets.token_urlsafe(nbytes)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def normalize_user_code(text: str) -> str | None:
    """`bcdf-ghjk`, `BCDFGHJK`, ` bcdf ghjk ` -> `BCDFGHJK`; None when it cannot be a user code."""
    cleaned = "".join(ch for ch in text.upper() if ch not in "- \t")
    if len(cleaned) != USER_CODE_LENGTH or any(ch not in USER_CODE_ALPHABET for ch in cleaned):
        return None
    return cleaned


def display_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def _key(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"claude-gateway", info=purpose).derive(secret.encode())


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def seal(cfg: Config, plaintext: str, purpose: bytes = b"idp-refresh-token") -> str:
    """`kid.nonce.ciphertext` (base64url), readable only with a configured session key."""
    key = _key(cfg.session.secrets[0], purpose)
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), purpose)
    return ".".join([_key_id(key), _b64(nonce), _b64(sealed)])


def unseal(cfg: Config, text: str, purpose: bytes = b"idp-refresh-token") -> str | None:
    """The plaintext, or None when no configured key opens it (rotated away, or tampered)."""
    try:
        kid, nonce, sealed = text.split(".")
        for secret in cfg.session.secrets:
            key = _key(secret, purpose)
            if hmac.compare_digest(_key_id(key), kid):
                return AESGCM(key).decrypt(_unb64(nonce), _unb64(sealed), purpose).decode()
    except Exception:
        return None
    return None


def sign(cfg: Config, value: str, purpose: bytes) -> str:
    """An HMAC of `value` under a key derived for `purpose` (CSRF tokens)."""
    key = _key(cfg.session.secrets[0], purpose)
    return _b64(hmac.new(key, value.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
