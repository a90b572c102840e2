"""API keys, roles and tenancy.

A key is ``qcp_`` + 43 url-safe characters (256 random bits). Only its SHA-256 is
stored; the key itself is shown once. Every key belongs to one tenant.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.errors import ForbiddenError, UnauthorizedError
from shared.models import ApiKey, Tenant


class Role(enum.StrEnum):
    INGEST = "ingest"
    READER = "reader"
    ADMIN = "admin"


#: What each role may do. ``fhir:write`` is posting data; ``api:read`` the indicator
#: and alert API; ``admin`` keys, subscriptions, targets and code maps.
PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.INGEST: frozenset({"fhir:write", "fhir:read"}),
    Role.READER: frozenset({"fhir:read", "api:read"}),
    Role.ADMIN: frozenset({"fhir:write", "fhir:read", "api:read", "admin"}),
}

KEY_PREFIX = "qcp_"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    role: Role
    key_id: str
    #: Departments a reader is limited to; None means all.
    departments: frozenset[str] | None = None

    def require(self, permission: str) -> None:
        if permission not in PERMISSIONS[self.role]:
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
    key: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key (or register the given secret) and return the row and the secret."""
    if session.get(Tenant, tenant_id) is None:
        raise ForbiddenError(f"unknown tenant '{tenant_id}'")
    secret = key or new_key()
    row = ApiKey(
        id=secrets.token_hex(8),
        tenant_id=tenant_id,
        role=role.value,
        name=name,
        key_hash=hash_key(secret),
        departments=departments,
    )
    session.add(row)
    session.flush()
    return row, secret


# Every request looks its key up (revocation takes effect at once): one Core
# statement built once, not an ORM entity query.
_KEY_LOOKUP = sa.select(ApiKey.tenant_id, ApiKey.role, ApiKey.id, ApiKey.departments).where(
    ApiKey.key_hash == sa.bindparam("key_hash"), ApiKey.revoked_at.is_(None)
)


def authenticate(session: Session, authorization: str | None) -> Principal:
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
    tenant_id, role, key_id, departments = row
    return Principal(
        tenant_id=tenant_id,
        role=Role(role),
        key_id=key_id,
        departments=frozenset(departments) if departments is not None else None,
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
