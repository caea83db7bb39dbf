"""`python -m gateway fingerprint`: the SHA-256 Claude Code pins, from a PEM file or a live TLS server.

The pinned form (read from the Claude Code 2.1.333 binary: Node's `fingerprint256` with the
colons removed, lowercased; the trust screen shows its first 16 digits) is checked against an
independent computation (cryptography's fingerprint of the leaf) and against what a real TLS
server on loopback presents.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import fingerprint

ROOT = Path(__file__).resolve().parents[2]


def _cert(directory: Path, name: str) -> tuple[Path, Path, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path, cert


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "fingerprint", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_fingerprint_of_a_pem_chain_is_the_leaf_in_the_pinned_form(tmp_path: Path) -> None:
    leaf_path, _, leaf = _cert(tmp_path, "claude-gw.corp.example.com")
    _, _, intermediate = _cert(tmp_path, "intermediate.example.com")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(leaf_path.read_bytes() + intermediate.public_bytes(serialization.Encoding.PEM))
    expected = leaf.fingerprint(hashes.SHA256()).hex()
    assert expected != intermediate.fingerprint(hashes.SHA256()).hex()
    result = _cli("--cert", str(chain))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == expected and len(expected) == 64 and expected == expected.lower()
    assert f"Certificate fingerprint (SHA-256): {expected[:16]}…" in result.stdout
    assert ":".join(expected[i : i + 2] for i in range(0, 64, 2)).upper() in result.stdout


def test_fingerprint_of_what_a_live_server_presents(tmp_path: Path) -> None:
    cert_path, key_path, cert = _cert(tmp_path, "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = _cli("--url", f"https://localhost:{port}")
    finally:
        thread.join(timeout=10)
        listener.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == cert.fingerprint(hashes.SHA256()).hex()


def test_fingerprint_errors(tmp_path: Path) -> None:
    empty = tmp_path / "not.pem"
    empty.write_text("hello\n", encoding="ascii")
    result = _cli("--cert", str(empty))
    assert result.returncode == 2 and "no PEM certificate" in result.stderr
    result = _cli("--url", "http://localhost:1")
    assert result.returncode == 2 and "https://" in result.stderr
    result = _cli("--url", "https://127.0.0.1:1")
    assert result.returncode == 2 and "could not read the certificate of 127.0.0.1:1" in result.stderr
    assert fingerprint.of_der(b"x") == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
