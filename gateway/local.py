"""All three functions behind one origin, in one process.

functions-framework loads a function's source as the module `main`, so three
functions in one process would overwrite each other. Here each
`functions/<name>/main.py` is loaded under its own module name and one Flask
app sends each request to the function that `common.paths` names for its
path: the same table the cloud load balancer's URL map is built from.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import flask

from common import paths

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"

Target = Callable[[flask.Request], flask.Response]


def load_function(name: str) -> ModuleType:
    """`functions/<name>/main.py` as the module `gateway_fn_<name>`."""
    module_name = f"gateway_fn_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location(module_name, FUNCTIONS_DIR / name / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def targets() -> dict[str, Target]:
    """Each function's entry point, by function name (the entry is named like it)."""
    return {name: getattr(load_function(name), name) for name in paths.FUNCTIONS}


def create_app() -> flask.Flask:
    """The one-origin WSGI app: every path and method, routed by the path table."""
    entry = targets()
    app = flask.Flask("claude-gateway-local")

    def dispatch(path: str = "") -> flask.Response:
        request = flask.request
        return entry[paths.function_for(request.path)](request)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    app.add_url_rule("/", "root", dispatch, methods=methods)
    app.add_url_rule("/<path:path>", "any", dispatch, methods=methods)
    return app
