"""terraform/*.tf parsed with python-hcl2 into plain dicts the tests can query."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"


def _unquote(value: Any) -> Any:
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse_file(path: Path) -> dict[str, Any]:
    options = hcl2.SerializationOptions(with_comments=False, strip_string_quotes=True)
    return _unquote(hcl2.loads(path.read_text(encoding="utf-8"), serialization_options=options))  # type: ignore[no-any-return]


@dataclass
class Terraform:
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        return self.resources[kind][name]

    def of_kind(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.resources.get(kind, {})


def load() -> Terraform:
    tf = Terraform()
    for path in sorted(TERRAFORM.glob("*.tf")):
        tf.files[path.name] = path.read_text(encoding="utf-8")
        doc = parse_file(path)
        for block in doc.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    assert name not in tf.resources.get(kind, {}), f"duplicate {kind}.{name}"
                    tf.resources.setdefault(kind, {})[name] = body
        for block in doc.get("variable", []):
            tf.variables.update(block)
        for block in doc.get("output", []):
            tf.outputs.update(block)
        for block in doc.get("locals", []):
            tf.locals.update(block)
        tf.terraform.extend(doc.get("terraform", []))
    return tf


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` of a resource body."""
    found = body[name]
    assert isinstance(found, list) and len(found) == 1, (name, found)
    return found[0]  # type: ignore[no-any-return]


def blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return list(body.get(name, []))


def dynamic(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The `dynamic "name"` block of a body."""
    for entry in body.get("dynamic", []):
        if name in entry:
            return entry[name]  # type: ignore[no-any-return]
    raise KeyError(f"no dynamic {name!r} block")
