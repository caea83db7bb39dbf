"""RFC 8414 authorization server metadata at /.well-known/oauth-authorization-server.

Claude Code uses an endpoint only when it is an absolute URL on the origin it
was given, so every URL is built on `listen.public_url`. There is no
authorization endpoint: the device flow needs none.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE
from flask import Request, Response

from common import config
from common.config import Config
from common.http import json_response


def metadata(cfg: Config) -> dict[str, Any]:
    base = cfg.public_url
    data = AuthorizationServerMetadata(
        {
            "issuer": base,
            "device_authorization_endpoint": f"{base}/oauth/device_authorization",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "grant_types_supported": [DEVICE_CODE_GRANT_TYPE, "refresh_token"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "service_documentation": f"{base}/device",
        }
    )
    data.validate_issuer()
    data.validate_token_endpoint()
    data.validate_revocation_endpoint()
    return dict(data)


def discovery(request: Request) -> Response:
    return json_response(metadata(config.current()), headers={"Cache-Control": "public, max-age=300"})
