"""The ``qcpulse`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

from qcpulse.progress import Advance, progress_bar
from shared.settings import Settings

Command = Callable[[argparse.Namespace], int]


def _settings() -> Settings:
    return Settings()


def default_workers(database_url: str) -> int:
    """API processes for ``serve`` when ``--workers`` is not given: one per core up to
    four on PostgreSQL (requests validate and map in parallel; the database takes the
    concurrent writes); two on SQLite, whose single writer leaves the rest of a second
    core for validation outside the write lock (docs/PERFORMANCE.md measures both)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if database_url.startswith("sqlite"):
        return min(cores, 2)
    return max(1, min(cores, 4))


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from qcpulse.app import create_app, prepare
    from shared.logging import configure_logging
    from shared.runtime import Runtime
    from shared.secretbox import SecretKeyError, require_secret_key

    settings = _settings()
    if args.insecure_dev_key:
        settings = settings.model_copy(update={"insecure_dev_key": True})
    try:
        require_secret_key(settings)
    except SecretKeyError as exc:
        print(f"qcpulse serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json=settings.log_json)
    workers = args.workers or default_workers(settings.database_url)
    if workers == 1:
        app = create_app(settings, role=args.role)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
        return 0
    # Several processes: migrate once here, then each worker builds its app from the
    # environment (uvicorn imports it by name) and they elect one to run the
    # background work (shared/election.py).
    runtime = Runtime.from_settings(settings)
    try:
        prepare(runtime)
    finally:
        runtime.close()
    saved = dict(os.environ)
    os.environ["QCPULSE_ELECT_BACKGROUND"] = "true"
    os.environ["QCPULSE_SERVE_ROLE"] = args.role
    if args.insecure_dev_key:
        os.environ["QCPULSE_INSECURE_DEV_KEY"] = "true"
    try:
        uvicorn.run(
            "qcpulse.app:app_from_environment",
            factory=True,
            workers=workers,
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
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
    from services.regions.service import refuse_region_id
    from shared.auth import Role, create_key, ensure_tenant
    from shared.errors import AppError
    from shared.runtime import Runtime

    runtime = Runtime.from_settings(_settings())
    try:
        prepare(runtime)
        with runtime.write() as session:
            refuse_region_id(session, args.tenant)
            timezone = args.timezone or runtime.settings.default_timezone
            ensure_tenant(session, args.tenant, timezone=timezone)
            departments = args.departments.split(",") if args.departments else None
            row, secret = create_key(
                session,
                args.tenant,
                Role(args.role),
                name=args.name,
                departments=departments,
                expires_at=args.expires_at,
            )
    except AppError as exc:
        print(f"qcpulse keys create: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        runtime.close()
    print(secret)
    print(f"# key {row.id}: role {row.role}, tenant {row.tenant_id} (shown once)", file=sys.stderr)
    return 0


def _aware(text: str) -> datetime:
    """An ISO date-time with its UTC offset (``--expires-at``), in the future."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date-time: {text!r}") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give the UTC offset, e.g. 2027-01-01T00:00+08:00")
    if value <= datetime.now(UTC):
        raise argparse.ArgumentTypeError("must be in the future")
    return value.astimezone(UTC)


def cmd_secret_key(args: argparse.Namespace) -> int:
    from shared.secretbox import new_key

    print(new_key())
    return 0


def cmd_rotate_secrets(args: argparse.Namespace) -> int:
    from qcpulse.app import prepare
    from services.alerts import reseal_all
    from shared.runtime import Runtime
    from shared.secretbox import SecretKeyError, secret_box

    settings = _settings()
    if not settings.secret_key:
        print(
            "qcpulse rotate-secrets: QCPULSE_SECRET_KEY is not set: there is no key to "
            "seal with (`qcpulse secret-key` prints a new one)",
            file=sys.stderr,
        )
        return 2
    try:
        box = secret_box(settings)
    except SecretKeyError as exc:
        print(f"qcpulse rotate-secrets: {exc}", file=sys.stderr)
        return 2
    runtime = Runtime.from_settings(settings)
    prepare(runtime)
    report = reseal_all(runtime)
    runtime.close()
    print(
        f"rotate-secrets: {report.rows} subscription secret(s), {report.resealed} re-sealed "
        f"with key {box.current_id}, {len(report.failed)} could not be opened"
    )
    for sub_id in report.failed:
        print(
            f"  {sub_id}: sealed with a key that is not configured "
            "(add it to QCPULSE_SECRET_KEY_PREVIOUS)",
            file=sys.stderr,
        )
    return 1 if report.failed else 0


def _progress(label: str) -> AbstractContextManager[Advance]:
    """A progress bar on a terminal; silent in CI and pipes."""
    return progress_bar(label)


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset")
    return moment


def cmd_verify(args: argparse.Namespace) -> int:
    from qcpulse.app import prepare
    from services.indicators import verify
    from shared.clock import FrozenClock
    from shared.runtime import Runtime

    clock = FrozenClock(args.at) if args.at is not None else None
    runtime = Runtime.from_settings(_settings(), clock=clock)
    prepare(runtime)
    with _progress("verifying episodes") as advance:
        report = verify(runtime, progress=advance)
    runtime.close()
    for line in report.differences:
        print(line)
    state = "OK" if report.ok else f"{len(report.differences)} difference(s)"
    print(
        f"verify: {report.tenants} tenant(s), {report.episodes} episode(s), "
        f"{report.cases} case(s): {state}"
    )
    return 0 if report.ok else 1


def cmd_recompute(args: argparse.Namespace) -> int:
    from qcpulse.app import prepare
    from services.indicators import recompute
    from shared.runtime import Runtime

    runtime = Runtime.from_settings(_settings())
    prepare(runtime)
    with _progress("recomputing episodes") as advance:
        cases = recompute(runtime, tenant=args.tenant, progress=advance)
    runtime.close()
    print(f"recompute: {cases} case(s) rebuilt from the stored resources")
    return 0


def cmd_hl7_replay(args: argparse.Namespace) -> int:
    from collections import Counter

    from qcpulse.app import prepare
    from services.hl7v2 import replay
    from shared.runtime import Runtime

    runtime = Runtime.from_settings(_settings())
    prepare(runtime)
    changes: Counter[tuple[str, str]] = Counter()
    with _progress("replaying HL7 v2 messages") as advance:
        for done in replay(runtime, tenant_id=args.tenant, status=args.status, ids=args.id):
            changes[(done.before, done.after)] += 1
            advance(changes.total(), 0)
    runtime.close()
    total = sum(changes.values())
    detail = ", ".join(f"{n} {a}→{b}" for (a, b), n in sorted(changes.items()))
    print(f"hl7 replay: {total} message(s) applied again" + (f" ({detail})" if detail else ""))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from qcpulse.demo import DemoOptions, run

    return run(
        DemoOptions(
            host=args.host,
            port=args.port,
            speed=args.speed,
            hospital_size=args.hospital_size,
            seed=args.seed,
            backfill_hours=args.backfill_hours,
            db=args.db,
            quiet=args.quiet,
            mllp_port=args.mllp_port,
        )
    )


def cmd_synth(args: argparse.Namespace) -> int:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from qcpulse.synth import HospitalConfig, generate, write_ndjson

    start = (
        datetime.fromisoformat(args.start)
        if args.start
        else datetime(2026, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    )
    if start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    config = HospitalConfig.for_episodes(args.episodes, args.days, tenant=args.tenant)
    sends = generate(config, start=start, days=args.days, seed=args.seed)
    count = write_ndjson(sends, args.out, progress=not args.quiet)
    print(f"synth: {count} bundle(s) written to {args.out}", file=sys.stderr)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from qcpulse.loader import Poster, load
    from qcpulse.synth import read_ndjson

    poster = Poster(args.url, args.key)
    with _progress("posting bundles") as advance:
        stats = load(
            poster,
            (s.bundle for s in read_ndjson(args.file)),
            concurrency=args.concurrency,
            on_progress=lambda n: advance(n, 0),
        )
    poster.close()
    print(
        f"load: {stats.bundles} bundle(s), {stats.resources} resource(s) in {stats.seconds:.1f} s "
        f"({stats.resources_per_second:.0f} resources/s), {stats.failed} failed"
    )
    for error in stats.errors:
        print(f"  {error}", file=sys.stderr)
    return 0 if stats.failed == 0 else 1


def cmd_import(args: argparse.Namespace) -> int:
    from services.ingest.bulk import cmd_import as run_import

    return run_import(args)


def cmd_region(args: argparse.Namespace) -> int:
    from services.regions.cli import run

    return run(args)


def cmd_region_submission_key(args: argparse.Namespace) -> int:
    from services.regions.federation import cmd_submission_key

    return cmd_submission_key(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.cli import main as bench_main

    return bench_main(args.bench_args)


def _bench_argv(argv: Sequence[str] | None) -> list[str] | None:
    """``qcpulse bench …`` forwards everything after ``bench`` (options included)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return args[1:] if args[:1] == ["bench"] else None


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
        "--role",
        choices=["all", "ingest", "indicators", "alerts"],
        default="all",
        help="all: everything in one process (default); otherwise one service of the "
        "distributed mode (PostgreSQL + NATS)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="API processes (default: one per core up to 4 on PostgreSQL, 2 on SQLite); "
        "one of them runs the background work",
    )
    serve.add_argument(
        "--insecure-dev-key",
        action="store_true",
        help="run without QCPULSE_SECRET_KEY, sealing webhook secrets with the public "
        "development key (development only)",
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
    create.add_argument(
        "--expires-at",
        type=_aware,
        help="ISO date-time with offset from which the key answers 401 (default: never)",
    )
    create.set_defaults(func=cmd_keys_create)

    secret_key = sub.add_parser("secret-key", help="print a new random QCPULSE_SECRET_KEY")
    secret_key.set_defaults(func=cmd_secret_key)

    rotate = sub.add_parser(
        "rotate-secrets",
        help="re-seal every webhook secret with QCPULSE_SECRET_KEY (old keys in "
        "QCPULSE_SECRET_KEY_PREVIOUS); exit 1 if one could not be opened",
    )
    rotate.set_defaults(func=cmd_rotate_secrets)

    demo = sub.add_parser("demo", help="embedded server + simulated hospital + webhook sink")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulated minutes per real second × 60 (default 60: one minute a second)",
    )
    demo.add_argument("--hospital-size", choices=["small", "medium", "large"], default="medium")
    demo.add_argument("--seed", type=int, default=2026)
    demo.add_argument(
        "--backfill-hours", type=float, default=8.0, help="simulated hours of backlog sent at start"
    )
    demo.add_argument("--db", type=Path, help="SQLite file to keep (default: a temporary file)")
    demo.add_argument("--quiet", action="store_true", help="do not print alerts")
    demo.add_argument(
        "--mllp-port",
        type=int,
        default=2575,
        help="HL7 v2 MLLP listener; part of the feed arrives through it (0: any free port)",
    )
    demo.set_defaults(func=cmd_demo)

    hl7 = sub.add_parser("hl7", help="HL7 v2 message log")
    hl7_sub = hl7.add_subparsers(dest="hl7_command", required=True)
    replay = hl7_sub.add_parser(
        "replay", help="apply stored v2 messages again through the current mapping"
    )
    replay.add_argument("--tenant", help="only this tenant's messages (default: all)")
    replay.add_argument("--status", choices=["AA", "AE", "AR"], help="only messages answered so")
    replay.add_argument("--id", type=int, action="append", help="only this message (repeatable)")
    replay.set_defaults(func=cmd_hl7_replay)

    synth = sub.add_parser("synth", help="write synthetic FHIR bundles as ndjson")
    synth.add_argument("--episodes", type=int, default=1000)
    synth.add_argument("--days", type=float, default=30.0)
    synth.add_argument("--seed", type=int, default=1)
    synth.add_argument("--tenant", default="H0001")
    synth.add_argument("--start", help="ISO start time (default 2026-01-01T00:00+08:00)")
    synth.add_argument("--out", required=True, help="output .ndjson file")
    synth.add_argument("--quiet", action="store_true")
    synth.set_defaults(func=cmd_synth)

    load_cmd = sub.add_parser("load", help="post an ndjson file of bundles to a running server")
    load_cmd.add_argument("file")
    load_cmd.add_argument("--url", default="http://127.0.0.1:8000")
    load_cmd.add_argument("--key", required=True, help="an ingest (or admin) key")
    load_cmd.add_argument("--concurrency", type=int, default=4)
    load_cmd.set_defaults(func=cmd_load)

    import_cmd = sub.add_parser(
        "import",
        help="bulk-import ndjson (or .ndjson.gz) files of resources, as POST /fhir/$import "
        "(exit 1 if any line failed)",
    )
    import_cmd.add_argument("files", nargs="*", metavar="FILE")
    import_cmd.add_argument("--tenant", help="the tenant the resources belong to")
    import_cmd.add_argument(
        "--resume", action="store_true", help="first finish unfinished jobs (of --tenant, or all)"
    )
    import_cmd.set_defaults(func=cmd_import)

    region = sub.add_parser("region", help="regions (quality-control centres)")
    region_sub = region.add_subparsers(dest="region_command", required=True)
    submission_key = region_sub.add_parser(
        "submission-key",
        help="create the key a federated member submits its MeasureReports with "
        "(docs/FEDERATION.md) and print it (shown once)",
    )
    submission_key.add_argument("region", help="the region's id")
    submission_key.add_argument("member", help="the member's id in the region (a federated one)")
    submission_key.add_argument("--name", default="")
    submission_key.set_defaults(func=cmd_region_submission_key)
    # qcpulse region create|add-member|key (services/regions/cli.py), beside submission-key
    region_create = region_sub.add_parser("create", help="create a region")
    region_create.add_argument("region", help="region id (never a tenant's id)")
    region_create.add_argument("--name", required=True)
    region_create.add_argument("--target-profile", help="see GET /api/v1/target-profiles")
    region_create.add_argument("--timezone", help="the region's time zone (default Asia/Shanghai)")
    region_create.set_defaults(func=cmd_region)
    region_member = region_sub.add_parser("add-member", help="add a hospital to a region")
    region_member.add_argument("region")
    region_member.add_argument("member", help="the member's id within the region")
    region_member.add_argument("--name", required=True)
    region_member.add_argument("--tenant", help="its tenant on this instance; omit if federated")
    region_member.set_defaults(func=cmd_region)
    region_key = region_sub.add_parser("key", help="create a region key, print it (shown once)")
    region_key.add_argument("region")
    region_key.add_argument("--role", required=True, choices=["region-reader"])
    region_key.add_argument("--name", default="")
    region_key.add_argument("--expires-at", type=_aware, help="as for keys create")
    region_key.set_defaults(func=cmd_region)

    verify = sub.add_parser(
        "verify", help="check that the running counters equal a full recomputation (exit 1 if not)"
    )
    verify.add_argument(
        "--at",
        type=_instant,
        help="decide as of this instant (ISO 8601 with offset), e.g. the clinical clock "
        "a `qcpulse demo` stopped at; default: now",
    )
    verify.set_defaults(func=cmd_verify)

    recompute = sub.add_parser(
        "recompute", help="rebuild cases and counters from the stored resources"
    )
    recompute.add_argument("--tenant", help="only this tenant (default: all)")
    recompute.set_defaults(func=cmd_recompute)

    bench = sub.add_parser(
        "bench", help="run the benchmarks (same as python -m bench)", add_help=False
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if (bench_args := _bench_argv(argv)) is not None:
        return cmd_bench(argparse.Namespace(bench_args=bench_args))
    args = build_parser().parse_args(argv)
    func: Command = args.func
    return func(args)
