"""The client's address, believing X-Forwarded-For only from trusted proxies.

The walk goes from the right (the hop nearest to us) and stops at the first
address that is not a trusted proxy: that is the client. Left of it is
whatever the client sent, never believed.

On Cloud Run the peer a container sees is Google's front end at a link-local
address (`169.254.x.x`), and the client's address is in X-Forwarded-For; an
Application Load Balancer in front also appends its own address. With
`169.254.0.0/16` (and the load balancer's addresses) missing from
`listen.trusted_proxies`, every client would be that one front-end address,
one rate-limit bucket for everyone: that is logged once per instance.
docs/auth.md says what to set.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from flask import Request

from common.config import Config
from common.core import logs

_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
_warned = False


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


def _warn_untrusted_front_end(peer: str, forwarded: bool) -> None:
    global _warned
    if _warned or not forwarded:
        return
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return
    if any(ip in net for net in _LINK_LOCAL):
        _warned = True
        logs.warning(
            "client addresses: the peer is a link-local front end (Cloud Run) that listen.trusted_proxies"
            " does not trust, so every client shares one address for rate limits and audit;"
            " add 169.254.0.0/16 (and the load balancer's addresses) to listen.trusted_proxies",
            peer=peer,
        )


def client_ip(request: Request, cfg: Config) -> str:
    """Walk X-Forwarded-For from the right while each hop is a trusted proxy."""
    peer = request.remote_addr or "unknown"
    header = request.headers.get("X-Forwarded-For", "")
    if not _trusted(peer, cfg):
        _warn_untrusted_front_end(peer, bool(header.strip()))
        return peer
    forwarded = [h.strip() for h in header.split(",") if h.strip()]
    for hop in reversed(forwarded):
        if not _trusted(hop, cfg):
            return hop
        peer = hop
    return peer
