"""`python -m gateway fingerprint`: the SHA-256 fingerprint Claude Code pins for the gateway.

Claude Code (2.1.333) shows "Certificate fingerprint (SHA-256): <first 16 hex digits>…" on its
"Trust gateway <host>?" screen, and once the developer trusts it, keeps the SHA-256 of the TLS
leaf certificate's DER encoding, as lowercase hex without colons (Node's `fingerprint256`
with ':' removed, lowercased), in `~/.claude/.credentials.json` under `gatewayTrust`. Every
later call compares the presented leaf with it and fails on any other ("gateway TLS
certificate does not match the pinned fingerprint") until the developer runs /login again.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


class FingerprintError(ValueError):
    pass


def of_der(der: bytes) -> str:
    """The pinned form: SHA-256 of the DER leaf certificate, lowercase hex, no colons."""
    return hashlib.sha256(der).hexdigest()


def leaf_from_pem(text: str) -> bytes:
    """The first certificate of a PEM chain (the leaf: chains are written leaf first)."""
    start = text.find(PEM_BEGIN)
    if start < 0:
        raise FingerprintError("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file")
    end = text.find("-----END CERTIFICATE-----", start)
    if end < 0:
        raise FingerprintError("the PEM certificate is cut off (no -----END CERTIFICATE-----)")
    return ssl.PEM_cert_to_DER_cert(text[start : end + len("-----END CERTIFICATE-----")] + "\n")


def leaf_from_server(url: str, timeout: float = 10.0) -> bytes:
    """The leaf certificate the server presents for the URL's host name (SNI), unverified: this
    reads what clients will be shown, whether or not this machine trusts it."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme != "https" or not parts.hostname:
        raise FingerprintError(f"--url must be an https:// URL such as https://claude-gw.corp.example.com, got {url!r}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # reading the certificate, not trusting it
    try:
        with (
            socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=parts.hostname) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise FingerprintError(f"could not read the certificate of {parts.netloc}: {exc}") from None
    if not der:
        raise FingerprintError(f"{parts.netloc} presented no certificate")
    return der


def report(der: bytes) -> str:
    pinned = of_der(der)
    colons = ":".join(pinned[i : i + 2] for i in range(0, len(pinned), 2)).upper()
    return (
        f"{pinned}\n"
        f"  Claude Code's trust screen shows: Certificate fingerprint (SHA-256): {pinned[:16]}…\n"
        f"  openssl x509 -noout -fingerprint -sha256 shows: {colons}\n"
    )


def fingerprint_file(path: str) -> bytes:
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise FingerprintError(f"cannot read {path}: {exc.strerror}") from None
    return leaf_from_pem(text)
