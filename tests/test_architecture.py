"""The structure of `common`, pinned: no import cycles, the layering contracts, each package's public surface.

The layering itself is import-linter's (`[tool.importlinter]` in pyproject.toml,
run by `make lint` and here); these tests add what it does not check: cycles
inside a package, the `__all__` of every package (as httpx's
`test_exported_members` pins its namespace), and that nothing outside a
package reaches past that surface or uses a `_private` name of another package.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Every package of common and the names it exports. A change here is a change
# of the package's public surface: make it on purpose.
SURFACE: dict[str, list[str]] = {
    "common.core": [
        "catalog",
        "checksum",
        "errors",
        "identity",
        "logs",
        "models",
        "periods",
        "urls",
        "usage",
    ],
    "common.config": [
        "Admin",
        "AdminKey",
        "AlertDestination",
        "Alerts",
        "CloudSql",
        "Collector",
        "Config",
        "ConfigError",
        "ConfigSource",
        "ForwardTo",
        "GoogleGroups",
        "Loaded",
        "Managed",
        "Model",
        "Policy",
        "Pricing",
        "PricingOverride",
        "RateLimit",
        "Retention",
        "Runtime",
        "Store",
        "Telemetry",
        "Tools",
        "Upstream",
        "active_location",
        "config_location",
        "current",
        "derive",
        "is_loopback_url",
        "is_secret_name",
        "load",
        "parse",
        "runtime_of",
        "secret_manager",
        "use",
    ],
    "common.db": [
        "migrations",
        "pages",
        "pool",
        "retention",
    ],
    "common.http": [
        "App",
        "NO_STORE",
        "access",
        "accesslog",
        "annotate",
        "bodies",
        "clientip",
        "errors",
        "health",
        "json_response",
        "read_json_body",
        "requestid",
        "responses",
        "router",
        "server",
    ],
    "common.audit": [
        "records",
    ],
    "common.auth": [
        "claims",
        "context",
        "crypto",
        "oidc",
        "ratelimit",
        "revocation",
        "rfc7009",
        "rfc8414",
        "rfc8628",
        "sessions",
        "store",
        "tokens",
        "verification",
    ],
    "common.policy": [
        "allowed_models",
        "apply_tools",
        "available_entries",
        "check_model",
        "denied_history_tool",
        "explain",
        "explanation",
        "for_inference",
        "has_tool_rules",
        "hints",
        "managed",
        "model_allowed",
        "models",
        "policy_name",
        "resolution",
        "resolve",
        "tool_allowed",
        "tools",
    ],
    "common.spend": [
        "batcher",
        "caps",
        "leases",
        "observed",
        "pricing",
        "queue",
        "reserve",
        "settle",
        "shutdown",
        "store",
        "usage_report",
    ],
    "common.alerts": [
        "delivery",
        "engine",
    ],
    "common.telemetry": [
        "emit",
        "relay",
    ],
    "common.proxy": [
        "http1",
        "metering",
        "pipeline",
        "relay",
        "sse",
        "steps",
        "upstreams",
    ],
    "common.proxy.upstreams": [
        "BREAKERS",
        "Breakers",
        "Client",
        "FORWARD_HEADERS",
        "HTTP",
        "POOL",
        "Prepared",
        "Route",
        "anthropic",
        "client_for",
        "error_from_upstream",
        "fails_over",
        "forward_headers",
        "response_headers",
        "route",
        "routes",
        "strip_suffix",
        "temporary",
        "transport_error",
        "vertex",
    ],
    "common.admin": [
        "analytics",
        "api",
        "audit_log",
        "auth",
        "explain",
        "fleet",
        "openapi",
        "retention",
        "sessions",
        "spend_limits",
    ],
    "common.console": [
        "charts",
        "pages",
        "web",
    ],
}

# Modules outside `common` that may import it (tests count as outside every package).
CONSUMERS = ("functions", "gateway", "gatewayctl", "bench", "tests")


def _packages() -> list[str]:
    found = []
    for init in sorted((ROOT / "common").rglob("__init__.py")):
        parts = init.relative_to(ROOT).parent.parts
        found.append(".".join(parts))
    return found


def test_every_package_is_pinned_and_documented() -> None:
    packages = [p for p in _packages() if p != "common"]
    assert sorted(packages) == sorted(SURFACE), "a package was added or removed: pin its surface in SURFACE"
    for name in packages:
        module = importlib.import_module(name)
        doc = (module.__doc__ or "").strip()
        assert len(doc) > 60, f"{name} needs a docstring saying what it owns"


@pytest.mark.parametrize("package", sorted(SURFACE))
def test_exported_members(package: str) -> None:
    module = importlib.import_module(package)
    exported = list(getattr(module, "__all__", []))
    assert sorted(exported) == sorted(SURFACE[package])
    for name in exported:
        if not hasattr(module, name):  # a submodule named in __all__ but not imported eagerly (cold start)
            importlib.import_module(f"{package}.{name}")


def test_no_import_cycles() -> None:
    """No cycle among the modules of common, counting lazy and TYPE_CHECKING imports."""
    graph = grimp.build_graph("common")
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    # A package's __init__ re-exporting its own submodules is not a dependency cycle.
    for module, targets in edges.items():
        edges[module] = {t for t in targets if not t.startswith(module + ".")}
    cycles = _strongly_connected(edges)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def _strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively; components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
    return found


def test_import_contracts() -> None:
    """import-linter's layering and forbidden contracts (pyproject.toml)."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def _python_files() -> Iterator[Path]:
    for top in ("common", *CONSUMERS):
        for path in sorted((ROOT / top).rglob("*.py")):
            if not any(part.startswith(".") for part in path.relative_to(ROOT).parts):
                yield path


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _owner(module: str) -> str:
    """The package a module of common belongs to for surface purposes: common.<pkg>."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "common" and len(parts) > 1 else parts[0]


def _reaches_past_surface(importer: str, target: str) -> str | None:
    """Why importing `target` from `importer` goes around a package's __all__, or None."""
    parts = target.split(".")
    for depth in range(2, len(parts)):
        package = ".".join(parts[:depth])
        if package not in SURFACE or importer == package or importer.startswith(package + "."):
            continue
        if parts[depth] not in SURFACE[package]:
            return f"{package} does not export {parts[depth]!r}"
    return None


def _violations() -> Iterator[str]:
    for path in _python_files():
        me = _module_of(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "common":
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    aliases[alias.asname or alias.name] = full
                    foreign = _owner(node.module) != _owner(me)
                    if foreign and alias.name.startswith("_"):
                        yield f"{path.relative_to(ROOT)}:{node.lineno}: imports private {full}"
                    why = _reaches_past_surface(me, full)
                    if why:
                        yield f"{path.relative_to(ROOT)}:{node.lineno}: {why}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "common":
                        aliases[alias.asname or alias.name] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and _owner(aliases[node.value.id]) != _owner(me)
            ):
                yield f"{path.relative_to(ROOT)}:{node.lineno}: uses private {node.value.id}.{node.attr}"


def test_nothing_reaches_past_a_package_surface() -> None:
    found = sorted(set(_violations()))
    assert not found, "\n".join(found)


def test_functions_import_only_common() -> None:
    allowed_third_party = {"functions_framework", "flask", "__future__"}
    for main in sorted((ROOT / "functions").glob("*/main.py")):
        tree = ast.parse(main.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top == "common" or top in allowed_third_party or top in sys.stdlib_module_names, (
                    f"{main.relative_to(ROOT)} imports {name}: a function's main.py maps HTTP to common and nothing else"
                )
