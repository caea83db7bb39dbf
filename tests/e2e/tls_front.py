"""TLS in front of the local gateway, the way the load balancer terminates it in production.

- `TestCA` makes a CA and leaf certificates at test time (`cryptography`); nothing is committed,
  the keys live in the test's temporary directory.
- `TlsFront` accepts TLS on 127.0.0.1, presents the current leaf and relays the plain bytes to the
  gateway's http port (like the load balancer, it does not change a byte of HTTP). `rotate()`
  swaps the leaf for new connections, as a certificate rotation at the load balancer does.
- `HostsEntry` maps a real-looking host name to 127.0.0.1 in /etc/hosts for a run (a private
  address, so `/login` accepts it), restored afterwards, also after a crashed run.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOSTS = Path("/etc/hosts")


@dataclass(frozen=True)
class Leaf:
    cert: Path  # PEM: the leaf, then the CA (the chain the front presents)
    key: Path
    der: bytes  # the leaf alone, DER: what Claude Code pins

    @property
    def pinned(self) -> str:
        """SHA-256 of the DER leaf, lowercase hex: computed here, independently of gateway.fingerprint."""
        return hashlib.sha256(self.der).hexdigest()


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class TestCA:
    """A private CA (ECDSA P-256) in `directory`; `ca.pem` is what the client is told to trust."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "Claude gateway e2e test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )  # keyCertSign, cRLSign
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.pem = self._cert.public_bytes(serialization.Encoding.PEM)
        self.path = directory / "ca.pem"
        self.path.write_bytes(self.pem)
        self._issued = 0

    def issue(self, host: str) -> Leaf:
        """A fresh key and a leaf for `host` signed by this CA: what a renewal or rotation yields."""
        self._issued += 1
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        stem = self.directory / f"leaf-{self._issued}"
        cert_path, key_path = stem.with_suffix(".pem"), stem.with_suffix(".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.pem)
        key_path.write_bytes(_pem_key(key))
        key_path.chmod(0o600)
        return Leaf(cert_path, key_path, cert.public_bytes(serialization.Encoding.DER))


class Handshake(NamedTuple):
    pinned: str  # the fingerprint of the leaf presented
    completed: bool  # whether the client went on (False: it refused the certificate, or went away)
    peer: str  # the client's address


class TlsFront:
    """TLS on address:port, relayed byte for byte to the gateway at 127.0.0.1:backend_port."""

    def __init__(self, backend_port: int, leaf: Leaf, address: str = "127.0.0.1") -> None:
        self.backend_port = backend_port
        self.leaf = leaf
        self._context = self._load(leaf)
        self.listener = socket.create_server((address, 0))
        self.port: int = self.listener.getsockname()[1]
        self.handshakes: list[Handshake] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="tls-front", daemon=True)
        self._acceptor.start()

    @staticmethod
    def _load(leaf: Leaf) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # as the load balancer's SSL policy
        context.load_cert_chain(leaf.cert, leaf.key)
        return context

    def rotate(self, leaf: Leaf) -> None:
        """Present `leaf` from now on, and drop open connections (the old certificate goes away)."""
        context = self._load(leaf)
        with self._lock:
            self.leaf, self._context = leaf, context
            stale, self._open = self._open, set()
        for conn in stale:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._connection, args=(conn, peer[0]), daemon=True).start()

    def _connection(self, raw: socket.socket, peer: str) -> None:
        with self._lock:
            context, leaf = self._context, self.leaf
        try:
            raw.settimeout(30)  # bounds the handshake only
            tls = context.wrap_socket(raw, server_side=True)
            tls.settimeout(None)
        except (OSError, ssl.SSLError):
            self.handshakes.append(Handshake(leaf.pinned, False, peer))
            raw.close()  # the client refused the certificate, or went away
            return
        self.handshakes.append(Handshake(leaf.pinned, True, peer))
        try:
            backend = socket.create_connection(("127.0.0.1", self.backend_port), timeout=10)
            backend.settimeout(None)
        except OSError:
            tls.close()
            return
        with self._lock:
            if self._closed:
                tls.close()
                backend.close()
                return
            self._open.update((tls, backend))
        threading.Thread(target=self._pipe, args=(backend, tls), daemon=True).start()
        self._pipe(tls, backend)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        """One direction of the relay; at the end of it, half-close the other side like a proxy."""
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except (OSError, ssl.SSLError):
            pass
        # Either side ending ends the pair: a TLS socket cannot half-close cleanly anyway.
        for conn in (source, sink):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._open.discard(source)
            self._open.discard(sink)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            stale, self._open = self._open, set()
        # close() alone leaves a listener whose accept() is blocked in another thread listening
        # (seen here: it took the next connection, and a later front was handed the same port, so
        # clients met the old CA's leaf). shutdown() wakes the accept() first.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._acceptor.join(timeout=5)
        for conn in stale:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


class HostsEntry:
    """`127.0.0.1 HOST` in /etc/hosts for a run; the file is restored afterwards.

    /etc/hosts is rewritten in place (it may be a bind mount that a rename would not reach); a
    backup beside it survives a crashed run and is put back by the next one.
    """

    def __init__(self, host: str, address: str = "127.0.0.1", path: Path = HOSTS) -> None:
        self.line = f"{address} {host}  # claude-code-e2e\n"
        self.path = path
        self.backup = path.with_name(f"{path.name}.claude-e2e-{host}")

    def _recover(self) -> None:
        if self.backup.exists():
            self.path.write_bytes(self.backup.read_bytes())
            self.backup.unlink()

    def __enter__(self) -> HostsEntry:
        self._recover()
        original = self.path.read_bytes()
        self.backup.write_bytes(original)
        separator = b"" if not original or original.endswith(b"\n") else b"\n"
        self.path.write_bytes(original + separator + self.line.encode())
        return self

    def __exit__(self, *exc: object) -> None:
        self._recover()


def resolves_only_to(host: str, address: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError):
        return {info[4][0] for info in socket.getaddrinfo(host, 443)} == {address}
    return False


def hosts_writable() -> bool:
    return os.access(HOSTS, os.W_OK) and os.access(HOSTS.parent, os.W_OK)
