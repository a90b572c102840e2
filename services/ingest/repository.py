"""Queries over the resource store, episodes and facts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.ingest.models import EpisodeRow, FactRow, ResourceVersion, StoredResource
from shared.db import advisory_locks

_CHUNK = 500
_T = TypeVar("_T")


def _chunks(items: Sequence[_T]) -> Iterable[Sequence[_T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _key_chunks(keys: Iterable[tuple[str, str]]) -> Iterable[set[tuple[str, str]]]:
    """Distinct (type, id) keys in chunks: one query per chunk, whatever the mix of
    types (a Bundle of 50 entries of ten types is one round trip, not ten)."""
    for chunk in _chunks(sorted(set(keys))):
        yield set(chunk)


def _types_and_ids(tenant_id: str, chunk: set[tuple[str, str]]) -> dict[str, Any]:
    return {
        "tenant": tenant_id,
        "types": sorted({t for t, _ in chunk}),
        "ids": sorted({i for _, i in chunk}),
    }


_R = StoredResource.__table__
_F = FactRow.__table__
_E = EpisodeRow.__table__

# Built once: constructing a statement per call costs more than running it on SQLite.
# Many (type, id) keys in one query: ``type IN (…) AND id IN (…)`` walks the primary key
# on both databases (a row-value ``(type, id) IN (VALUES …)`` does not on SQLite 3.40: it
# scanned all the tenant's rows). It can also match a type with another type's id, so
# the readers below keep only the keys they asked for.
_HEADS = sa.select(
    _R.c.type, _R.c.id, _R.c.version, _R.c.content_hash, _R.c.deleted, _R.c.last_updated
).where(
    _R.c.tenant_id == sa.bindparam("tenant"),
    _R.c.type.in_(sa.bindparam("types", expanding=True)),
    _R.c.id.in_(sa.bindparam("ids", expanding=True)),
)
_BODY = sa.select(_R.c.body).where(
    _R.c.tenant_id == sa.bindparam("tenant"),
    _R.c.type == sa.bindparam("type"),
    _R.c.id == sa.bindparam("id"),
)
_FACT_LINKS = sa.select(
    _F.c.resource_type, _F.c.resource_id, _F.c.encounter_id, _F.c.link_ref
).where(
    _F.c.tenant_id == sa.bindparam("tenant"),
    _F.c.resource_type.in_(sa.bindparam("types", expanding=True)),
    _F.c.resource_id.in_(sa.bindparam("ids", expanding=True)),
)
_LINKED_REFS = (
    sa.select(_F.c.link_ref)
    .where(
        _F.c.tenant_id == sa.bindparam("tenant"),
        _F.c.link_ref.in_(sa.bindparam("refs", expanding=True)),
    )
    .distinct()
)
_EPISODES_IN = sa.select(_E.c.encounter_id).where(
    _E.c.tenant_id == sa.bindparam("tenant"),
    _E.c.encounter_id.in_(sa.bindparam("ids", expanding=True)),
)
# ``unnest`` yields the (sorted) array in order, so the locks are taken in that order.
_LINKED_TO = sa.select(_F.c.resource_type, _F.c.resource_id, _F.c.encounter_id).where(
    _F.c.tenant_id == sa.bindparam("tenant"), _F.c.link_ref == sa.bindparam("ref")
)


def lock_keys(session: Session, tenant_id: str, keys: Iterable[tuple[str, str]]) -> None:
    """Lock each resource (PostgreSQL): Bundles that share resources then queue instead
    of deadlocking on the unique indexes they insert into in entry order."""
    advisory_locks(session, (f"{tenant_id}/{t}/{i}" for t, i in keys))


def current_heads(
    session: Session, tenant_id: str, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str, bool, datetime]]:
    """(version, content_hash, deleted, last_updated) of the current rows for many
    (type, id) keys, one round trip per 500 keys; bodies are not read."""
    found: dict[tuple[str, str], tuple[int, str, bool, datetime]] = {}
    for chunk in _key_chunks(keys):
        rows = session.execute(_HEADS, _types_and_ids(tenant_id, chunk))
        for rtype, rid, version, digest, deleted, last_updated in rows:
            if (rtype, rid) in chunk:
                found[(rtype, rid)] = (version, digest, deleted, last_updated)
    return found


def current_body(session: Session, tenant_id: str, rtype: str, rid: str) -> dict[str, Any] | None:
    body: dict[str, Any] | None = session.scalar(
        _BODY, {"tenant": tenant_id, "type": rtype, "id": rid}
    )
    return body


def fact_links(
    session: Session, tenant_id: str, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    """(encounter_id, link_ref) of the facts of many resources."""
    found: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for chunk in _key_chunks(keys):
        rows = session.execute(_FACT_LINKS, _types_and_ids(tenant_id, chunk))
        for rtype, rid, encounter_id, link_ref in rows:
            if (rtype, rid) in chunk:
                found[(rtype, rid)] = (encounter_id, link_ref)
    return found


def linked_refs(session: Session, tenant_id: str, refs: Iterable[str]) -> set[str]:
    """Which of ``refs`` some fact links to."""
    found: set[str] = set()
    for chunk in _chunks(sorted(refs)):
        found.update(session.scalars(_LINKED_REFS, {"tenant": tenant_id, "refs": chunk}))
    return found


def existing_episodes(session: Session, tenant_id: str, encounter_ids: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(sorted(set(encounter_ids))):
        found.update(session.scalars(_EPISODES_IN, {"tenant": tenant_id, "ids": chunk}))
    return found


def history(session: Session, tenant_id: str, rtype: str, rid: str) -> Sequence[ResourceVersion]:
    return session.scalars(
        sa.select(ResourceVersion)
        .where(
            ResourceVersion.tenant_id == tenant_id,
            ResourceVersion.type == rtype,
            ResourceVersion.id == rid,
        )
        .order_by(ResourceVersion.version.desc())
    ).all()


def facts_linked_to(
    session: Session, tenant_id: str, ref: str
) -> list[tuple[str, str, str | None]]:
    """(type, id, encounter_id) of the facts that link to ``ref``."""
    rows = session.execute(_LINKED_TO, {"tenant": tenant_id, "ref": ref})
    return [(rtype, rid, encounter_id) for rtype, rid, encounter_id in rows]
