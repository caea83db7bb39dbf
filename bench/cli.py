"""`python -m bench [--peer PATH] [--fetch-peer]`: the whole benchmark in one run.

Starts everything on loopback (embedded Postgres, the model stand-in, the
collector and discovery stand-ins, our gateway under gunicorn and, when
present, the peer gateway), captures the real Claude Code CLI's request
(`gateway.capture`), runs the scenarios against each target (the real-traffic
headline, `bench.realtraffic`, and the tiny floor scenarios 1-4) and writes
bench/results/latest.json, docs/bench-latency.png and docs/performance.md,
then prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import peer, probe, procs, realtraffic, report, scenarios, spend, standin, stats, target
from bench.scenarios import Target
from gateway import capture

RESULTS = procs.ROOT / "bench" / "results"
USERS = 200
SPENDER: dict[str, Any] = {"sub": "bench-spender", "email": "spender@bench.example", "groups": ["bench"]}

# The stand-in's answers. Non-streaming: a tiny reply. Streaming: 100 content
# deltas 10 ms apart. Spend: usage priced at exactly 3 cents a request on
# claude-sonnet-4-5 ($3 in / $15 out per million tokens): 2000 in, 1600 out.
TINY = standin.knobs(deltas=1, input_tokens=12, output_tokens=5)
STREAM = standin.knobs(deltas=100, gap_ms=10, input_tokens=12, output_tokens=100)
PRICED = standin.knobs(deltas=1, input_tokens=2000, output_tokens=1600)
CENTS_PER_PRICED_REQUEST = 3
HEADROOM_REQUESTS = 10
SPEND_CONCURRENCY = 50
# What `--only` may select: the tiny floor scenarios 1-4 and the real-traffic headline.
SCENARIOS = ("nonstream", "stream", "real", "cold", "spend")


class Run:
    """Everything one benchmark run started, stopped in reverse order at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._stops: list[Callable[[], None]] = []

    def on_exit(self, stop: Callable[[], None]) -> None:
        self._stops.append(stop)

    def close(self) -> None:
        while self._stops:
            with contextlib.suppress(Exception):
                self._stops.pop()()


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextlib.contextmanager
def stage(title: str) -> Iterator[None]:
    started = time.perf_counter()
    progress(f"{title} …")
    yield
    progress(f"{title}: done in {time.perf_counter() - started:.1f} s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--peer", type=Path, help="path to the `claude` binary (Anthropic's own gateway)")
    parser.add_argument(
        "--fetch-peer", action="store_true", help="npm pack the Claude Code binary into .cache/claude-code/"
    )
    parser.add_argument("--no-peer", action="store_true", help="do not run the peer even if it was fetched")
    parser.add_argument("--threads", type=int, help="THREADS for gunicorn (default: the production figure)")
    parser.add_argument(
        "--vcpus",
        type=int,
        help="an instance of N vCPUs: the gateway pinned to N cores (taskset), WORKERS and THREADS sized"
        " for N as terraform/functions.tf does, the peer pinned alike (default: terraform's cpu for messages)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the gateways to the instance's vCPUs: every core of this machine (the default before;"
        " a 1-vCPU worker's threads then hop between cores, which costs CPU an instance of 1 vCPU does not pay)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="experiment: the gateway's sys.setswitchinterval in seconds (CPython's default is 0.005)",
    )
    parser.add_argument("--upstream", choices=["anthropic", "vertex"], default="anthropic")
    parser.add_argument("--requests", type=int, default=2000, help="requests per non-streaming measurement")
    parser.add_argument("--streams", type=int, default=192, help="streams in scenario 2 (64 at a time)")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy record the gateway worker in scenario 1 (c=32) and 2"
    )
    parser.add_argument(
        "--attribute",
        action="store_true",
        help="where a real request's CPU goes: a separate gateway with bench.probe (thread CPU per function)"
        " runs the real request at c=32 after the measured runs",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md and the chart")
    parser.add_argument(
        "--capture-version",
        default=realtraffic.VERSION,
        help="the Claude Code CLI whose /v1/messages request the real-traffic scenario replays"
        " (fetched into .cache/claude-code/<version>/ and captured at bench time)",
    )
    parser.add_argument(
        "--no-real", action="store_true", help="skip the real-traffic scenario (scenario 4 then uses the tiny shape)"
    )
    parser.add_argument(
        "--only",
        choices=SCENARIOS,
        action="append",
        help="run only this scenario (repeatable; for iterating on one cost: implies --no-docs)",
    )
    args = parser.parse_args(argv)
    args.scenarios = frozenset(args.only or SCENARIOS)
    if args.only:
        args.no_docs = True  # a partial run must not replace the page of a whole one
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    binary = args.peer
    if binary is None and args.fetch_peer:
        with stage("fetching the peer (npm pack @anthropic-ai/claude-code-linux-x64)"):
            binary = peer.fetch()
    if binary is None and not args.no_peer:
        binary = peer.find_binary()
    concurrency, threads_source = target.production_threads()
    vcpus = args.vcpus or max(1, math.floor(target.production_cpu()))
    workers, threads = target.sizing(vcpus, concurrency)
    # Pinned to the instance's size, as production runs it; on a machine with no more cores
    # than that, pinning changes nothing (and taskset would refuse cores that do not exist).
    args.vcpus = vcpus if not args.no_pin and vcpus < (os.cpu_count() or 1) else None
    if args.threads:
        threads, threads_source = args.threads, "--threads"
    args.workers = workers
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    run = Run(log_dir)
    try:
        results = execute(args, run, binary, threads, threads_source)
    finally:
        run.close()
    results["meta"]["duration_s"] = round(time.perf_counter() - began, 1)
    results["meta"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report.finish(results, RESULTS / "latest.json", None if args.no_docs else procs.ROOT / "docs")
    print(report.markdown(results), flush=True)
    progress(f"finished in {results['meta']['duration_s']} s; logs in {log_dir}")
    return 0


def execute(
    args: argparse.Namespace, run: Run, binary: Path | None, threads: int, threads_source: str
) -> dict[str, Any]:
    from gateway import devdb

    results: dict[str, Any] = {
        "meta": report.machine()
        | {
            "threads": threads,
            "threads_source": threads_source,
            "workers": args.workers,
            "vcpus_pinned": args.vcpus,
            "upstream": args.upstream,
            "users": USERS,
            "switch_interval_s": args.switch_interval,
        },
        "scenarios": {},
    }
    sc = results["scenarios"]

    with stage("starting embedded PostgreSQL, the stand-ins"):
        pg = devdb.start()
        run.on_exit(lambda: devdb.remove(pg))
        gateway_db = pg.create_database("gateway")
        upstream_port, collector_port, oidc_port = procs.free_port(), procs.free_port(), procs.free_port()
        upstream = standin.start(upstream_port, run.log_dir)
        run.on_exit(upstream.stop)
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        sidecars = procs.spawn(
            "sidecars",
            procs.python_argv(
                "-m", "bench.sidecars", "--collector-port", str(collector_port), "--oidc-port", str(oidc_port)
            ),
            procs.base_env(),
            run.log_dir,
        )
        run.on_exit(sidecars.stop)
        procs.wait_line(sidecars, "ready")

    real: capture.CapturedRequest | None = None
    if not args.no_real and args.scenarios & {"real", "spend"}:
        with stage(f"capturing the real CLI's /v1/messages request (Claude Code {args.capture_version})"):
            try:
                real = capture.captured(args.capture_version)
                results["meta"]["real_request"] = capture.shape(real)
                progress(f"  {report.brief_shape(results['meta']['real_request'])}")
            except Exception as exc:  # the run goes on with the tiny shapes; the table says why
                results["meta"]["capture_error"] = str(exc)[-2000:]
                progress(f"could not capture the real request: {str(exc)[:300]}")

    with stage(f"preparing our gateway (THREADS={threads}, {USERS} users with caps, telemetry on)"):
        port = procs.free_port()
        config_path = target.write_config(
            run.log_dir,
            port=port,
            database_url=gateway_db,
            upstream_url=upstream_url,
            collector_url=f"http://127.0.0.1:{collector_port}",
            upstream_kind=args.upstream,
            extra_models=(str(real.body.get("model")),) if real else (target.REAL_MODEL,),
        )
        users = target.users(USERS)
        real_cost: dict[str, Any] | None = None
        spender_cap_cents = HEADROOM_REQUESTS * CENTS_PER_PRICED_REQUEST
        if real is not None:
            tokens_of_one = realtraffic.usage(realtraffic.prompt_tokens(real))
            per_request = realtraffic.cost_micros(
                realtraffic.price_book(config_path), str(real.body.get("model")), tokens_of_one
            )
            spender_cap_cents = realtraffic.cap_cents(per_request)
            real_cost = {"per_request_micros": per_request, "cap_cents": spender_cap_cents, "usage": tokens_of_one}
            results["meta"]["real_request"]["standin_usage"] = tokens_of_one
            results["meta"]["real_request"]["cost_micros_at_list"] = per_request
            results["meta"]["real_request"]["pacing"] = {"deltas": realtraffic.DELTAS, "gap_ms": realtraffic.GAP_MS}
        prepared = spend.prepare_gateway(config_path, users, SPENDER, spender_cap_cents=spender_cap_cents)
        results["meta"]["spend_enforcement"] = prepared["enforcement"]
        tokens = prepared["tokens"]

    cold: dict[str, Any] = {"gateway": {}, "peer": {}}
    targets = [Target("direct", upstream_url, [standin.API_KEY], auth="x-api-key")]
    with stage("starting our gateway (cold start: spawn to first 200 on /v1/messages)"):
        gw = target.start(
            config_path,
            port,
            threads,
            run.log_dir,
            switch_interval_s=args.switch_interval,
            workers=args.workers,
            cpus=args.vcpus,
        )
        run.on_exit(gw.stop)
        try:
            first = scenarios.first_200(
                gw,
                f"http://127.0.0.1:{port}/v1/messages",
                scenarios.body(stream=False, standin=TINY),
                {"authorization": f"Bearer {tokens[0]}", "anthropic-version": "2023-06-01"},
            )
            cold["gateway"]["first_200_s"] = [first]
            targets.append(Target("gateway", f"http://127.0.0.1:{port}", tokens, child=gw))
        except RuntimeError as exc:  # the table says why the gateway column is empty
            results["meta"]["gateway_error"] = str(exc)[-2000:]
            progress(f"our gateway does not serve /v1/messages: {str(exc)[:300]}")
    gateway_up = any(t.name == "gateway" for t in targets)

    peer_info: dict[str, Any] = {"present": False}
    if binary is not None:
        with stage(f"starting the peer ({binary})"):
            try:
                peer_target, peer_info = start_peer(
                    run, pg, binary, upstream_url, oidc_port, users, spender_cap_cents, cpus=args.vcpus
                )
                targets.append(peer_target)
                cold["peer"]["first_200_s"] = [peer_info.pop("first_200_s")]
            except Exception as exc:  # the table says why the peer column is empty
                peer_info = {"present": False, "error": str(exc)[-2000:]}
                progress(f"peer could not run: {exc}")
    results["meta"]["peer"] = peer_info

    with stage("warm-up (200 requests per target)"):
        for t in targets:
            scenarios.load(t, requests=200, concurrency=8, payload=scenarios.body(stream=False, standin=TINY))
        rss = {t.name: t.child.rss_bytes() for t in targets if t.child}
        cold["rss_after_warmup_mb"] = {k: scenarios.mb(v) for k, v in rss.items()}

    for concurrency in (1, 32) if "nonstream" in args.scenarios else ():
        key = f"nonstream_c{concurrency}"
        with stage(f"scenario 1: non-streaming, concurrency {concurrency}, {args.requests} requests per target"):
            figures: dict[str, Any] = {}
            profile = None
            for t in targets:
                if args.profile and concurrency == 32 and t.name == "gateway" and t.child:
                    profile = report.start_profile(t.child, RESULTS, key)
                raw = scenarios.load(
                    t,
                    requests=args.requests,
                    concurrency=concurrency,
                    payload=scenarios.body(stream=False, standin=TINY),
                )
                if profile is not None and t.name == "gateway":
                    results.setdefault("profile", {})[key] = report.stop_profile(profile)
                    profile = None
                figures[t.name] = scenarios.nonstream_figures(raw)
                report.samples[key][t.name] = raw["total_ms"]
                progress(f"  {t.name}: {report.brief_nonstream(figures[t.name])}")
            figures["added"] = scenarios.with_added(figures, "latency_ms", ["p50", "p90", "p99"])
            sc[key] = figures

    if "stream" in args.scenarios:
        scenario_2(args, results, targets)
        cold["rss_after_stream_mb"] = {t.name: scenarios.mb(t.child.rss_bytes()) for t in targets if t.child}

    if real is not None and "real" in args.scenarios:
        counts = ", ".join(f"c={c}: {n}" for c, n in realtraffic.REQUESTS.items())
        with stage(
            f"real traffic: the CLI's request streamed, {realtraffic.DELTAS} deltas {realtraffic.GAP_MS:g} ms apart"
            f" ({counts} requests per target)"
        ):
            sc["real"] = real_traffic(args, results, targets, real)
            cold["rss_after_real_mb"] = {t.name: scenarios.mb(t.child.rss_bytes()) for t in targets if t.child}
            cold["pss_after_real_mb"] = {t.name: scenarios.mb(t.child.pss_bytes()) for t in targets if t.child}
        if args.attribute and gateway_up:
            with stage("attribution: the real request at c=32 through a probed gateway (bench.probe)"):
                results["attribution"] = attribute(args, run, config_path, threads, tokens, real)

    with stage("scenario 3: cold start (2 more fresh gateway processes) and import times"):
        cold_runs = "cold" in args.scenarios
        for _ in range(2 if gateway_up and cold_runs else 0):
            extra_port = procs.free_port()
            fresh = target.start(
                config_path,
                extra_port,
                threads,
                run.log_dir,
                name="gateway-cold",
                switch_interval_s=args.switch_interval,
                workers=args.workers,
                cpus=args.vcpus,
            )
            try:
                cold["gateway"]["first_200_s"].append(
                    scenarios.first_200(
                        fresh,
                        f"http://127.0.0.1:{extra_port}/v1/messages",
                        scenarios.body(stream=False, standin=TINY),
                        {"authorization": f"Bearer {tokens[1]}", "anthropic-version": "2023-06-01"},
                    )
                )
            finally:
                fresh.stop()
        for side in ("gateway", "peer"):
            values = cold[side].get("first_200_s")
            if values:
                cold[side]["first_200_s_median"] = stats.percentile(values, 50)
        if cold_runs:
            cold["import_ms"] = {name: scenarios.import_ms(name) for name in ("auth", "messages", "admin")}
            cold["heaviest_imports_messages"] = scenarios.heaviest_imports("messages")
        sc["cold_start"] = cold
        progress(
            f"  gateway first 200: {[round(v, 2) for v in cold['gateway'].get('first_200_s', [])]} s; imports {report.brief_imports(cold.get('import_ms', {}))}"
        )

    if "spend" in args.scenarios:
        if real is not None and real_cost is not None:
            with stage(
                f"scenario 4: spend under concurrency, the real request ({SPEND_CONCURRENCY} at once,"
                f" ~{realtraffic.SPEND_HEADROOM} requests of headroom)"
            ):
                burst = spend.scenario(
                    targets,
                    upstream_url,
                    prepared,
                    peer_info,
                    payload=realtraffic.payload(real),
                    concurrency=SPEND_CONCURRENCY,
                    cents_per_request=round(real_cost["per_request_micros"] / 10_000),  # replaced just below
                    headroom_requests=realtraffic.SPEND_HEADROOM,
                    headers=realtraffic.headers(real),
                    query=realtraffic.query(real),
                )
                sc["spend"] = realtraffic.spend_figures(burst, real_cost["per_request_micros"], real_cost["cap_cents"])
                progress(f"  {report.brief_spend(sc['spend'])}")
        else:
            with stage(
                f"scenario 4: spend under concurrency ({SPEND_CONCURRENCY} at once, {HEADROOM_REQUESTS} requests of headroom)"
            ):
                sc["spend"] = spend.scenario(
                    targets,
                    upstream_url,
                    prepared,
                    peer_info,
                    # a prompt of ~2000 tokens and max_tokens = the output, as a real client's request would be
                    payload=scenarios.body(stream=False, standin=PRICED, max_tokens=1600, prompt_bytes=8000),
                    concurrency=SPEND_CONCURRENCY,
                    cents_per_request=CENTS_PER_PRICED_REQUEST,
                    headroom_requests=HEADROOM_REQUESTS,
                )
                progress(f"  {report.brief_spend(sc['spend'])}")

    results["meta"]["collector"] = report.collector_stats(collector_port)
    results["meta"]["standin"] = standin.stats(upstream_url)
    return results


def scenario_2(args: argparse.Namespace, results: dict[str, Any], targets: list[Target]) -> None:
    """Tiny streams: 100 events 10 ms apart, 64 at a time, per target."""
    with stage(f"scenario 2: streaming, 100 events 10 ms apart, 64 concurrent, {args.streams} streams per target"):
        figures: dict[str, Any] = {}
        expected: int | None = None
        for t in targets:
            profile = None
            if args.profile and t.name == "gateway" and t.child:
                profile = report.start_profile(t.child, RESULTS, "stream_c64")
            raw = scenarios.load(
                t, requests=args.streams, concurrency=64, payload=scenarios.body(stream=True, standin=STREAM)
            )
            if profile is not None:
                results.setdefault("profile", {})["stream_c64"] = report.stop_profile(profile)
            if t.name == "direct":
                expected = scenarios.expected_event_count(raw)
            figures[t.name] = scenarios.stream_figures(raw, expected)
            report.samples["stream_ttfb"][t.name] = raw["ttfb_ms"]
            report.samples["stream_gaps"][t.name] = raw["gaps_ms"]
            progress(f"  {t.name}: {report.brief_stream(figures[t.name])}")
        added: dict[str, Any] = {}
        for name in figures:
            if name != "direct" and "direct" in figures:
                added[name] = {
                    "ttfb_p50": figures[name]["ttfb_ms"]["p50"] - figures["direct"]["ttfb_ms"]["p50"],
                    "ttfb_p99": figures[name]["ttfb_ms"]["p99"] - figures["direct"]["ttfb_ms"]["p99"],
                    "gap_p99": figures[name]["gap_ms"]["p99"] - figures["direct"]["gap_ms"]["p99"],
                }
        figures["added"] = added
        results["scenarios"]["stream_c64"] = figures


def attribute(
    args: argparse.Namespace,
    run: Run,
    config_path: Path,
    threads: int,
    tokens: list[str],
    real: capture.CapturedRequest,
) -> dict[str, Any]:
    """Thread CPU per function of the path (`bench.probe`) over the real request at c=32."""
    ctl = run.log_dir / "probe-ctl"
    port = procs.free_port()
    child = target.start(
        config_path,
        port,
        threads,
        run.log_dir,
        name="gateway-probed",
        workers=args.workers,
        cpus=args.vcpus,
        probe_ctl=ctl,
    )
    try:
        probed = Target("gateway-probed", f"http://127.0.0.1:{port}", tokens, child=child)
        procs.wait_http(child, f"http://127.0.0.1:{port}/healthz")
        payload, headers, query = realtraffic.payload(real), realtraffic.headers(real), realtraffic.query(real)
        scenarios.load(
            probed, requests=realtraffic.WARMUP, concurrency=8, payload=payload, headers=headers, query=query
        )
        ctl.write_text("reset")
        time.sleep(0.3)  # the watcher polls every 50 ms
        requests = realtraffic.REQUESTS[32]
        raw = scenarios.load(
            probed,
            requests=requests,
            concurrency=32,
            payload=payload,
            tokens=realtraffic.developers(tokens, 32),
            headers=headers,
            query=query,
        )
        out = run.log_dir / "probe"
        ctl.write_text(f"dump {out}")
        time.sleep(0.5)
        dumps = [json.loads(p.read_text()) for p in run.log_dir.glob("probe.*.json")]
    finally:
        child.stop()
    figures = probe.table(dumps, raw["count"])
    figures["tree_cpu_ms_per_request"] = round(raw.get("cpu_s", 0.0) * 1000 / max(raw["count"], 1), 3)
    progress(f"  probed: {figures['process_cpu_ms_per_request']} CPU-ms per request in the worker")
    return figures


def real_traffic(
    args: argparse.Namespace, results: dict[str, Any], targets: list[Target], real: capture.CapturedRequest
) -> dict[str, Any]:
    """The headline: the captured request, streamed, at c=1, c=32 and 64 streams, per target."""
    payload, headers, query = realtraffic.payload(real), realtraffic.headers(real), realtraffic.query(real)
    for t in targets:  # connections open, the path warm, for every target alike
        scenarios.load(t, requests=realtraffic.WARMUP, concurrency=8, payload=payload, headers=headers, query=query)
    out: dict[str, Any] = {}
    for concurrency, requests in realtraffic.REQUESTS.items():
        rounds = realtraffic.ROUNDS.get(concurrency, 1)
        runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
        for _ in range(rounds):  # the targets alternate, so they share the machine's busy moments
            for t in targets:
                profile = None
                if args.profile and concurrency == 32 and t.name == "gateway" and t.child:
                    profile = report.start_profile(t.child, RESULTS, f"real_c{concurrency}")
                raw = scenarios.load(
                    t,
                    requests=requests // rounds,
                    concurrency=concurrency,
                    payload=payload,
                    tokens=realtraffic.developers(t.tokens, concurrency),
                    headers=headers,
                    query=query,
                )
                if profile is not None:  # the last round's profile is kept
                    results.setdefault("profile", {})[f"real_c{concurrency}"] = report.stop_profile(profile)
                runs[t.name].append(raw)
        figures: dict[str, Any] = {}
        expected: int | None = None
        for t in targets:
            raw = realtraffic.merge_raw(runs[t.name])
            if t.name == "direct":
                expected = scenarios.expected_event_count(raw)
            figures[t.name] = realtraffic.figures(raw, expected)
            progress(f"  c={concurrency} {t.name}: {report.brief_real(figures[t.name])}")
        figures["added"] = realtraffic.added(figures)
        out[f"c{concurrency}"] = figures
    return out


def start_peer(
    run: Run,
    pg: Any,
    binary: Path,
    upstream_url: str,
    oidc_port: int,
    users: list[dict[str, Any]],
    spender_cap_cents: int,
    cpus: int | None = None,
) -> tuple[Target, dict[str, Any]]:
    peer_db = pg.create_database("peer")
    peer_port = procs.free_port()
    config_path = peer.write_config(
        run.log_dir,
        port=peer_port,
        database_url=peer_db,
        issuer=f"http://127.0.0.1:{oidc_port}",
        upstream_url=upstream_url,
    )
    base = f"http://127.0.0.1:{peer_port}"
    child = peer.start(binary, config_path, run.log_dir, cpus=cpus)
    run.on_exit(child.stop)
    tokens = [peer.token(u["sub"], u["email"], u["groups"]) for u in users]
    first = scenarios.first_200(
        child,
        f"{base}/v1/messages",
        scenarios.body(stream=False, standin=TINY),
        {"authorization": f"Bearer {tokens[0]}", "anthropic-version": "2023-06-01"},
    )
    caps = spend.prepare_peer(base, users, SPENDER, spender_cap_cents=spender_cap_cents)
    info = {
        "present": True,
        "binary": str(binary),
        "version": peer.version(binary),
        "first_200_s": first,
        "caps": caps,
        "spender_token": peer.token(SPENDER["sub"], SPENDER["email"], SPENDER["groups"]),
    }
    return Target("peer", base, tokens, child=child), info


if __name__ == "__main__":
    raise SystemExit(main())
