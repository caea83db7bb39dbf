"""List prices per model, and the cost of one request in integer micro-dollars.

Prices come from the model catalogue (`common.core.catalog`, refreshed from
the catalogue each Claude Code release ships; docs/models.md): per model,
input, output, 5-minute and 1-hour cache writes, cache reads (USD per
million tokens), web search (USD per request), and for tiers that have one a
long-prompt rate set. Long prompts: when a request's prompt tokens (input +
cache reads + cache writes) exceed the tier's `above_prompt_tokens`, every
token of that request, output included, is priced at the long-prompt rates
(web search stays at its rate). `pricing.overrides` in gateway.yaml replace a
model's row (without a long-prompt tier) and `pricing.multiplier` scales all.

Spend caps are a runaway-usage guardrail at list price, not a bill: regional
Vertex endpoints (+10 %), batch and priority tiers are not modelled; an
operator who wants them uses `pricing.multiplier` or `pricing.overrides`.

Money never touches a float here: prices are integer micro-dollars per MTok,
config floats are converted once through `Decimal(str(x))`, and a request's
cost is one integer division rounded up (so a cost is never understated).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from common import config
from common.core import catalog, logs, models

if TYPE_CHECKING:
    from common.config import Config, Pricing, PricingOverride
    from common.core.usage import Usage

MICROS_PER_DOLLAR = 1_000_000
TOKENS_PER_MTOK = 1_000_000
MAX_WARNED = 1000  # distinct unknown models logged per instance (client-chosen ids: bounded)


@dataclass(frozen=True, slots=True)
class Price:
    """Micro-dollars per million tokens of each kind; `web_search` per request.

    `long_prompt`, when set, prices the whole request once its prompt tokens
    exceed `above_prompt_tokens`."""

    input: int
    output: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int
    web_search: int = 10_000  # $0.01 per search: the catalogue's rate for every model today
    long_prompt: Price | None = None
    above_prompt_tokens: int = 0


def _usd(value: Decimal | float | str) -> int:
    """USD (per MTok) -> integer micro-dollars (per MTok), exactly for any cent-level price."""
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    return int((amount * MICROS_PER_DOLLAR).to_integral_value(ROUND_HALF_UP))


def _from_rates(rates: catalog.Rates) -> Price:
    return Price(
        rates.input, rates.output, rates.cache_write_5m, rates.cache_write_1h, rates.cache_read, rates.web_search
    )


def price_of_tier(tier: catalog.Tier) -> Price:
    base = _from_rates(tier.rates)
    if tier.long_prompt is None or tier.above_prompt_tokens is None:
        return base
    return Price(
        base.input,
        base.output,
        base.cache_write_5m,
        base.cache_write_1h,
        base.cache_read,
        base.web_search,
        long_prompt=_from_rates(tier.long_prompt),
        above_prompt_tokens=tier.above_prompt_tokens,
    )


# catalogue id -> list price; every spelling reaches its row through `models.canonical`.
TABLE: dict[str, Price] = {m.id: price_of_tier(m.tier) for m in catalog.MODELS}


def _most_expensive() -> tuple[Price, str]:
    """Each kind's highest rate in the catalogue (long-prompt rates included), and a model that has it."""
    rows = [(p, key) for key, p in TABLE.items()] + [(p.long_prompt, key) for key, p in TABLE.items() if p.long_prompt]
    kinds = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read", "web_search")
    top = Price(*(max(getattr(p, k) for p, _ in rows) for k in kinds))
    # Name the row that is the maximum everywhere (Opus 4 / 4.1 today) in the log line.
    named = next((key for p, key in rows if all(getattr(p, k) == getattr(top, k) for k in kinds)), "per-kind maximum")
    return top, named


# An unknown model is priced like the most expensive row, so a guardrail errs
# towards stopping spend rather than missing it.
DEFAULT_PRICE, DEFAULT_KEY = _most_expensive()


