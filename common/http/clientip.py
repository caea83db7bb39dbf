"""The client's address, believing X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from flask import Request

from common.config import Config


@lru_cache(maxsize=64)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def in_any(address: str, cidrs: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _networks(tuple(cidrs)))


def _trusted(address: str, cfg: Config) -> bool:
    return in_any(address, cfg.listen.trusted_proxies)


def client_ip(request: Request, cfg: Config) -> str:
    """Walk X-Forwarded-For from the right while each hop is a trusted proxy."""
    peer = request.remote_addr or "unknown"
    if not _trusted(peer, cfg):
        return peer
    forwarded = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(forwarded):
        if not _trusted(hop, cfg):
            return hop
        peer = hop
    return peer
