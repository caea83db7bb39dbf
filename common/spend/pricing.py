"""List prices per model, and the cost of one request in integer micro-dollars.

Prices are Anthropic's public list prices in USD per million tokens (MTok),
as published on https://docs.anthropic.com/en/docs/about-claude/pricing
(read 2025-11; Vertex AI lists the same figures for global endpoints). The
cache kinds derive from the input price as Anthropic defines them: a 5-minute
cache write costs 1.25x input, a 1-hour write 2x input, a cache read 0.1x.

Spend caps are a runaway-usage guardrail at list price, not a bill: regional
Vertex endpoints (+10 %), batch and priority tiers are not modelled; an
operator who wants them uses `pricing.multiplier` or `pricing.overrides`.

Money never touches a float here: prices are integer micro-dollars per MTok,
config floats are converted once through `Decimal(str(x))`, and a request's
cost is one integer division rounded up (so a cost is never understated).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from common.config import derive
from common.core import logs, models

if TYPE_CHECKING:
    from common.config import Config, Pricing, PricingOverride
    from common.core.usage import Usage

MICROS_PER_DOLLAR = 1_000_000
TOKENS_PER_MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """Micro-dollars per million tokens of each kind."""

    input: int
    output: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int


def _usd(value: Decimal | float | str) -> int:
    """USD (per MTok) -> integer micro-dollars (per MTok), exactly for any cent-level price."""
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    return int((amount * MICROS_PER_DOLLAR).to_integral_value(ROUND_HALF_UP))


def from_list_price(input_usd: str, output_usd: str) -> Price:
    inp = Decimal(input_usd)
    return Price(
        input=_usd(inp),
        output=_usd(Decimal(output_usd)),
        cache_write_5m=_usd(inp * Decimal("1.25")),
        cache_write_1h=_usd(inp * 2),
        cache_read=_usd(inp * Decimal("0.1")),
    )


# canonical key -> (input, output) USD per MTok. Keys are `canonical_key()` of
# the Anthropic id; older `claude-3-x-family` spellings are aliased below.
LIST_PRICES: dict[str, tuple[str, str]] = {
    "claude-opus-4-6": ("5", "25"),  # assumed equal to Opus 4.5 until listed otherwise
    "claude-opus-4-5": ("5", "25"),
    "claude-opus-4-1": ("15", "75"),
    "claude-opus-4": ("15", "75"),
    "claude-opus-3": ("15", "75"),
    "claude-sonnet-4-6": ("3", "15"),  # assumed equal to Sonnet 4.5 until listed otherwise
    "claude-sonnet-4-5": ("3", "15"),
    "claude-sonnet-4": ("3", "15"),
    "claude-sonnet-3-7": ("3", "15"),
    "claude-sonnet-3-5": ("3", "15"),
    "claude-haiku-4-5": ("1", "5"),
    "claude-haiku-3-5": ("0.80", "4"),
    "claude-haiku-3": ("0.25", "1.25"),
}

# An unknown model is priced like the most expensive row (Opus 4.1: $15 / $75),
# so a guardrail errs towards stopping spend rather than missing it.
DEFAULT_KEY = "claude-opus-4-1"

TABLE: dict[str, Price] = {key: from_list_price(*prices) for key, prices in LIST_PRICES.items()}
DEFAULT_PRICE = TABLE[DEFAULT_KEY]

_OLD_STYLE = re.compile(r"^claude-(\d+(?:-\d+)?)-(opus|sonnet|haiku)$")
_NOISE = re.compile(r"(-v\d+(?::\d+)?|-latest)$")


def canonical_key(model_id: str) -> str:
    """One key for every spelling: `claude-sonnet-4-5`, `claude-sonnet-4-5-20250929`,
    `claude-sonnet-4-5@20250929`, `claude-3-5-sonnet-v2@20241022`, `claude-opus-4-6[1m]`."""
    text = model_id.strip().lower()
    text = text.rsplit("/", 1)[-1]  # publishers/anthropic/models/<id>
    text = models.canonical(text)
    text = _NOISE.sub("", text)
    text = models.canonical(text)  # a date may precede -v2
    old = _OLD_STYLE.match(text)
    if old:
        text = f"claude-{old.group(2)}-{old.group(1)}"
    return text


@dataclass(frozen=True, slots=True)
class PriceBook:
    """The table with config overrides and multiplier applied; built once per config."""

    table: dict[tuple[str | None, str], Price]
    multiplier_num: int
    multiplier_den: int

    def price(self, model_id: str, upstream: str | None = None) -> tuple[Price, bool]:
        """(price, known) for a model id; unknown ids get DEFAULT_PRICE."""
        key = canonical_key(model_id)
        for candidate in ((upstream, key), (None, key)):
            found = self.table.get(candidate)
            if found is not None:
                return found, True
        _warn_unknown(model_id)
        return DEFAULT_PRICE, False

    def cost_micros(self, model_id: str, usage: Usage, upstream: str | None = None) -> int:
        price, _ = self.price(model_id, upstream)
        return cost_micros(price, usage, self.multiplier_num, self.multiplier_den)


def cost_micros(price: Price, usage: Usage, multiplier_num: int = 1, multiplier_den: int = 1) -> int:
    """Integer micro-dollars for `usage` at `price`, rounded up once."""
    scaled = (
        max(0, usage.input_tokens) * price.input
        + max(0, usage.output_tokens) * price.output
        + max(0, usage.cache_creation_5m_input_tokens) * price.cache_write_5m
        + max(0, usage.cache_creation_1h_input_tokens) * price.cache_write_1h
        + max(0, usage.cache_read_input_tokens) * price.cache_read
    ) * multiplier_num
    denominator = TOKENS_PER_MTOK * multiplier_den
    return -(-scaled // denominator)


def _override_price(override: PricingOverride) -> Price:
    base = from_list_price(str(Decimal(str(override.input))), str(Decimal(str(override.output))))
    inp = Decimal(str(override.input))
    return Price(
        input=base.input,
        output=base.output,
        cache_write_5m=_usd(override.cache_write) if override.cache_write is not None else base.cache_write_5m,
        cache_write_1h=_usd(override.cache_write_1h) if override.cache_write_1h is not None else _usd(inp * 2),
        cache_read=_usd(override.cache_read) if override.cache_read is not None else base.cache_read,
    )


def build(pricing: Pricing | None) -> PriceBook:
    table: dict[tuple[str | None, str], Price] = {(None, key): price for key, price in TABLE.items()}
    multiplier = Decimal("1")
    if pricing is not None:
        for override in pricing.overrides:
            table[(override.upstream, canonical_key(override.model))] = _override_price(override)
        multiplier = Decimal(str(pricing.multiplier))
    num, den = multiplier.as_integer_ratio()
    return PriceBook(table=table, multiplier_num=num, multiplier_den=den)


_lock = threading.Lock()
_warned: set[str] = set()


def _book_of(cfg: Config) -> PriceBook:
    return build(cfg.pricing)


def book(cfg: Config) -> PriceBook:
    """The price book of a config version, built once per version (`config.derive`)."""
    return derive(cfg, _book_of)


def _warn_unknown(model_id: str) -> None:
    if model_id in _warned:
        return
    with _lock:
        if len(_warned) < 1000:
            _warned.add(model_id)
    logs.warning(
        "model has no list price; priced at the conservative default",
        model=model_id,
        default=DEFAULT_KEY,
        fix="add it under pricing.overrides in gateway.yaml",
    )


def format_usd(micros: int) -> str:
    """`12345678` -> `$12.35` (for messages; rounds half up to the cent)."""
    cents = (Decimal(micros) / 10_000).to_integral_value(ROUND_HALF_UP)
    return f"${cents / 100:.2f}"


def cents_string(micros: int) -> str:
    """Micro-dollars as cents in a decimal string (Anthropic's Admin API style): 12345678 -> "1234.5678"."""
    value = Decimal(micros) / 10_000
    text = format(value.normalize(), "f") if value else "0"
    return text
