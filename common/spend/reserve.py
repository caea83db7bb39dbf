"""Before the upstream call: estimate the request's cost and reserve it against every cap.

`reserve()` finds the caps that apply (from `caps.LIMITS`: an uncapped caller
costs no round trip) and holds the request's *expected* cost against all of
them in one statement (`store.reserve`, i.e. `spend_reserve`): the prompt
priced at the mix recent requests of that model really cost (mostly cache
reads for Claude Code) and a high percentile of their output tokens, with
`max_tokens` only as a ceiling (`spend.observed`; docs/spend.md derives the
overshoot bound this gives). At a cap
it raises the 429 of PROTOCOL.md; otherwise it returns the
`anthropic-ratelimit-unified-*` headers for a capped caller. A hold expires
after `enforcement.reservation_ttl_seconds` if its request never settles.
A caller far from every cap holds a lease instead (`spend.leases`): the
instance admits their next requests against it with no round trip.
When the database cannot be read, `enforcement.fail_closed_on_error` decides
(a request this instance's lease covers is admitted without reading it).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from common.core import logs, periods
from common.core.errors import GatewayError
from common.core.usage import RequestInfo, Usage
from common.db import pool
from common.spend import caps, leases, observed, pricing, store
from common.spend.caps import Cap, Standing
from common.spend.leases import Lease, LeaseBook

if TYPE_CHECKING:
    from common.config import Config

# Keys whose check is optimistic (not locked): locking the org key would
# serialise every request of the organisation (see docs/spend.md).
UNLOCKED_KEYS = frozenset({caps.ORG_KEY})
BYTES_PER_TOKEN = 4  # request bytes per prompt token, before the learnt ratio corrects it
DEFAULT_TTL_SECONDS = 900


def now() -> datetime:
    """The ledger's clock (one place, so tests can pin it)."""
    return datetime.now(UTC)


@dataclass(slots=True)
class Reservation:
    key: str  # uuid: the usage row's idempotency key and the holds' id
    at: datetime
    day: date
    caps: list[Cap] = field(default_factory=list)
    estimate_micros: int = 0
    held: bool = False
    # Each cap's standing as the reserve saw it (before this request's hold): budget alerts
    # decide from it, with no round trip, whether a settle can be near a threshold.
    standings: list[Standing] = field(default_factory=list)
    # The lease it was admitted against (`spend.leases`), None for a hold of its own.
    lease: Lease | None = None

    @classmethod
    def unheld(cls) -> Reservation:
        """A reservation made now that holds nothing (yet)."""
        at = now()
        return cls(key=str(uuid.uuid4()), at=at, day=at.date())


def request_cost(cfg: Config, info: RequestInfo, usage: Usage) -> int:
    """`usage` of this request in micro-dollars at list price: the client's model id, or
    the upstream's model id when only that one has a known price."""
    book = pricing.book(cfg)
    model = info.model
    _, known = book.price(model, info.upstream) if model else (None, False)
    if not known and info.upstream_model:
        upstream_price, upstream_known = book.price(info.upstream_model, info.upstream)
        if upstream_known:
            return pricing.cost_micros(upstream_price, usage, book.multiplier_num, book.multiplier_den)
    return book.cost_micros(model or info.upstream_model, usage, info.upstream)


