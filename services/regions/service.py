"""Regions as data: creating regions, their members and their keys (the instance
operator, through ``qcpulse region …``), and reading them (the region's own keys).

Services only flush; the caller owns the transaction.
"""

from __future__ import annotations

import re
import secrets
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.regions.models import Region, RegionMember
from shared.auth import REGION_ROLES, Principal, Role, hash_key, new_key
from shared.errors import ConflictError, NotFoundError, UnprocessableError
from shared.models import ApiKey, Tenant

#: Region and member ids: what tenant ids look like in practice (``H0001``, ``TJ-HX``).
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _check_id(what: str, value: str) -> str:
    if not ID_PATTERN.match(value):
        raise UnprocessableError(
            f"{what} '{value}' must be 1–64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return value


def create_region(
    session: Session,
    region_id: str,
    *,
    name: str,
    timezone: str = "Asia/Shanghai",
    target_profile: str | None = None,
    known_profiles: frozenset[str] | None = None,
) -> Region:
    """A new region. Its id must be no tenant's: a region key carries the region's id
    where a tenant key carries its tenant's (``api_keys.tenant_id``)."""
    _check_id("region id", region_id)
    if not name.strip():
        raise UnprocessableError("a region needs a name")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnprocessableError(f"unknown time zone '{timezone}'") from exc
    if (
        target_profile is not None
        and known_profiles is not None
        and target_profile not in known_profiles
    ):
        known = ", ".join(sorted(known_profiles))
        raise UnprocessableError(f"unknown target profile '{target_profile}' (known: {known})")
    if session.get(Tenant, region_id) is not None:
        raise ConflictError(f"'{region_id}' is a tenant's id; a region needs an id of its own")
    if session.get(Region, region_id) is not None:
        raise ConflictError(f"region '{region_id}' exists")
    region = Region(id=region_id, name=name, timezone=timezone, target_profile=target_profile)
    session.add(region)
    session.flush()
    return region


def get_region(session: Session, region_id: str) -> Region:
    region = session.get(Region, region_id)
    if region is None:
        raise NotFoundError(f"no region '{region_id}'")
    return region


def add_member(
    session: Session,
    region_id: str,
    member_id: str,
    *,
    name: str,
    tenant_id: str | None = None,
) -> RegionMember:
    """Add a hospital to a region: a tenant of this instance (``tenant_id``: the region
    reads its counters) or a hospital that submits its figures (federated)."""
    get_region(session, region_id)
    _check_id("member id", member_id)
    if not name.strip():
        raise UnprocessableError("a member needs a name")
    if tenant_id is not None:
        if session.get(Tenant, tenant_id) is None:
            raise NotFoundError(f"no tenant '{tenant_id}' on this instance")
        twice = session.scalar(
            sa.select(RegionMember.member_id).where(
                RegionMember.region_id == region_id, RegionMember.tenant_id == tenant_id
            )
        )
        if twice is not None:
            raise ConflictError(f"tenant '{tenant_id}' is already member '{twice}' of the region")
    if session.get(RegionMember, (region_id, member_id)) is not None:
        raise ConflictError(f"region '{region_id}' already has member '{member_id}'")
    member = RegionMember(region_id=region_id, member_id=member_id, name=name, tenant_id=tenant_id)
    session.add(member)
    session.flush()
    return member


def members(session: Session, region_id: str) -> list[RegionMember]:
    return list(
        session.scalars(
            sa.select(RegionMember)
            .where(RegionMember.region_id == region_id)
            .order_by(RegionMember.member_id)
        )
    )


def refuse_region_id(session: Session, tenant_id: str) -> None:
    """A tenant never takes a region's id: its keys would read as the region's (one
    ``api_keys.tenant_id`` column names both), so ``keys create --tenant`` refuses it."""
    if session.get(Region, tenant_id) is not None:
        raise ConflictError(
            f"'{tenant_id}' is a region's id; a region's keys come from "
            f"'qcpulse region key {tenant_id}'"
        )


def create_region_key(
    session: Session,
    region_id: str,
    role: Role = Role.REGION_READER,
    *,
    name: str = "",
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A key of the region (its secret returned once, only its hash kept)."""
    if role not in REGION_ROLES:
        raise UnprocessableError(f"'{role}' is a tenant role; a region key is region-reader")
    get_region(session, region_id)
    secret = new_key()
    row = ApiKey(
        id=secrets.token_hex(8),
        tenant_id=region_id,
        role=role.value,
        name=name,
        key_hash=hash_key(secret),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, secret


def region_of(session: Session, principal: Principal, region_id: str) -> Region:
    """The region a region key may read: its own. Another region's id answers 404, as
    an unknown one does (existence does not leak)."""
    if principal.role not in REGION_ROLES or principal.tenant_id != region_id:
        raise NotFoundError(f"no region '{region_id}'")
    return get_region(session, region_id)


def region_today(region: Region, now: datetime) -> date:
    return now.astimezone(ZoneInfo(region.timezone)).date()
