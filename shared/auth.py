"""API keys, roles and tenancy.

A key is ``qcp_`` + 43 url-safe characters (256 random bits). Only its SHA-256 is
stored; the key itself is shown once. Every key belongs to one tenant.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.clock import utcnow
from shared.errors import ForbiddenError, UnauthorizedError
from shared.models import ApiKey, Tenant


class Role(enum.StrEnum):
    INGEST = "ingest"
    READER = "reader"
    ADMIN = "admin"
    #: A regional quality-control centre's key: aggregates of its region's members only
    #: (``services/regions``); its ``tenant_id`` is the region's id.
    REGION_READER = "region-reader"


#: What each role may do. ``fhir:write`` is posting data; ``api:read`` the indicator
#: and alert API; ``admin`` keys, subscriptions, targets and code maps; ``manual``
#: entering the monthly values of manual indicators.
PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.INGEST: frozenset({"fhir:write", "fhir:read"}),
    Role.READER: frozenset({"fhir:read", "api:read"}),
    Role.ADMIN: frozenset({"fhir:write", "fhir:read", "api:read", "admin", "manual"}),
    # No tenant permission: every tenant route answers 403 to a region key.
    Role.REGION_READER: frozenset({"region:read"}),
}

#: Roles whose key belongs to a region, not to a tenant.
REGION_ROLES = frozenset({Role.REGION_READER})

#: Permissions a key may be granted beyond its role's, and the roles that may hold them.
GRANTABLE: dict[str, frozenset[Role]] = {"manual": frozenset({Role.READER, Role.ADMIN})}

KEY_PREFIX = "qcp_"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    role: Role
    key_id: str
    #: Departments a reader is limited to; None means all.
    departments: frozenset[str] | None = None
    #: Permissions granted to this key beyond its role's (``GRANTABLE``).
    granted: frozenset[str] = frozenset()

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role] or permission in self.granted

    def require(self, permission: str) -> None:
        if not self.may(permission):
            raise ForbiddenError(f"role '{self.role}' may not do '{permission}'")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(
    session: Session,
    tenant_id: str,
    role: Role,
    *,
    name: str = "",
    departments: list[str] | None = None,
    permissions: list[str] | None = None,
    key: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key (or register the given secret) and return the row and the secret.
    ``permissions`` are granted beyond the role's; each must be one the role may hold
    (``GRANTABLE``), else ValueError."""
    if role in REGION_ROLES:
        raise ValueError(f"a '{role}' key belongs to a region: services.regions creates it")
    if session.get(Tenant, tenant_id) is None:
        raise ForbiddenError(f"unknown tenant '{tenant_id}'")
    for permission in permissions or ():
        if role not in GRANTABLE.get(permission, frozenset()):
            raise ValueError(f"a key of role '{role}' cannot be granted '{permission}'")
    secret = key or new_key()
    row = ApiKey(
        id=secrets.token_hex(8),
        tenant_id=tenant_id,
        role=role.value,
        name=name,
        key_hash=hash_key(secret),
        departments=departments,
        permissions=sorted(set(permissions)) if permissions else None,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, secret


# Every request looks its key up (revocation takes effect at once): one Core
# statement built once, not an ORM entity query.
_KEY_LOOKUP = sa.select(
    ApiKey.tenant_id,
    ApiKey.role,
    ApiKey.id,
    ApiKey.departments,
    ApiKey.permissions,
    ApiKey.expires_at,
).where(ApiKey.key_hash == sa.bindparam("key_hash"), ApiKey.revoked_at.is_(None))


def authenticate(
    session: Session, authorization: str | None, *, now: datetime | None = None
) -> Principal:
    """The key's principal. An expired key (``expires_at`` ≤ ``now``: the runtime's
    clock, else the wall clock) is refused like a revoked one."""
    if not authorization:
        raise UnauthorizedError("missing Authorization: Bearer <key>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("Authorization must be 'Bearer <key>'")
    row = (
        session.connection()
        .execute(_KEY_LOOKUP, {"key_hash": hash_key(token.strip())})
        .one_or_none()
    )
    if row is None:
        raise UnauthorizedError("invalid or revoked API key")
    tenant_id, role, key_id, departments, permissions, expires_at = row
    if expires_at is not None and (now or utcnow()) >= expires_at:
        raise UnauthorizedError("API key expired")
    return Principal(
        tenant_id=tenant_id,
        role=Role(role),
        key_id=key_id,
        departments=frozenset(departments) if departments is not None else None,
        granted=frozenset(permissions or ()),
    )


def ensure_tenant(
    session: Session, tenant_id: str, *, name: str | None = None, timezone: str
) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        tenant = Tenant(id=tenant_id, name=name or tenant_id, timezone=timezone)
        session.add(tenant)
        session.flush()
    return tenant


def bootstrap(session: Session, tenant_id: str, admin_key: str, *, timezone: str) -> None:
    """Create the tenant and its admin key if absent. Idempotent: runs on every start."""
    ensure_tenant(session, tenant_id, timezone=timezone)
    existing = session.scalar(sa.select(ApiKey).where(ApiKey.key_hash == hash_key(admin_key)))
    if existing is None:
        create_key(session, tenant_id, Role.ADMIN, name="bootstrap admin", key=admin_key)
    elif existing.tenant_id != tenant_id or existing.role != Role.ADMIN.value:
        raise ValueError("QCPULSE_BOOTSTRAP_ADMIN_KEY is already used by another tenant or role")
