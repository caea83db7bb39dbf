"""Loopback helpers the benchmark needs besides the model stand-in, in one process.

- A telemetry COLLECTOR STAND-IN: answers 200 to every OTLP/HTTP POST as fast
  as it can and counts them (`GET /_collector/stats`), so the gateway's
  telemetry export runs for real without the collector being the bottleneck.
- An OIDC DISCOVERY STAND-IN for the peer gateway: serves only
  `/.well-known/openid-configuration` (the benchmark mints session tokens
  itself, so no sign-in ever reaches the endpoints it names).

`python -m bench.sidecars --collector-port N --oidc-port M` prints "ready" once
both listen.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web


def collector_app() -> web.Application:
    stats = {"posts": 0, "bytes": 0}

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        stats["posts"] += 1
        stats["bytes"] += len(body)
        # an empty ExportServiceResponse is valid protobuf and valid JSON consumers accept {}
        if request.content_type == "application/json":
            return web.json_response({})
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def read_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application()
    app.router.add_get("/_collector/stats", read_stats)
    app.router.add_post("/{tail:.*}", accept)
    return app


def discovery_app(issuer: str) -> web.Application:
    document = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }

    async def discovery(request: web.Request) -> web.Response:
        return web.json_response(document)

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    return app


async def serve(collector_port: int, oidc_port: int) -> None:
    runners = []
    for app, port in ((collector_app(), collector_port), (discovery_app(f"http://127.0.0.1:{oidc_port}"), oidc_port)):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sidecars")
    parser.add_argument("--collector-port", type=int, required=True)
    parser.add_argument("--oidc-port", type=int, required=True)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.collector_port, args.oidc_port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
