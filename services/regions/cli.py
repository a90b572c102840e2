"""``qcpulse region …``: the instance operator creates regions, their members and keys.

Only the operator (a shell on the server) links a tenant of this instance to a region:
it lets the region read that hospital's aggregates, a decision for whoever runs both.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from shared.auth import Role
from shared.errors import AppError
from shared.runtime import Runtime
from shared.settings import Settings


def _run(label: str, work: Callable[[Runtime], int]) -> int:
    from qcpulse.app import prepare

    runtime = Runtime.from_settings(Settings())
    try:
        prepare(runtime)
        return work(runtime)
    except AppError as exc:
        print(f"qcpulse region {label}: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        runtime.close()


def cmd_create(args: argparse.Namespace) -> int:
    from services.indicators import catalogue_for, profiles_for
    from services.regions.service import create_region

    def work(runtime: Runtime) -> int:
        known = profiles_for(catalogue_for(runtime.settings.indicators_dir))
        with runtime.write() as session:
            region = create_region(
                session,
                args.region,
                name=args.name,
                timezone=args.timezone or runtime.settings.default_timezone,
                target_profile=args.target_profile,
                known_profiles=frozenset(known.profiles),
            )
            print(f"region {region.id} ({region.name}) created")
        return 0

    return _run("create", work)


def cmd_add_member(args: argparse.Namespace) -> int:
    from services.regions.service import add_member

    def work(runtime: Runtime) -> int:
        with runtime.write() as session:
            member = add_member(
                session, args.region, args.member, name=args.name, tenant_id=args.tenant
            )
            how = f"tenant {member.tenant_id} of this instance" if member.tenant_id else "federated"
            print(f"member {member.member_id} ({member.name}) added to {args.region}: {how}")
        return 0

    return _run("add-member", work)


def cmd_key(args: argparse.Namespace) -> int:
    from services.regions.service import create_region_key

    def work(runtime: Runtime) -> int:
        with runtime.write() as session:
            row, secret = create_region_key(
                session, args.region, Role(args.role), name=args.name, expires_at=args.expires_at
            )
        print(secret)
        print(
            f"# key {row.id}: role {row.role}, region {row.tenant_id} (shown once)", file=sys.stderr
        )
        return 0

    return _run("key", work)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "create": cmd_create,
    "add-member": cmd_add_member,
    "key": cmd_key,
}


def run(args: argparse.Namespace) -> int:
    """``qcpulse region <command>`` (the parser is ``qcpulse/cli.py``'s)."""
    return COMMANDS[args.region_command](args)
