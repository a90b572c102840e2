"""The ``qcpulse`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from qcpulse.progress import Advance, progress_bar

from shared.settings import Settings

Command = Callable[[argparse.Namespace], int]


def _settings() -> Settings:
    return Settings()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from qcpulse.app import create_app
    from shared.logging import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, json=settings.log_json)
    app = create_app(settings, role=args.role)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from qcpulse import schema
    from shared.db import create_engine_for

    engine = create_engine_for(_settings().database_url)
    schema.migrate(engine)
    print(f"schema at {schema.current_revision(engine)}")
    engine.dispose()
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from qcpulse.app import prepare
    from shared.auth import Role, create_key, ensure_tenant
    from shared.runtime import Runtime

    runtime = Runtime.from_settings(_settings())
    prepare(runtime)
    with runtime.write() as session:
        ensure_tenant(session, args.tenant, timezone=args.timezone or runtime.settings.default_timezone)
        departments = args.departments.split(",") if args.departments else None
        row, secret = create_key(
            session, args.tenant, Role(args.role), name=args.name, departments=departments
        )
    runtime.close()
    print(secret)
    print(f"# key {row.id}: role {row.role}, tenant {row.tenant_id} (shown once)", file=sys.stderr)
    return 0


def _progress(label: str) -> AbstractContextManager[Advance]:
    """A progress bar on a terminal; silent in CI and pipes."""
    return progress_bar(label)


def cmd_verify(args: argparse.Namespace) -> int:
    from qcpulse.app import prepare
    from services.indicators.maintenance import verify
    from shared.runtime import Runtime

    runtime = Runtime.from_settings(_settings())
    prepare(runtime)
    with _progress("verifying episodes") as advance:
        report = verify(runtime, progress=advance)
    runtime.close()
    for line in report.differences:
        print(line)
    state = "OK" if report.ok else f"{len(report.differences)} difference(s)"
    print(f"verify: {report.tenants} tenant(s), {report.episodes} episode(s), "
          f"{report.cases} case(s): {state}")
    return 0 if report.ok else 1


def cmd_recompute(args: argparse.Namespace) -> int:
    from qcpulse.app import prepare
    from services.indicators.maintenance import recompute
    from shared.runtime import Runtime

    runtime = Runtime.from_settings(_settings())
    prepare(runtime)
    with _progress("recomputing episodes") as advance:
        cases = recompute(runtime, tenant=args.tenant, progress=advance)
    runtime.close()
    print(f"recompute: {cases} case(s) rebuilt from the stored resources")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qcpulse",
        description="Live hospital quality indicators (质控指标) and alerts from FHIR R4.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (migrates on start)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--role", choices=["all", "ingest", "indicators", "alerts"], default="all",
        help="all: everything in one process (default); otherwise one service of the "
        "distributed mode (PostgreSQL + NATS)",
    )
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(func=cmd_migrate)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("--tenant", required=True, help="tenant (hospital) id; created if absent")
    create.add_argument("--role", required=True, choices=["ingest", "reader", "admin"])
    create.add_argument("--name", default="")
    create.add_argument("--departments", help="comma-separated departments a reader is limited to")
    create.add_argument("--timezone", help="time zone for a new tenant (default Asia/Shanghai)")
    create.set_defaults(func=cmd_keys_create)

    verify = sub.add_parser(
        "verify", help="check that the running counters equal a full recomputation (exit 1 if not)"
    )
    verify.set_defaults(func=cmd_verify)

    recompute = sub.add_parser("recompute", help="rebuild cases and counters from the stored resources")
    recompute.add_argument("--tenant", help="only this tenant (default: all)")
    recompute.set_defaults(func=cmd_recompute)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Command = args.func
    return func(args)
