"""List prices: every catalogue model in every spelling at its list price, long prompts, web search,
overrides, multiplier, and the conservative default for an unknown model (logged once)."""

from __future__ import annotations

import io
import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_CEILING, Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import Pricing
from common.core import catalog, logs, models
from common.core.usage import Usage
from common.spend import pricing

# The expected prices are computed from the committed data file on their own (Decimal dollars),
# not through the loader or the price table under test.
DATA = json.loads(catalog.DATA_FILE.read_text(), parse_float=Decimal)
RAW_MODELS: list[dict[str, Any]] = DATA["models"]
TIERS: dict[str, dict[str, Any]] = DATA["pricing_tiers"]

KINDS = {  # Usage field -> price key in the data file
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_input_tokens": "cache_read",
    "cache_creation_5m_input_tokens": "cache_write_5m",
    "cache_creation_1h_input_tokens": "cache_write_1h",
}
counts = st.integers(min_value=0, max_value=3_000_000)
searches = st.integers(min_value=0, max_value=50)
usages = st.builds(Usage, counts, counts, counts, counts, counts, searches)


def spellings(raw: dict[str, Any]) -> list[str]:
    """Every way a client or upstream writes the model: plain, dated, @-dated, [1m], provider ids."""
    model_id = raw["id"]
    out = [model_id, f"{model_id}-20260101", f"{model_id}@20260101", f"{model_id}[1m]", model_id.upper()]
    out += [f"{v}[1m]" for v in raw["ids"].values()] + list(raw["ids"].values())
    return out


def expected_micros(raw: dict[str, Any], usage: Usage) -> int:
    """List price in micro-dollars, from the data file's decimal strings: tokens x USD/MTok = micro-dollars."""
    tier = TIERS[raw["pricing"]]
    rates = tier
    prompt = (
        usage.input_tokens
        + usage.cache_read_input_tokens
        + usage.cache_creation_5m_input_tokens
        + usage.cache_creation_1h_input_tokens
    )
    long_prompt = tier.get("long_prompt")
    if long_prompt is not None and prompt > long_prompt["above_prompt_tokens"]:
        rates = long_prompt
    total = sum(Decimal(getattr(usage, field)) * Decimal(rates[key]) for field, key in KINDS.items())
    total += Decimal(usage.web_search_requests) * Decimal(tier["web_search"]) * 1_000_000
    return int(total.to_integral_value(ROUND_CEILING))


def test_the_data_file_is_the_whole_catalogue() -> None:
    assert len(RAW_MODELS) == len(pricing.TABLE) == 24
    assert {m["family"] for m in RAW_MODELS} == {"opus", "sonnet", "haiku", "fable", "mythos"}


@given(st.sampled_from(RAW_MODELS), st.data(), st.sampled_from(sorted(KINDS)), counts)
def test_every_model_and_spelling_is_priced_at_list_per_token_kind(
    raw: dict[str, Any], data: st.DataObject, kind: str, count: int
) -> None:
    book = pricing.build(None)
    spelling = data.draw(st.sampled_from(spellings(raw)))
    usage = Usage(**{kind: count})
    _, known = book.price(spelling)
    assert known, spelling
    assert book.cost_micros(spelling, usage) == expected_micros(raw, usage), (spelling, kind, count)


@given(st.sampled_from(RAW_MODELS), usages)
def test_every_model_is_priced_at_list_for_any_mix(raw: dict[str, Any], usage: Usage) -> None:
    """All kinds at once, web searches included; a long-prompt tier switches the whole request."""
    book = pricing.build(None)
    assert book.cost_micros(raw["id"], usage) == expected_micros(raw, usage)