def prompt_tokens(info: RequestInfo) -> int:
    """The request's prompt size in tokens as the estimate counts it (bytes / BYTES_PER_TOKEN)."""
    return -(-max(0, info.input_bytes) // BYTES_PER_TOKEN)


def estimate_micros(cfg: Config, info: RequestInfo) -> int:
    """The cost held while the request runs: what a request of this model and size is expected to cost.

    Output: the learnt high percentile of recent output tokens, never above the
    request's `max_tokens`. Prompt: its tokens priced as plain input, times the
    learnt high percentile of what recent prompts really cost relative to that
    (cache reads cost a tenth). Both fall back to conservative defaults (4096
    output tokens, the plain input price) until the model has history.
    """
    expected = observed.OBSERVED.expectation(info.model)
    output = min(info.max_tokens, expected.output_tokens) if info.max_tokens > 0 else expected.output_tokens
    prompt = prompt_tokens(info)
    both = request_cost(cfg, info, Usage(input_tokens=prompt, output_tokens=output))
    prompt_only = request_cost(cfg, info, Usage(input_tokens=prompt))
    return max(1, both - prompt_only + math.ceil(prompt_only * expected.input_ratio))


def prompt_ratio(cfg: Config, info: RequestInfo, usage: Usage, prompt: int) -> float | None:
    """What `usage`'s prompt side cost relative to `prompt` tokens priced as plain input (None if unknown)."""
    plain = request_cost(cfg, info, Usage(input_tokens=prompt)) if prompt > 0 else 0
    if plain <= 0:
        return None
    real = Usage(
        input_tokens=usage.input_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        cache_creation_5m_input_tokens=usage.cache_creation_5m_input_tokens,
        cache_creation_1h_input_tokens=usage.cache_creation_1h_input_tokens,
    )
    return request_cost(cfg, info, real) / plain


def observe(cfg: Config, info: RequestInfo, usage: Usage, status: int) -> None:
    """Learn from one answered request what its model's requests cost (no I/O)."""
    if info.endpoint != "messages" or status >= 400 or not info.model:
        return
    observed.OBSERVED.record(info.model, usage.output_tokens, prompt_ratio(cfg, info, usage, prompt_tokens(info)))


def _seed(cfg: Config, info: RequestInfo) -> None:
    """Once per instance: what the ledger's recent rows say, so a new instance does not start blind."""
    if observed.OBSERVED.seeded:
        return
    rows = store.recent_usage(pool.get())
    figures = []
    for model, usage in rows:
        prompt = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
        like = RequestInfo(identity=info.identity, model=model, upstream=info.upstream, upstream_model="")
        figures.append((model, usage.output_tokens, prompt_ratio(cfg, like, usage, prompt)))
    observed.OBSERVED.seed(figures)


def reserve(cfg: Config, info: RequestInfo, book: LeaseBook | None = None) -> tuple[Reservation, dict[str, str]]:
    """Reserve an estimate against every cap that applies; 429 `billing_error` at a cap.

    A caller far from every cap is admitted against this instance's lease (`book`,
    `leases.LEASES` by default) with no round trip, or takes one in the reserve statement."""
    reservation = Reservation.unheld()
    if cfg.admin is None or info.endpoint != "messages":
        return reservation, {}
    book = leases.LEASES if book is None else book
    try:
        applicable = caps.applicable_caps(cfg, info.identity, caps.cached_limits())
        if not applicable:
            return reservation, {}
        reservation.caps = applicable
        _seed(cfg, info)
        reservation.estimate_micros = estimate_micros(cfg, info)
        ttl = cfg.enforcement.reservation_ttl_seconds if cfg.enforcement else DEFAULT_TTL_SECONDS
        db = pool.get()
        book.bind(db.settings)
        sig = leases.signature(applicable, reservation.day)
        terms = leases.terms(cfg)
        if terms.requests > 0:
            local = book.admit(sig, reservation.estimate_micros, applicable)
            if local is not None:  # within this instance's lease: no round trip
                reservation.lease, reservation.standings = local
                reservation.held = True
                return reservation, caps.allowed_headers(reservation.standings)
        ask = (
            store.LeaseAsk(
                str(uuid.uuid4()),
                terms.requests * reservation.estimate_micros,
                terms.headroom_percent,
                terms.below_percent,
            )
            if terms.requests > 0 and book.ask(sig)
            else None
        )
        release = book.releases()
        try:
            figures, admitted, leased = store.reserve(
                db,
                reservation.key,
                [c.key for c in applicable],
                [periods.start(c.period, reservation.day) for c in applicable],
                [c.cap_micros for c in applicable],
                reservation.day,
                reservation.estimate_micros,
                ttl,
                sorted({c.key for c in applicable if c.key not in UNLOCKED_KEYS}),
                ask,
                release,
            )
        except Exception:
            book.put_back(release)
            if ask is not None:
                book.denied(sig)
            raise
        book.saw(sig, figures)
        if ask is not None:
            if admitted and leased:
                reservation.lease = book.granted(
                    sig, ask.key, leased, figures, reservation.estimate_micros, terms.seconds, terms.below_percent
                )
            else:
                book.denied(sig)
    except GatewayError:
        raise
    except Exception as exc:
        return _unavailable(cfg, reservation, exc)
    states = [
        Standing(cap, spent, held, reservation.day) for cap, (spent, held) in zip(applicable, figures, strict=True)
    ]
    if not admitted:
        # This instance's own lease may be what filled the cap (taken by a request racing this
        # one): what is left of it is the caller's, already held, so it admits the request.
        local = book.admit(sig, reservation.estimate_micros, applicable) if terms.requests > 0 else None
        if local is not None:
            reservation.lease, reservation.standings = local
            reservation.held = True
            return reservation, caps.allowed_headers(reservation.standings)
        # Refused without any cap full yet: this request's expected cost is what does not fit.
        blocked = [s for s in states if s.blocked] or states
        raise caps.cap_reached(max(blocked, key=lambda s: (s.reset_epoch, s.utilization)), reservation.at)
    reservation.held = True
    reservation.standings = states
    return reservation, caps.allowed_headers(states)


def _unavailable(cfg: Config, reservation: Reservation, exc: Exception) -> tuple[Reservation, dict[str, str]]:
    fail_closed = cfg.enforcement.fail_closed_on_error if cfg.enforcement else False
    logs.warning(
        "spend ledger unreadable; " + ("refusing the request" if fail_closed else "letting the request through"),
        error=pool.describe_error(exc),
        key="enforcement.fail_closed_on_error",
    )
    if fail_closed:
        raise GatewayError(
            429,
            "The gateway cannot check your spend limit right now (its ledger is unavailable), so the request "
            "was refused. Try again in a few minutes; if this persists, contact your gateway administrator.",
            "billing_error",
            {
                "x-should-retry": "false",
                "anthropic-ratelimit-unified-status": "rejected",
                "anthropic-ratelimit-unified-overage-disabled-reason": "fetch_error",
            },
        )
    reservation.caps = []
    return reservation, {}