@dataclass(frozen=True, slots=True)
class PriceBook:
    """The table with config overrides and multiplier applied; built once per config."""

    table: dict[tuple[str | None, str], Price]
    multiplier_num: int
    multiplier_den: int

    def price(self, model_id: str, upstream: str | None = None) -> tuple[Price, bool]:
        """(price, known) for a model id; unknown ids get DEFAULT_PRICE (logged once, by `cost_micros`)."""
        key = models.canonical(model_id)
        for candidate in ((upstream, key), (None, key)):
            found = self.table.get(candidate)
            if found is not None:
                return found, True
        return DEFAULT_PRICE, False

    def cost_micros(self, model_id: str, usage: Usage, upstream: str | None = None) -> int:
        price, known = self.price(model_id, upstream)
        if not known:
            warn_unknown(model_id)
        return cost_micros(price, usage, self.multiplier_num, self.multiplier_den)


def prompt_tokens(usage: Usage) -> int:
    """What a long-prompt threshold counts: input + cache reads + cache writes (5m and 1h)."""
    return (
        max(0, usage.input_tokens)
        + max(0, usage.cache_read_input_tokens)
        + max(0, usage.cache_creation_5m_input_tokens)
        + max(0, usage.cache_creation_1h_input_tokens)
    )


def cost_micros(price: Price, usage: Usage, multiplier_num: int = 1, multiplier_den: int = 1) -> int:
    """Integer micro-dollars for `usage` at `price`, rounded up once."""
    rates = price
    if price.long_prompt is not None and prompt_tokens(usage) > price.above_prompt_tokens:
        rates = price.long_prompt
    scaled = (
        max(0, usage.input_tokens) * rates.input
        + max(0, usage.output_tokens) * rates.output
        + max(0, usage.cache_creation_5m_input_tokens) * rates.cache_write_5m
        + max(0, usage.cache_creation_1h_input_tokens) * rates.cache_write_1h
        + max(0, usage.cache_read_input_tokens) * rates.cache_read
        # a per-request price times 10^6 keeps the one division below exact
        + max(0, usage.web_search_requests) * price.web_search * TOKENS_PER_MTOK
    ) * multiplier_num
    denominator = TOKENS_PER_MTOK * multiplier_den
    return -(-scaled // denominator)


def _override_price(override: PricingOverride) -> Price:
    inp = Decimal(str(override.input))
    known = TABLE.get(models.canonical(override.model))
    return Price(
        input=_usd(inp),
        output=_usd(override.output),
        # Anthropic's ratios when the override leaves a cache kind out: 1.25x, 2x and 0.1x input.
        cache_write_5m=_usd(override.cache_write) if override.cache_write is not None else _usd(inp * Decimal("1.25")),
        cache_write_1h=_usd(override.cache_write_1h) if override.cache_write_1h is not None else _usd(inp * 2),
        cache_read=_usd(override.cache_read) if override.cache_read is not None else _usd(inp * Decimal("0.1")),
        web_search=(known or DEFAULT_PRICE).web_search,
    )


def build(pricing: Pricing | None) -> PriceBook:
    table: dict[tuple[str | None, str], Price] = {(None, key): price for key, price in TABLE.items()}
    multiplier = Decimal("1")
    if pricing is not None:
        for override in pricing.overrides:
            table[(override.upstream, models.canonical(override.model))] = _override_price(override)
        multiplier = Decimal(str(pricing.multiplier))
    num, den = multiplier.as_integer_ratio()
    return PriceBook(table=table, multiplier_num=num, multiplier_den=den)


def _book_of(cfg: Config) -> PriceBook:
    return build(cfg.pricing)


def book(cfg: Config) -> PriceBook:
    """The price book of a config version, built once per version."""
    return config.derive(cfg, _book_of)


_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_unknown(model_id: str) -> None:
    """Log an unpriced model once per model (any spelling) per instance, not per request."""
    key = models.canonical(model_id)
    if key in _warned:
        return
    with _warned_lock:
        if key in _warned or len(_warned) > MAX_WARNED:
            return
        _warned.add(key)
        full = len(_warned) > MAX_WARNED
    if full:
        logs.warning(f"more than {MAX_WARNED} models without a list price; no longer logging them")
        return
    logs.warning(
        "model has no list price; priced at the conservative default",
        model=model_id[:200],
        default=DEFAULT_KEY,
        fix="add it under pricing.overrides in gateway.yaml, or refresh the model catalogue (docs/models.md)",
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