def test_list_prices_to_the_dollar() -> None:
    book = pricing.build(None)
    million = Usage(
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_read_input_tokens=1_000_000,
        cache_creation_5m_input_tokens=1_000_000,
        cache_creation_1h_input_tokens=1_000_000,
    )
    # Sonnet 4.5: $3 in, $15 out, 5m write $3.75, 1h write $6, read $0.30 per MTok.
    assert book.cost_micros("claude-sonnet-4-5", million) == 3_000_000 + 15_000_000 + 300_000 + 3_750_000 + 6_000_000
    # Opus 4.7 (the CLI's default in gateway mode) is $5 / $25, not the $15 / $75 of Opus 4.1.
    assert book.cost_micros("claude-opus-4-7", Usage(input_tokens=1000, output_tokens=2000)) == 5_000 + 50_000
    assert book.cost_micros("claude-opus-4-1", Usage(input_tokens=1000, output_tokens=2000)) == 15_000 + 150_000
    # Opus 5.5: cache reads at $0.20, not 0.1x input.
    assert book.cost_micros("claude-opus-5-5", Usage(cache_read_input_tokens=1_000_000)) == 200_000
    # Haiku 3.5: $0.80/MTok, so 3 tokens are 2.4 micro-dollars, rounded up once to 3.
    assert book.cost_micros("claude-3-5-haiku-20241022", Usage(input_tokens=3)) == 3


def test_long_prompt_rates_apply_to_the_whole_request_above_the_threshold() -> None:
    """Haiku 5.5: $0.10 / $0.50 up to 100,000 prompt tokens; above, $0.50 / $2.50 for every token."""
    book = pricing.build(None)
    at = Usage(input_tokens=40_000, cache_read_input_tokens=50_000, cache_creation_1h_input_tokens=10_000)
    assert pricing.prompt_tokens(at) == 100_000
    at.output_tokens = 1_000
    assert book.cost_micros("claude-haiku-5-5", at) == 4_000 + 500 + 2_000 + 500  # in, read, 1h write, out
    above = Usage(input_tokens=40_000, cache_read_input_tokens=50_000, cache_creation_5m_input_tokens=10_001)
    above.output_tokens = 1_000
    # input 40k x $0.50, reads 50k x $0.05, 5m writes 10,001 x $0.625, output 1k x $2.50
    assert book.cost_micros("claude-haiku-5-5", above) == 20_000 + 2_500 + 6_251 + 2_500
    # Output alone never crosses the threshold.
    assert book.cost_micros("claude-haiku-5-5", Usage(output_tokens=200_000)) == 100_000


def test_web_search_requests_are_read_from_usage_and_priced_per_request() -> None:
    usage = Usage()
    usage.merge({"input_tokens": 10, "output_tokens": 1})
    usage.merge({"output_tokens": 50, "server_tool_use": {"web_search_requests": 3}})
    assert (usage.output_tokens, usage.web_search_requests) == (50, 3)
    usage.merge({"output_tokens": 60})  # a later figure without server_tool_use keeps the count
    assert usage.web_search_requests == 3
    book = pricing.build(None)
    assert book.cost_micros("claude-sonnet-4-6", usage) == 30 + 900 + 3 * 10_000


@given(usages, usages)
def test_cost_is_subadditive_by_at_most_one_rounding(a: Usage, b: Usage) -> None:
    """Rounding up happens once per request: two requests cost at most 1 micro-dollar more than one."""
    price = pricing.TABLE["claude-sonnet-4-5"]
    fields = [*KINDS, "web_search_requests"]
    both = Usage(**{k: getattr(a, k) + getattr(b, k) for k in fields})
    combined = pricing.cost_micros(price, both)
    separate = pricing.cost_micros(price, a) + pricing.cost_micros(price, b)
    assert combined <= separate <= combined + 1


@given(usages, st.sampled_from(sorted(KINDS)), st.integers(min_value=1_000_000, max_value=2_000_000))
def test_a_million_more_tokens_of_any_kind_costs_more(usage: Usage, kind: str, more: int) -> None:
    book = pricing.build(None)
    for model in pricing.TABLE:
        before = book.cost_micros(model, usage)
        bigger = Usage(**{k: getattr(usage, k) for k in [*KINDS, "web_search_requests"]})
        setattr(bigger, kind, getattr(bigger, kind) + more)
        # A long-prompt switch only raises rates, so more tokens never cost less.
        assert book.cost_micros(model, bigger) > before, (model, kind)


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.set_stream(stream)
    try:
        yield stream
    finally:
        logs.set_stream(sys.stderr)


