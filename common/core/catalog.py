"""The model catalogue: every model Claude Code knows, read once at import from `catalog.json`.

One data file (written by `python -m gateway catalog refresh`, see
docs/models.md) is what `/v1/models`, policy families, routing (the Vertex
id), the spend estimate (the output ceiling) and pricing read. gateway.yaml
`models:` and `pricing.overrides` still win over it. Prices are exact:
decimal strings in the file, integer micro-dollars here (per million tokens;
web search per request). Ids are looked up through `models` (the one
normaliser); this module only holds the data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).with_name("catalog.json")
_MICROS = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Rates:
    """List price of each kind: micro-dollars per million tokens; `web_search` per request."""

    input: int
    output: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int
    web_search: int


@dataclass(frozen=True, slots=True)
class Tier:
    """A pricing tier; above `above_prompt_tokens` prompt tokens the whole request is at `long_prompt`."""

    name: str
    rates: Rates
    long_prompt: Rates | None = None
    above_prompt_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    family: str
    display_name: str
    first_party_id: str  # what Anthropic's API calls it (may be dated)
    vertex_id: str | None  # None: Vertex AI does not serve this model
    max_output_tokens: int  # the most output tokens one request may ask for
    tier: Tier
    spellings: tuple[str, ...]  # id and provider ids as the file lists them


def _micros(text: str, where: str) -> int:
    value = Decimal(text) * _MICROS
    if value != value.to_integral_value():
        raise ValueError(f"{DATA_FILE.name}: {where}: {text} is finer than a micro-dollar per MTok")
    return int(value)


def _rates(raw: dict[str, Any], where: str, web_search: int | None = None) -> Rates:
    return Rates(
        input=_micros(raw["input"], f"{where}.input"),
        output=_micros(raw["output"], f"{where}.output"),
        cache_write_5m=_micros(raw["cache_write_5m"], f"{where}.cache_write_5m"),
        cache_write_1h=_micros(raw["cache_write_1h"], f"{where}.cache_write_1h"),
        cache_read=_micros(raw["cache_read"], f"{where}.cache_read"),
        # per request, kept per MTok of requests so one integer division prices a request
        web_search=web_search if web_search is not None else _micros(raw["web_search"], f"{where}.web_search"),
    )


def _load(path: Path) -> tuple[str, tuple[str, ...], dict[str, str], dict[str, Tier], tuple[Model, ...]]:
    raw = json.loads(path.read_bytes())
    tiers: dict[str, Tier] = {}
    for name, spec in raw["pricing_tiers"].items():
        rates = _rates(spec, f"pricing_tiers.{name}")
        long_spec = spec.get("long_prompt")
        long_rates = (
            _rates(long_spec, f"pricing_tiers.{name}.long_prompt", web_search=rates.web_search) if long_spec else None
        )
        above = int(long_spec["above_prompt_tokens"]) if long_spec else None
        tiers[name] = Tier(name, rates, long_rates, above)
    loaded = tuple(
        Model(
            id=m["id"],
            family=m["family"],
            display_name=m["display_name"],
            first_party_id=m["ids"].get("first_party", m["id"]),
            vertex_id=m["ids"].get("vertex"),
            max_output_tokens=int(m["max_output_tokens"]),
            tier=tiers[m["pricing"]],
            spellings=tuple(dict.fromkeys([m["id"], *m["ids"].values()])),
        )
        for m in raw["models"]
    )
    return raw["claude_code_version"], tuple(raw["families"]), dict(raw["aliases"]), tiers, loaded


CLAUDE_CODE_VERSION, FAMILIES, ALIASES, TIERS, MODELS = _load(DATA_FILE)
BY_ID: dict[str, Model] = {m.id: m for m in MODELS}
