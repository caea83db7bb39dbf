"""`access_control`: which client addresses may use the gateway at all."""

from __future__ import annotations

from flask import Request

from common.config import Config
from common.core import logs
from common.core.errors import GatewayError
from common.http.clientip import client_ip, in_any


def check(request: Request, cfg: Config) -> None:
    """Refuse (403) a client address outside allow_cidrs or inside deny_cidrs."""
    rules = cfg.access_control
    if not rules.allow_cidrs and not rules.deny_cidrs:
        return
    address = client_ip(request, cfg)
    if in_any(address, rules.deny_cidrs) or (rules.allow_cidrs and not in_any(address, rules.allow_cidrs)):
        logs.warning("client address refused by access_control", client_ip=address)
        raise GatewayError(403, "Your network address may not use this gateway.", "permission_error")
