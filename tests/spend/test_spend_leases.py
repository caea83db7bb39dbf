"""Budget leases (docs/spend.md, "Leases"): no round trip for a caller far from the cap, an exact ledger.

Real Postgres throughout. Each `LeaseBook` plays one instance (its own leases,
its own clock) against the one database the test set up; requests go through
`reserve.reserve` and `settle.settle`, the functions `proxy.metering` calls.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.spend import request_info, set_limit, setup_gateway

from common import config
from common.core.errors import GatewayError
from common.core.usage import Usage
from common.db import pool
from common.spend import leases, pricing, queue, reserve, settle, shutdown, store

USER = "dev@example.com"
# request_info's default: Haiku 4.5, 1000 output tokens at most, 4000 bytes = 1000 prompt tokens.
E = 1000 * 1 + 1000 * 5  # its expected cost (the defaults: no history), micro-dollars
EXACT = Usage(input_tokens=1000, output_tokens=1000)  # costs exactly E, and teaches admission nothing new


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Statements:
    """Every statement the process sends, by SQL text (wraps `Database.execute`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sql: list[str] = []
        real = pool.Database.execute

        def execute(db: pool.Database, sql: str, args: Any = ()) -> Any:
            self.sql.append(sql)
            return real(db, sql, args)

        monkeypatch.setattr(pool.Database, "execute", execute)

    def count(self, name: str = "") -> int:
        return sum(1 for s in self.sql if name in s)


def q(sql: str, args: tuple[Any, ...] = ()) -> Any:
    return pool.get().execute(sql, args)[0][0]


def ledger() -> tuple[int, int, int]:
    """(usage rows' cost, the user's counters, live holds on the user's key)."""
    return (
        int(q("SELECT coalesce(sum(cost_micros), 0) FROM spend_usage")),
        int(q("SELECT coalesce(sum(spent_micros), 0) FROM spend_counters WHERE scope_key = %s", ("user:" + USER,))),
        int(
            q(
                "SELECT coalesce(sum(amount_micros), 0) FROM spend_holds WHERE scope_key = %s"
                " AND expires_at > clock_timestamp()",
                ("user:" + USER,),
            )
        ),
    )


def begin(book: leases.LeaseBook, **kw: Any) -> reserve.Reservation:
    reservation, _ = reserve.reserve(config.current(), request_info(**kw), book)
    return reservation


def finish(reservation: reserve.Reservation, usage: Usage = EXACT) -> int:
    return settle.settle(config.current(), request_info(), reservation, usage, 200)


@pytest.fixture
def gateway(tmp_path: Path, database_url: str) -> Any:
    setup_gateway(tmp_path, database_url, {"store": {"max_connections": 10}})
    assert reserve.estimate_micros(config.current(), request_info()) == E
    yield
    queue.clear()
    shutdown.reset()


def test_a_caller_far_from_the_cap_costs_no_round_trip_and_the_ledger_stays_exact(
    gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_limit("user", USER, "daily", "10.00")  # far: 8 expected costs are 0.5 % of it
    book = leases.LeaseBook(Clock())
    statements = Statements(monkeypatch)
    first = begin(book)
    assert statements.count("spend_reserve") == 1
    lease = first.lease
    assert lease is not None and lease.amount == 8 * E  # lease_requests (8) expected costs
    assert ledger() == (0, 0, 8 * E)  # one hold: the lease, not the request
    costs = [reserve.request_cost(config.current(), request_info(), EXACT)]
    finish(first)
    before = len(statements.sql)
    # Seven more in flight at once fit the lease: admitted here, not a single statement.
    local = [begin(book) for _ in range(7)]
    assert len(statements.sql) == before, statements.sql[before:]
    assert all(r.lease is lease and r.held for r in local)
    # Their standings: what the reserve saw plus the lease's settled request and the others in flight.
    assert [(s.spent_micros, s.held_micros) for s in local[0].standings] == [(E, 0)]
    assert [(s.spent_micros, s.held_micros) for s in local[6].standings] == [(E, 6 * E)]
    # One over E of real cost, one under: the hold shrinks by each real cost, in the settle statement.
    usages = [Usage(input_tokens=1000, output_tokens=1500), Usage(input_tokens=10, output_tokens=10)] + [EXACT] * 5
    for r, usage in zip(local, usages, strict=True):
        costs.append(finish(r, usage))
    spent, counters, held = ledger()
    prices = pricing.book(config.current())
    assert sum(costs) == 6 * E + sum(prices.cost_micros("claude-haiku-4-5", u) for u in usages[:2])
    assert spent == counters == sum(costs)  # the usage rows and counters, to the micro-dollar
    assert held == 8 * E - sum(costs) == lease.remaining  # the ledger's hold is the lease's remainder
    assert statements.count("spend_reserve") == 1  # eight requests, one reserve statement
    # The ninth does not fit what is left: a new lease, in the reserve statement that also releases the old one.
    ninth = begin(book)
    assert statements.count("spend_reserve") == 2
    assert ninth.lease is not None and ninth.lease is not lease
    assert ledger()[2] == 8 * E  # the old lease released, the new one held
    finish(ninth)
    assert release_leases_of(book) == 1
    assert ledger() == (sum(costs) + E, sum(costs) + E, 0)


def release_leases_of(book: leases.LeaseBook) -> int:
    return shutdown.release_leases(book)


def drain(book: leases.LeaseBook) -> int:
    """One request after another (each costing E) until the cap refuses one; how many were served."""
    served = 0
    while True:
        try:
            r = begin(book)
        except GatewayError:
            return served
        finish(r)
        served += 1


def test_near_the_cap_each_request_holds_alone(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = 100 * E
    set_limit("user", USER, "daily", str(cap / 1_000_000))
    book = leases.LeaseBook(Clock())
    statements = Statements(monkeypatch)
    # Leases while used + lease <= 50 % of the cap; 5 % of the room left is below 8 E here (5 E).
    first = begin(book)
    assert first.lease is not None and first.lease.amount == 5 * E
    finish(first, Usage(input_tokens=49 * E))  # 49 % of the cap spent (Haiku input: 1 µ$ a token)
    after = [begin(book) for _ in range(3)]  # the lease's remainder is spent: these go to the ledger
    assert statements.count("spend_reserve") == 4
    assert all(r.lease is None and r.held for r in after)  # 49 % + 2 E > 50 %: per-request holds
    assert ledger()[2] == 3 * E
    for r in after:
        finish(r)
    assert ledger()[2] == 0
    assert book.current(leases.signature(first.caps, first.day)) is None


def test_the_window_ends_the_lease_and_the_next_statement_releases_it(
    gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_limit("user", USER, "daily", "10.00")
    clock = Clock()
    monkeypatch.setattr(leases.LEASES, "clock", clock)  # this process's own book, on a clock the test moves
    first = begin(leases.LEASES)
    lease = first.lease
    assert lease is not None
    finish(first)
    assert ledger()[2] == 7 * E
    window = config.current().enforcement.lease_seconds  # type: ignore[union-attr]
    clock.now += window
    # The caller's next request: the old lease is over, a new one is taken in the statement releasing it.
    second = begin(leases.LEASES)
    assert second.lease is not None and second.lease is not lease
    assert ledger()[2] == 8 * E
    finish(second)
    # Idle past its window: the next statement of the instance, whoever's it is, releases it.
    clock.now += window
    other = reserve.Reservation.unheld()
    settle.settle(config.current(), request_info(email="other@example.com"), other, EXACT, 200)
    assert ledger()[2] == 0
    assert q("SELECT count(*) FROM spend_holds") == 0


def test_a_lease_left_by_a_dead_instance_expires_and_loses_no_spend(tmp_path: Path, database_url: str) -> None:
    setup_gateway(tmp_path, database_url, {"enforcement": {"reservation_ttl_seconds": 1}})
    set_limit("user", USER, "daily", "10.00")
    book = leases.LeaseBook(Clock())
    rs = [begin(book) for _ in range(4)]
    for r in rs[:3]:
        finish(r)
    # The instance dies: one request never settles, nothing is released.
    del book
    spent, counters, held = ledger()
    assert spent == counters == 3 * E and held == 5 * E
    time.sleep(1.2)
    assert ledger() == (3 * E, 3 * E, 0)  # the lease expired: nothing held, nothing settled lost
    # The request that never settled comes back as a spilled row (`gateway spend replay`): it counts,
    # once, and shrinks the lease's (expired) hold once, whether replayed alone or in a batch, twice.
    row = settle.row(config.current(), request_info(), rs[3], EXACT, 200)
    assert row.lease is not None
    assert store.SettleRow.from_item(row.as_item()) == dataclasses.replace(row, sweep=False)
    store.settle(pool.get(), row)
    store.settle_batch(pool.get(), [row, row])
    store.settle(pool.get(), row)
    assert ledger()[:2] == (4 * E, 4 * E)
    assert q("SELECT max(amount_micros) FROM spend_holds WHERE reservation_id = %s::uuid", (row.lease,)) == 4 * E


def test_a_settle_queued_while_the_database_is_away_keeps_its_lease(
    gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_limit("user", USER, "daily", "10.00")
    clock = Clock()
    book = leases.LeaseBook(clock)
    first = begin(book)
    lease = first.lease
    assert lease is not None

    def away(*args: Any) -> None:
        raise pool.DatabaseUnavailable("stopped")

    real = store.settle, store.settle_batch
    monkeypatch.setattr(store, "settle", away)
    monkeypatch.setattr(store, "settle_batch", away)
    finish(first)
    assert queue.pending() == 1
    clock.now += 1000  # idle past its window, nothing in flight: but its settle is only queued
    assert book.releases() == ()  # released now, it would no longer hold what that settle adds
    monkeypatch.setattr(store, "settle", real[0])
    monkeypatch.setattr(store, "settle_batch", real[1])
    queue.flush()
    assert queue.pending() == 0
    assert book.releases() == (lease.key,)
    assert ledger() == (E, E, 7 * E)


def test_fail_closed_a_lease_still_admits_what_it_covers(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_gateway(tmp_path, database_url, {"enforcement": {"fail_closed_on_error": True}})
    set_limit("user", USER, "daily", "10.00")
    book = leases.LeaseBook(Clock())
    first = begin(book)
    assert first.lease is not None

    def away(db: Any, sql: str, args: Any = ()) -> Any:
        raise pool.DatabaseUnavailable("stopped")

    monkeypatch.setattr(pool.Database, "execute", away)
    # The lease is budget already held in the ledger: the 7 it still covers are admitted ...
    covered = [begin(book) for _ in range(7)]
    assert all(r.lease is first.lease for r in covered)
    # ... and the next one, which needs the ledger, is refused (fail closed).
    with pytest.raises(GatewayError) as refused:
        begin(book)
    assert refused.value.status == 429
    assert refused.value.headers["anthropic-ratelimit-unified-overage-disabled-reason"] == "fetch_error"


def test_an_idle_lease_of_another_instance_refuses_early_by_at_most_itself(gateway: Any) -> None:
    cap = 1000 * E
    set_limit("user", USER, "daily", str(cap / 1_000_000))
    a, b = leases.LeaseBook(Clock()), leases.LeaseBook(Clock())
    idle = begin(a)
    finish(idle)
    residue = 7 * E  # A's lease (8 E) less its one request
    assert ledger()[2] == residue
    # Instance B spends the rest of the cap, request by request, until refused.
    served = drain(b)
    spent = ledger()[0]
    # Refused once spent + A's idle lease reached the cap: early by A's remainder, no more.
    assert cap - residue <= spent < cap, (spent, cap, residue)
    # A's next statement (here: its stop) releases it; B is served again up to the cap.
    assert release_leases_of(a) == 1
    assert drain(b) == residue // E
    assert cap <= ledger()[0] < cap + E
    assert served > 0


def test_two_instances_spending_one_cap_stay_within_the_bound(gateway: Any) -> None:
    cap = 400 * E
    set_limit("user", USER, "daily", str(cap / 1_000_000))
    books = [leases.LeaseBook(), leases.LeaseBook()]
    threads_per_book, per_thread = 8, 40
    rng = random.Random(13)
    plans = [
        [Usage(input_tokens=1000, output_tokens=rng.choice([1000, 1000, 1000, 400, 1600])) for _ in range(per_thread)]
        for _ in range(threads_per_book * len(books))
    ]
    served: list[Usage] = []
    refused = 0
    lock = threading.Lock()
    barrier = threading.Barrier(len(plans))

    def run(book: leases.LeaseBook, plan: list[Usage]) -> None:
        nonlocal refused
        barrier.wait()
        for usage in plan:
            try:
                r = begin(book)
            except GatewayError:
                with lock:
                    refused += 1
                continue
            time.sleep(0.002)  # the upstream answers
            finish(r, usage)
            with lock:
                served.append(usage)

    threads = [threading.Thread(target=run, args=(books[i % 2], plan)) for i, plan in enumerate(plans)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    book = pricing.book(config.current())
    costs = [book.cost_micros("claude-haiku-4-5", u) for u in served]
    spent, counters, _ = ledger()
    assert spent == counters == sum(costs)  # exact, to the micro-dollar
    assert len(served) + refused == len(plans) * per_thread
    # docs/spend.md: cap + the last expected cost + what the requests in flight at the end cost beyond
    # their share (at most 16 threads' worth, each at most 600 µ$ over E), whatever the number of instances.
    excess_bound = len(plans) * max(0, max(costs) - E)
    assert spent <= cap + E + excess_bound, (spent, cap)
    assert refused > 0
    for b in books:
        release_leases_of(b)
    assert ledger()[2] == 0
    print(f"two instances: served {len(served)}, refused {refused}, spent {spent} of cap {cap}")