def test_unknown_model_gets_the_most_expensive_row_logged_once_per_instance() -> None:
    # Fresh names: the once-per-instance memory outlives a test.
    mystery, enigma = (f"claude-{word}-{uuid.uuid4().hex[:6]}x" for word in ("mystery", "enigma"))
    book = pricing.build(None)
    price, known = book.price(mystery)
    assert not known and price == pricing.DEFAULT_PRICE
    for kind in ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read", "web_search"):
        highest = max(getattr(r, kind) for p in pricing.TABLE.values() for r in (p, p.long_prompt) if r is not None)
        assert getattr(pricing.DEFAULT_PRICE, kind) == highest, kind
    assert pricing.TABLE[pricing.DEFAULT_KEY] == pricing.DEFAULT_PRICE  # a real row (Opus 4 / 4.1)
    with captured_logs() as out:
        for spelling in (mystery, f"{mystery}-20260101", f"{mystery.upper()}@20260101[1m]") * 20:
            assert book.cost_micros(spelling, Usage(input_tokens=1_000_000)) == 15_000_000
        book.cost_micros(enigma, Usage(input_tokens=1))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["model"] for line in lines] == [mystery, enigma]
    assert "conservative default" in lines[0]["message"] and lines[0]["default"] == pricing.DEFAULT_KEY


def test_models_claude_code_no_longer_ships_are_unknown() -> None:
    """Claude 3 Haiku / Opus left the catalogue: priced conservatively unless an override names them."""
    book = pricing.build(None)
    assert book.price("claude-3-haiku-20240307") == (pricing.DEFAULT_PRICE, False)


def test_overrides_and_multiplier_from_config() -> None:
    cfg = msgspec.convert(
        {
            "multiplier": 1.1,
            "overrides": [
                {"model": "claude-sonnet-4-5@20250929", "input": 2.2, "output": 11.1, "upstream": "vertex"},
                {"model": "claude-haiku-4-5", "input": 0.5, "output": 2.5, "cache_read": 0.07},
                {"model": "claude-haiku-5-5", "input": 0.2, "output": 1},
            ],
        },
        Pricing,
    )
    book = pricing.build(cfg)
    vertex, _ = book.price("claude-sonnet-4-5", "vertex")
    assert vertex.input == 2_200_000 and vertex.output == 11_100_000 and vertex.cache_write_5m == 2_750_000
    other, _ = book.price("claude-sonnet-4-5", "anthropic")
    assert other == pricing.TABLE["claude-sonnet-4-5"]
    haiku, _ = book.price("claude-haiku-4-5-20251001")
    assert haiku.cache_read == 70_000 and haiku.cache_write_1h == 1_000_000 and haiku.web_search == 10_000
    # An override is the operator's whole price: no long-prompt tier left.
    assert book.price("claude-haiku-5-5")[0].long_prompt is None
    # 1.1 is applied exactly (11/10), not as the float 1.1000000000000000888.
    assert (book.multiplier_num, book.multiplier_den) == (11, 10)
    assert book.cost_micros("claude-opus-4-5", Usage(input_tokens=1_000_000)) == 5_500_000


def test_money_formatting() -> None:
    assert pricing.cents_string(12_345_678) == "1234.5678"
    assert pricing.cents_string(50_000_000) == "5000"
    assert pricing.cents_string(0) == "0"
    assert pricing.format_usd(12_345_678) == "$12.35"


@pytest.mark.e2e
def test_the_pinned_clis_default_model_is_in_the_catalogue_and_priced_at_list() -> None:
    """What `claude -p` really sends (captured from the pinned CLI at test time) is a known model."""
    from support import capture

    body = capture.real_request()
    model = body["model"]
    known = models.lookup(model)
    assert known is not None, f"the CLI's default model {model!r} is not in the catalogue: refresh it (docs/models.md)"
    assert model == catalog.ALIASES["opus"]  # the CLI's default in gateway mode is its `opus` alias
    assert isinstance(body["max_tokens"], int) and body["max_tokens"] <= known.max_output_tokens
    raw = next(m for m in RAW_MODELS if m["id"] == known.id)
    usage = Usage(input_tokens=3, output_tokens=1_000, cache_read_input_tokens=20_000, cache_creation_5m_input_tokens=5)
    book = pricing.build(None)
    with captured_logs() as out:
        _, is_known = book.price(model)
        cost = book.cost_micros(model, usage)
    assert is_known and out.getvalue() == ""  # no "no list price" warning
    assert cost == expected_micros(raw, usage)
