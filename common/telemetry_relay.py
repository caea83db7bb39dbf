"""Placeholder until this capability lands; answers 501 not_supported."""

from flask import Request, Response

from common.errors import GatewayError


def _not_yet(request: Request) -> Response:
    raise GatewayError(501, f"{request.path} is not available on this gateway yet.", "not_supported")


relay = _not_yet
