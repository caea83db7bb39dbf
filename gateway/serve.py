"""`python -m gateway serve`: all three functions on one origin, for containers (GKE).

The same one-origin app as `make run` (`gateway.local.create_app`, routed by
`common/paths.py`) under functions-framework's gunicorn application, with no
stand-ins and no embedded database: gateway.yaml comes from $GATEWAY_CONFIG
(a file or a Secret Manager secret name) and the database from its `store`
section. Threads come from $THREADS (one per concurrent stream); the request
line, header and read-time limits from `common.http.server`.
"""

from __future__ import annotations

import gc
import os


def main(host: str = "0.0.0.0", port: int = 8080) -> int:  # noqa: S104 (a container listens on all interfaces)
    from common import config
    from common.http import server
    from gateway import local

    os.environ.setdefault("THREADS", "40")
    try:
        config.current()  # fail at start, naming the key, rather than on the first request
    except config.ConfigError as exc:
        print(str(exc), flush=True)
        return 2
    app = local.create_app()
    gc.freeze()  # before the fork: the workers' collections leave the imported objects' pages shared
    server.BoundedGunicornApplication(app, host, port, False).run()
    return 0
