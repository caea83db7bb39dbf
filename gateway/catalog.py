"""`python -m gateway catalog refresh --from PATH`: rewrite common/core/catalog.json.

The source is the model catalogue a Claude Code release ships (JSON,
`schema_version` 1: `pricing_tiers`, `models`, `aliases`). We keep only the
fields the gateway reads, prices as decimal strings (never floats), and check
what the gateway relies on before writing: every model names a known tier,
every tier has every price, and no spelling of one model (dated, `@`-dated,
Vertex id) names another. See docs/models.md.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "common" / "core" / "catalog.json"
SCHEMA_VERSION = 1
PRICE_KEYS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read", "web_search")
LONG_PROMPT_KEYS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
# The id spellings we index: what Claude Code sends directly or in gateway mode, and Vertex's.
PROVIDERS = ("first_party", "gateway", "vertex")
_VERSION_IN_NAME = re.compile(r"(\d+\.\d+\.\d+)")


class CatalogError(ValueError):
    pass


def _decimal(value: Any, where: str) -> str:
    """A JSON number as the decimal string it was written as (0.3 -> "0.3", 6 -> "6")."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CatalogError(f"{where}: expected a number, got {value!r}")
    text = format(Decimal(repr(value)).normalize(), "f")
    if Decimal(text) < 0:
        raise CatalogError(f"{where}: a price cannot be negative")
    return text


def _tier(name: str, source: Mapping[str, Any]) -> dict[str, Any]:
    tier: dict[str, Any] = {}
    for key in PRICE_KEYS:
        if key not in source:
            raise CatalogError(f"pricing_tiers.{name}.{key}: missing")
        tier[key] = _decimal(source[key], f"pricing_tiers.{name}.{key}")
    long_prompt = source.get("long_prompt")
    if long_prompt is not None:
        above = long_prompt.get("above_prompt_tokens")
        if not isinstance(above, int) or above <= 0:
            raise CatalogError(f"pricing_tiers.{name}.long_prompt.above_prompt_tokens: expected a positive integer")
        rates: dict[str, Any] = {"above_prompt_tokens": above}
        for key in LONG_PROMPT_KEYS:
            if key not in long_prompt:
                raise CatalogError(f"pricing_tiers.{name}.long_prompt.{key}: missing")
            rates[key] = _decimal(long_prompt[key], f"pricing_tiers.{name}.long_prompt.{key}")
        tier["long_prompt"] = rates
    return tier


def _alias_target(alias: str, source: Mapping[str, Any]) -> str:
    """What the CLI resolves the alias to in gateway mode (its per-provider entry, else the default)."""
    per_provider = source.get("per_provider") or {}
    target = per_provider.get("gateway") or source.get("default")
    if not isinstance(target, str):
        raise CatalogError(f"aliases.{alias}: no gateway or default model")
    return target


def transform(source: Mapping[str, Any], version: str) -> dict[str, Any]:
    """The project's catalogue data from Claude Code's, checked."""
    if source.get("schema_version") != SCHEMA_VERSION:
        raise CatalogError(
            f"schema_version: expected {SCHEMA_VERSION}, got {source.get('schema_version')!r}; "
            "the refresh script must learn the new schema first"
        )
    tiers = {name: _tier(name, tier) for name, tier in sorted(source["pricing_tiers"].items())}
    out_models: list[dict[str, Any]] = []
    families: list[str] = []
    for i, model in enumerate(source["models"]):
        where = f"models[{i}]"
        ids = model.get("provider_ids") or {}
        if model.get("pricing") not in tiers:
            raise CatalogError(f"{where}.pricing: {model.get('pricing')!r} is not a pricing tier")
        if not isinstance(model.get("family"), str) or not model["family"]:
            raise CatalogError(f"{where}.family: missing")
        if model["family"] not in families:
            families.append(model["family"])
        upper = (model.get("max_output_tokens") or {}).get("upper")
        if not isinstance(upper, int) or upper <= 0:
            raise CatalogError(f"{where}.max_output_tokens.upper: expected a positive integer")
        entry: dict[str, Any] = {
            "id": model["id"],
            "family": model["family"],
            "display_name": model["display_name"],
            "ids": {p: ids[p] for p in PROVIDERS if isinstance(ids.get(p), str)},
            "max_output_tokens": upper,
            "pricing": model["pricing"],
        }
        out_models.append(entry)
    known = {m["id"] for m in out_models}
    aliases = {alias: _alias_target(alias, spec) for alias, spec in sorted((source.get("aliases") or {}).items())}
    for alias, target in aliases.items():
        if target not in known:
            raise CatalogError(f"aliases.{alias}: resolves to {target!r}, which is not a model of the catalogue")
    return {
        "//": (
            f"Generated from the model catalogue of Claude Code {version} by "
            "`python -m gateway catalog refresh --from PATH`; do not edit by hand (docs/models.md). "
            "Prices are USD per million tokens (web_search: per request), as decimal strings."
        ),
        "claude_code_version": version,
        "families": families,
        "aliases": aliases,
        "pricing_tiers": tiers,
        "models": out_models,
    }


def render(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def spelling_clashes(data: Mapping[str, Any]) -> list[str]:
    """Spellings that would name two models (each must name only its own)."""
    from common.core import models  # the one normaliser: what the gateway will compute

    seen: dict[str, str] = {}
    clashes = []
    for model in data["models"]:
        for spelling in {model["id"], *model["ids"].values()}:
            key = models.spelling(spelling)
            if seen.setdefault(key, model["id"]) != model["id"]:
                clashes.append(f"{spelling!r} names both {seen[key]} and {model['id']}")
    return clashes


def version_of(path: Path) -> str | None:
    found = _VERSION_IN_NAME.search(path.name)
    return found.group(1) if found else None


def refresh(source_path: Path, version: str | None = None, target: Path = TARGET, check: bool = False) -> int:
    try:
        source = json.loads(source_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {source_path}: {exc}", file=sys.stderr)
        return 1
    version = version or version_of(source_path)
    if version is None:
        print("cannot tell the Claude Code version from the file name; pass --version X.Y.Z", file=sys.stderr)
        return 1
    try:
        data = transform(source, version)
    except (CatalogError, KeyError, TypeError, AttributeError) as exc:
        print(f"{source_path}: {exc}", file=sys.stderr)
        return 1
    clashes = spelling_clashes(data)
    if clashes:
        print(f"{source_path}: ambiguous model ids: " + "; ".join(clashes), file=sys.stderr)
        return 1
    text = render(data)
    current = target.read_text(encoding="utf-8") if target.exists() else ""
    if check:
        if current != text:
            print(f"{target} is not what {source_path} gives; run without --check", file=sys.stderr)
            return 1
        print(f"{target}: current (Claude Code {version}, {len(data['models'])} models)")
        return 0
    target.write_text(text, encoding="utf-8")
    print(
        f"{target}: {'unchanged' if current == text else 'written'} (Claude Code {version}, {len(data['models'])} models)"
    )
    return 0
