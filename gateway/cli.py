"""`python -m gateway <command>`: the operator's and developer's commands.

Each command lives in the module of its concern; this file only parses
arguments and dispatches.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ensure_path() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def cmd_check(args: argparse.Namespace) -> int:
    from common import config

    location = args.config or config.config_location()
    try:
        if config.is_secret_name(location):
            loaded = config.load(location)
        else:
            text = Path(location).read_text(encoding="utf-8")
            loaded = config.parse(text, location)
    except config.ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot read {location}: {exc.strerror}", file=sys.stderr)
        return 1
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    cfg = loaded.config
    print(
        f"{location}: OK ({len(cfg.upstreams)} upstream(s), {len(cfg.models)} model(s), "
        f"{len(cfg.managed.policies)} policy(ies), {len(loaded.warnings)} warning(s))"
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from common import config
    from common.db import migrations
    from common.db import pool as store

    if args.config:
        config.use(args.config)
    os.environ["GATEWAY_MIGRATE"] = "0"
    applied = migrations.migrate(store.get())
    print("applied: " + (", ".join(applied) if applied else "nothing (schema up to date)"))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from common import config
    from common.auth import sessions

    if args.config:
        config.use(args.config)
    elif "GATEWAY_CONFIG" not in os.environ:
        # The configuration `make run` uses, with its persistent local key; the
        # addresses of the stand-ins do not matter for signing a token.
        from gateway.run import local_environment, running

        live = running()  # mint for the origin the local gateway really serves
        port = int(os.environ.get("PORT") or str(live["port"] if live else 8080))
        unused = "http://127.0.0.1:9"
        for key, value in local_environment(port, "postgresql://postgres@127.0.0.1:9/unused", unused, unused).items():
            os.environ.setdefault(key, value)
    cfg = config.current()
    if not cfg.is_local:
        print(
            "refusing: `token` mints sessions only for a local configuration "
            "(local.enabled: true and a loopback listen.public_url)",
            file=sys.stderr,
        )
        return 2
    groups = [g.strip() for g in (args.groups or "").split(",") if g.strip()]
    token, _ = sessions.issue(
        cfg, sub=args.sub or args.email, email=args.email, groups=groups, ttl_seconds=int(args.ttl_hours * 3600)
    )
    print(token)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    import json

    from common import config, policy

    if args.config:
        config.use(args.config)
    try:
        cfg = config.current()
    except config.ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    groups = [g.strip() for g in (args.groups or "").split(",") if g.strip()]
    print(json.dumps(policy.explain(cfg, args.email, groups), indent=2, default=str))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from gateway import run

    return run.main(port=args.port, fresh=args.fresh)


def cmd_paths(args: argparse.Namespace) -> int:
    from gateway import packaging

    if args.check:
        current = packaging.TFVARS.read_text(encoding="utf-8") if packaging.TFVARS.exists() else ""
        if current != packaging.terraform_paths():
            print(f"{packaging.TFVARS.relative_to(ROOT)} is stale; run `python -m gateway paths`", file=sys.stderr)
            return 1
        print(f"{packaging.TFVARS.relative_to(ROOT)} matches common/paths.py")
        return 0
    changed = packaging.write_terraform_paths()
    print(f"{packaging.TFVARS.relative_to(ROOT)} {'written' if changed else 'unchanged'}")
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from gateway import packaging

    for archive in packaging.package(Path(args.out)):
        print(f"{archive} ({archive.stat().st_size} bytes)")
    return 0


def cmd_onboard(args: argparse.Namespace) -> int:
    from gateway import internal_networks, onboard

    try:
        url: str | None = args.url
        addresses: list[str] = list(args.gateway_address or [])
        if args.terraform_output:
            tf_url, external_ip = onboard.read_terraform_output(args.terraform_output)
            url = url or tf_url
            if external_ip:
                addresses.append(external_ip)
        if not url:
            raise onboard.OnboardError("give --url (the gateway's origin) or --terraform-output FILE")
        networks = onboard.external_networks(addresses, args.developer_network or []) if addresses else []
        if args.format == "mobileconfig":
            sys.stdout.buffer.write(onboard.mobileconfig(url, args.organization, networks))
        else:
            sys.stdout.write(onboard.settings_json(url, networks))
        if networks:
            host = onboard.gateway_origin(url).split("://", 1)[1]
            print(
                f"gatewayInternalNetworks {networks}: developers must sign in from a machine whose own address is "
                f"inside it, straight to the gateway: list {host} in NO_PROXY where an HTTP proxy is set.",
                file=sys.stderr,
            )
    except (onboard.OnboardError, internal_networks.NetworksError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from gateway import fingerprint

    try:
        der = fingerprint.fingerprint_file(args.cert) if args.cert else fingerprint.leaf_from_server(args.url)
    except fingerprint.FingerprintError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    sys.stdout.write(fingerprint.report(der))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway import serve

    return serve.main(host=args.host, port=args.port)


def cmd_spend_replay(args: argparse.Namespace) -> int:
    from gateway import spend_replay

    return spend_replay.main(args.file, args.config)


def cmd_catalog(args: argparse.Namespace) -> int:
    from gateway import catalog

    return catalog.refresh(Path(args.source), version=args.version, check=args.check)


def cmd_seed(args: argparse.Namespace) -> int:
    from common import config
    from gateway import seed

    if args.config:
        config.use(args.config)
    return seed.main(
        users=args.users, days=args.days, per_day=args.per_day, audit_per_day=args.audit_per_day, append=args.append
    )


def cmd_retention(args: argparse.Namespace) -> int:
    import json

    from common import config
    from common.admin import retention

    if args.config:
        config.use(args.config)
    outcome = retention.sweep(config.current())
    if outcome.skipped:
        print("another instance is sweeping (advisory lock held); nothing done")
        return 0
    print(
        json.dumps(
            {"complete": outcome.complete, "seconds": round(outcome.seconds, 3), "deleted": outcome.deleted},
            sort_keys=True,
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Claude apps gateway commands")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate gateway.yaml without starting anything")
    p.add_argument("config", nargs="?", help="path or projects/P/secrets/S/versions/V (default $GATEWAY_CONFIG)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("migrate", help="apply pending database migrations")
    p.add_argument("--config")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("token", help="print a session token (local configurations only)")
    p.add_argument("--email", required=True)
    p.add_argument("--groups", default="")
    p.add_argument("--sub")
    p.add_argument("--ttl-hours", type=float, default=12.0)
    p.add_argument("--config")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("explain", help="show the effective policy (models, tools, settings) of a user")
    p.add_argument("--email", required=True)
    p.add_argument("--groups", default="", help="comma-separated groups, as the IdP reports them")
    p.add_argument("--config")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("run", help="start the whole gateway locally (embedded Postgres, stand-ins)")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    p.add_argument("--fresh", action="store_true", help="start from an empty local database")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("paths", help="write terraform/paths.auto.tfvars.json from common/paths.py")
    p.add_argument("--check", action="store_true", help="only check the committed file is current")
    p.set_defaults(func=cmd_paths)

    p = sub.add_parser("package", help="build one source zip per function (main.py + common/ + requirements.txt)")
    p.add_argument("--out", default="dist", help="output directory (default dist/)")
    p.set_defaults(func=cmd_package)

    p = sub.add_parser("onboard", help="print the managed settings that send developers' Claude Code to the gateway")
    p.add_argument("--url", help="the gateway's origin, e.g. https://claude-gw.corp.example.com")
    p.add_argument(
        "--terraform-output",
        metavar="FILE",
        help="`terraform output -json` saved to FILE: gives gateway_url and, external mode, external_ip",
    )
    p.add_argument(
        "--gateway-address",
        action="append",
        metavar="IP",
        help="external mode: the load balancer's public IPv4 address (terraform output external_ip); repeatable",
    )
    p.add_argument(
        "--developer-network",
        action="append",
        metavar="CIDR",
        help="external mode: the public block developer machines' own addresses are in; repeatable",
    )
    p.add_argument("--format", choices=["json", "mobileconfig"], default="json")
    p.add_argument("--organization", default="Claude apps gateway", help="macOS profile organization name")
    p.set_defaults(func=cmd_onboard)

    p = sub.add_parser(
        "fingerprint", help="print the SHA-256 of the gateway's TLS leaf certificate, as Claude Code pins it"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--url", help="read the certificate the gateway presents, e.g. https://claude-gw.corp.example.com"
    )
    source.add_argument("--cert", metavar="FILE", help="a PEM certificate (chain, leaf first), e.g. before a rotation")
    p.set_defaults(func=cmd_fingerprint)

    p = sub.add_parser("serve", help="serve all three functions on one origin (containers, GKE)")
    p.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("catalog", help="the model catalogue (common/core/catalog.json)")
    catalog_sub = p.add_subparsers(dest="catalog_command", required=True)
    p = catalog_sub.add_parser("refresh", help="rewrite it from the model catalogue a Claude Code release ships")
    p.add_argument("--from", dest="source", required=True, help="Claude Code's catalogue JSON")
    p.add_argument("--version", help="the Claude Code version (default: from the file name)")
    p.add_argument("--check", action="store_true", help="only check the committed file is what the source gives")
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser("spend", help="the spend ledger")
    spend_sub = p.add_subparsers(dest="spend_command", required=True)
    p = spend_sub.add_parser(
        "replay", help="apply the settles logged as spend.unsettled (idempotent: a settle counts once)"
    )
    p.add_argument("file", help="log lines (JSON per line) or a Cloud Logging export (entries with jsonPayload)")
    p.add_argument("--config")
    p.set_defaults(func=cmd_spend_replay)

    p = sub.add_parser("seed", help="fill the database with a synthetic history for measurement")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--per-day", type=int, default=200, help="requests per developer per day (default 200)")
    p.add_argument("--audit-per-day", type=int, default=8000, help="audit events per day (default 8000)")
    p.add_argument("--append", action="store_true", help="add to a database that already holds usage")
    p.add_argument("--config")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("retention", help="storage retention (retention: in gateway.yaml)")
    retention_sub = p.add_subparsers(dest="retention_command", required=True)
    p = retention_sub.add_parser("sweep", help="delete what retention says is too old, in bounded batches")
    p.add_argument("--config")
    p.set_defaults(func=cmd_retention)

    return parser


def main(argv: list[str] | None = None) -> int:
    _ensure_path()
    args = build_parser().parse_args(argv)
    return int(args.func(args))
