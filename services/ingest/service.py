"""The resource store and its effects on episodes and facts.

One :class:`IngestUnit` is one unit of work (a request, or a whole Bundle). It writes
versions, re-maps facts, and remembers which episodes it touched; ``finish`` writes
one ``episode.changed`` event per touched episode to the outbox, in the same
transaction. It never commits: the edge does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state

from services.ingest import repository
from services.ingest.mapping import (
    MAPPED_TYPES,
    fact_to_json,
    map_encounter,
    map_fact,
    parse_date,
    reference_target,
)
from services.ingest.models import EpisodeRow, FactRow, ResourceVersion, StoredResource
from services.ingest.validation import content_hash, is_known_type, validate_resource
from shared.bus import Topic, emit
from shared.errors import GoneError, Issue, NotFoundError, UnprocessableError
from shared.metrics import RESOURCES_INGESTED

JSON = dict[str, Any]
WriteStatus = Literal["created", "updated", "unchanged", "deleted"]


@dataclass(frozen=True, slots=True)
class WriteResult:
    type: str
    id: str
    version: int
    status: WriteStatus
    last_updated: datetime
    resource: JSON | None

    @property
    def http_status(self) -> str:
        return "201 Created" if self.status == "created" else "200 OK"

    @property
    def location(self) -> str:
        return f"{self.type}/{self.id}/_history/{self.version}"


def with_meta(resource: JSON, version: int, last_updated: datetime) -> JSON:
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = last_updated.isoformat().replace("+00:00", "Z")
    return {**resource, "meta": meta}


@dataclass
class IngestUnit:
    session: Session
    tenant_id: str
    tz: ZoneInfo
    now: datetime
    touched: set[str] = field(default_factory=set)
    _unflushed_links: bool = False
    _unflushed_episodes: bool = False
    _cache: dict[tuple[str, str], StoredResource | None] = field(default_factory=dict)
    # Sessions do not autoflush and ``Session.get`` never returns pending rows, so rows
    # this unit added are looked up here: the same resource twice in one Bundle must
    # update its fact/episode, not insert a duplicate key.
    _facts: dict[tuple[str, str], FactRow | None] = field(default_factory=dict)
    _episodes: dict[str, EpisodeRow | None] = field(default_factory=dict)

    # -- reading -----------------------------------------------------------------

    def prefetch(self, keys: list[tuple[str, str]]) -> None:
        missing = [k for k in keys if k not in self._cache]
        if not missing:
            return
        found = repository.current_rows(self.session, self.tenant_id, missing)
        for key in missing:
            self._cache[key] = found.get(key)

    def current(self, rtype: str, rid: str) -> StoredResource | None:
        key = (rtype, rid)
        if key not in self._cache:
            self._cache[key] = self.session.get(StoredResource, (self.tenant_id, rtype, rid))
        return self._cache[key]

    def forget(self, rtype: str, rid: str) -> None:
        """Drop a cached row whose write was rolled back (a failed batch entry)."""
        self._cache.pop((rtype, rid), None)
        self._facts.clear()
        self._episodes.clear()

    def _fact(self, rtype: str, rid: str) -> FactRow | None:
        key = (rtype, rid)
        if key not in self._facts:
            self._facts[key] = self.session.get(FactRow, (self.tenant_id, rtype, rid))
        return self._facts[key]

    def _episode(self, encounter_id: str) -> EpisodeRow | None:
        if encounter_id not in self._episodes:
            self._episodes[encounter_id] = self.session.get(
                EpisodeRow, (self.tenant_id, encounter_id)
            )
        return self._episodes[encounter_id]

    def _discard(self, row: FactRow | EpisodeRow) -> None:
        if instance_state(row).pending:
            self.session.expunge(row)
        else:
            self.session.delete(row)

    def is_unchanged(self, rtype: str, rid: str, digest: str) -> bool:
        row = self.current(rtype, rid)
        return row is not None and not row.deleted and row.content_hash == digest

    # -- writing -----------------------------------------------------------------

    def put(self, resource: JSON, *, method: str = "PUT", validated: bool = False) -> WriteResult:
        """Create or update ``resource`` (its ``id`` set). Identical content is a no-op."""
        rtype, rid = str(resource["resourceType"]), str(resource["id"])
        digest = content_hash(resource)
        row = self.current(rtype, rid)
        if row is not None and not row.deleted and row.content_hash == digest:
            RESOURCES_INGESTED.labels(rtype, "unchanged").inc()
            return WriteResult(rtype, rid, row.version, "unchanged", row.last_updated, row.body)
        if not validated and (issues := validate_resource(resource)):
            raise UnprocessableError(issues[0].diagnostics, issues=issues)
        version = 1 if row is None else row.version + 1
        body = with_meta(resource, version, self.now)
        self.session.add(
            ResourceVersion(
                tenant_id=self.tenant_id,
                type=rtype,
                id=rid,
                version=version,
                content_hash=digest,
                body=body,
                method=method,
                deleted=False,
                last_updated=self.now,
            )
        )
        if row is None:
            row = StoredResource(
                tenant_id=self.tenant_id,
                type=rtype,
                id=rid,
                version=version,
                content_hash=digest,
                body=body,
                deleted=False,
                last_updated=self.now,
            )
            self.session.add(row)
            self._cache[(rtype, rid)] = row
            status: WriteStatus = "created"
        else:
            status = "created" if row.deleted else "updated"
            row.version, row.content_hash, row.body = version, digest, body
            row.deleted, row.last_updated = False, self.now
        self._remap(rtype, rid, body)
        RESOURCES_INGESTED.labels(rtype, status).inc()
        return WriteResult(rtype, rid, version, status, self.now, body)

    def delete(self, rtype: str, rid: str) -> WriteResult:
        """Delete: a tombstone version, facts retracted. Deleting again changes nothing;
        deleting what never existed is 404."""
        row = self.current(rtype, rid)
        if row is None:
            raise NotFoundError(f"{rtype}/{rid} does not exist")
        if row.deleted:
            return WriteResult(rtype, rid, row.version, "unchanged", row.last_updated, None)
        version = row.version + 1
        self.session.add(
            ResourceVersion(
                tenant_id=self.tenant_id,
                type=rtype,
                id=rid,
                version=version,
                content_hash="",
                body=None,
                method="DELETE",
                deleted=True,
                last_updated=self.now,
            )
        )
        row.version, row.content_hash, row.body = version, "", None
        row.deleted, row.last_updated = True, self.now
        self._remap(rtype, rid, None)
        RESOURCES_INGESTED.labels(rtype, "deleted").inc()
        return WriteResult(rtype, rid, version, "deleted", self.now, None)

    def finish(self) -> None:
        """Announce every touched episode once, in this transaction."""
        for encounter_id in sorted(self.touched):
            emit(
                self.session,
                self.tenant_id,
                Topic.EPISODE_CHANGED,
                encounter_id,
                {"encounter_id": encounter_id},
            )
        self.touched.clear()

    # -- mapping -----------------------------------------------------------------

    def _remap(self, rtype: str, rid: str, body: JSON | None) -> None:
        if rtype == "Encounter":
            self._remap_encounter(rid, body)
        elif rtype == "Patient":
            self._remap_patient(rid, body)
        elif rtype in MAPPED_TYPES:
            self._remap_fact(rtype, rid, body)

    def _remap_encounter(self, rid: str, body: JSON | None) -> None:
        fields = map_encounter(body, self.tz) if body is not None else None
        row = self._episode(rid)
        self.touched.add(rid)
        self._unflushed_episodes = True
        if fields is None:
            if row is not None:
                self._discard(row)
                self._episodes[rid] = None
            return
        birth_date = None
        if fields.patient_id:
            patient = self.current("Patient", fields.patient_id)
            if patient is not None and patient.body is not None:
                birth_date = parse_date(patient.body.get("birthDate"))
        values = {
            "status": fields.status,
            "class_code": fields.class_code,
            "department": fields.department,
            "department_name": fields.department_name,
            "patient_id": fields.patient_id,
            "arrival": fields.arrival,
            "discharge": fields.discharge,
            "birth_date": birth_date,
        }
        if row is None:
            row = EpisodeRow(tenant_id=self.tenant_id, encounter_id=rid, **values)
            self.session.add(row)
            self._episodes[rid] = row
        else:
            for name, value in values.items():
                setattr(row, name, value)

    def _remap_patient(self, rid: str, body: JSON | None) -> None:
        birth_date = parse_date(body.get("birthDate")) if body is not None else None
        if self._unflushed_episodes:
            # Episodes added or re-pointed earlier in this unit must be visible to the query.
            self.session.flush()
            self._unflushed_episodes = False
        for episode in repository.episodes_of_patient(self.session, self.tenant_id, rid):
            episode.birth_date = birth_date
            self.touched.add(episode.encounter_id)

    def _remap_fact(self, rtype: str, rid: str, body: JSON | None) -> None:
        mapped = map_fact(body, self.tz) if body is not None else None
        row = self._fact(rtype, rid)
        if row is not None and row.encounter_id:
            self.touched.add(row.encounter_id)
        if mapped is None:
            if row is not None:
                self._discard(row)
                self._facts[(rtype, rid)] = None
            self._relink(f"{rtype}/{rid}", None)
            return
        encounter_id = mapped.encounter_id
        if encounter_id is None and mapped.link_ref is not None:
            target_type, _, target_id = mapped.link_ref.partition("/")
            target = self._fact(target_type, target_id)
            encounter_id = target.encounter_id if target is not None else None
        values = {
            "encounter_id": encounter_id,
            "link_ref": mapped.link_ref,
            "patient_id": mapped.patient_id,
            "kind": mapped.fact.kind.value,
            "time": mapped.fact.time,
            "data": fact_to_json(mapped.fact),
        }
        # A link added or changed here must be flushed before ``_relink`` queries links.
        self._unflushed_links |= mapped.link_ref is not None or (
            row is not None and row.link_ref is not None
        )
        if row is None:
            row = FactRow(tenant_id=self.tenant_id, resource_type=rtype, resource_id=rid, **values)
            self.session.add(row)
            self._facts[(rtype, rid)] = row
        else:
            for name, value in values.items():
                setattr(row, name, value)
        if encounter_id:
            self.touched.add(encounter_id)
        self._relink(f"{rtype}/{rid}", encounter_id)

    def _relink(self, ref: str, encounter_id: str | None) -> None:
        """Facts that join an episode through ``ref`` follow it."""
        if self._unflushed_links:
            # A linking fact added earlier in this unit must be visible to the query.
            self.session.flush()
            self._unflushed_links = False
        for linked in repository.facts_linked_to(self.session, self.tenant_id, ref):
            if linked.encounter_id != encounter_id:
                if linked.encounter_id:
                    self.touched.add(linked.encounter_id)
                linked.encounter_id = encounter_id
                if encounter_id:
                    self.touched.add(encounter_id)


# -- references -------------------------------------------------------------------


Visit = Callable[[str, list[str | int]], str | None]


def _rewrite_references(node: Any, visit: Visit, path: list[str | int]) -> Any:
    """``node`` with every ``reference`` string that ``visit`` replaces replaced.

    Copy-on-write: containers are copied only where something changed, so the caller's
    document is never mutated (a retried transaction parses the same Bundle again).
    ``path`` is the element path of ``node``, kept on one stack to stay cheap.
    """
    if isinstance(node, dict):
        changed: dict[str, Any] | None = None
        for key, value in node.items():
            path.append(key)
            if key == "reference" and isinstance(value, str):
                new = visit(value, path)
                new = value if new is None else new
            elif isinstance(value, dict | list):
                new = _rewrite_references(value, visit, path)
            else:
                new = value
            path.pop()
            if new is not value:
                changed = changed if changed is not None else dict(node)
                changed[key] = new
        return node if changed is None else changed
    if isinstance(node, list):
        items: list[Any] | None = None
        for index, item in enumerate(node):
            if not isinstance(item, dict | list):
                continue
            path.append(index)
            new = _rewrite_references(item, visit, path)
            path.pop()
            if new is not item:
                items = items if items is not None else list(node)
                items[index] = new
        return node if items is None else items
    return node


def _render_path(where: str, path: list[str | int]) -> str:
    return where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def foreign_tenant_of(reference: str) -> str | None:
    """The tenant an absolute reference names, if it names one.

    Multi-tenant FHIR servers address a tenant by a path segment after the base
    (``https://host/fhir/H0002/Encounter/1``, HAPI's URL-based partitioning). A
    relative reference always means the caller's own tenant.
    """
    if "://" not in reference:
        return None
    parts = reference.split("?")[0].rstrip("/").split("/")
    try:
        base = len(parts) - 1 - parts[::-1].index("fhir")
    except ValueError:
        return None
    rest = parts[base + 1 :]
    # ``{tenant}/{Type}/{id}[/_history/{v}]``: the first segment is not a resource type.
    # (Tenant ids such as H0002 start with a capital too, so the case says nothing.)
    if len(rest) >= 3 and not is_known_type(rest[0]):
        return rest[0]
    return None


def check_and_rewrite_references(
    resource: JSON, tenant_id: str, rewrites: dict[str, str], where: str
) -> list[Issue]:
    """Rewrite ``urn:uuid:`` references to ``Type/id``; refuse references into another
    tenant. Replaces the top-level values of ``resource`` that hold a rewritten reference
    (callers pass their own shallow copy); nested containers are never mutated."""
    issues: list[Issue] = []

    def visit(ref: str, path: list[str | int]) -> str | None:
        if ref in rewrites:
            return rewrites[ref]
        other = foreign_tenant_of(ref)
        if other is not None and other != tenant_id:
            issues.append(
                Issue(
                    "forbidden",
                    f"reference '{ref}' points into another tenant",
                    (_render_path(where, path),),
                )
            )
        return None

    path: list[str | int] = []
    for key, value in list(resource.items()):
        if isinstance(value, dict | list):
            path.append(key)
            new = _rewrite_references(value, visit, path)
            path.pop()
            if new is not value:
                resource[key] = new
    return issues


# -- single resources --------------------------------------------------------------


def read(session: Session, tenant_id: str, rtype: str, rid: str) -> StoredResource:
    row = session.get(StoredResource, (tenant_id, rtype, rid))
    if row is None:
        raise NotFoundError(f"{rtype}/{rid} is not known")
    if row.deleted:
        raise GoneError(f"{rtype}/{rid} was deleted (version {row.version})")
    return row


def read_history(session: Session, tenant_id: str, rtype: str, rid: str) -> JSON:
    versions = repository.history(session, tenant_id, rtype, rid)
    if not versions:
        raise NotFoundError(f"{rtype}/{rid} is not known")
    entries = []
    for v in versions:
        entry: JSON = {
            "fullUrl": f"{rtype}/{rid}",
            "request": {
                "method": v.method,
                "url": f"{rtype}/{rid}" if v.method != "POST" else rtype,
            },
            "response": {
                "status": "200 OK" if not v.deleted else "204 No Content",
                "etag": f'W/"{v.version}"',
                "lastModified": v.last_updated.isoformat(),
            },
        }
        if v.body is not None:
            entry["resource"] = v.body
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "history", "total": len(entries), "entry": entries}


def new_id() -> str:
    return uuid.uuid4().hex


def target_of(ref: str) -> tuple[str, str] | None:
    return reference_target(ref)


def unlinked_counts(session: Session, tenant_id: str) -> dict[str, Any]:
    """Data-quality findings: facts whose episode is unknown, and unmapped resources."""
    no_episode = (
        sa.select(FactRow.resource_type, sa.func.count())
        .outerjoin(
            EpisodeRow,
            sa.and_(
                EpisodeRow.tenant_id == FactRow.tenant_id,
                EpisodeRow.encounter_id == FactRow.encounter_id,
            ),
        )
        .where(FactRow.tenant_id == tenant_id, EpisodeRow.encounter_id.is_(None))
        .group_by(FactRow.resource_type)
    )
    unmapped = (
        sa.select(StoredResource.type, sa.func.count())
        .where(
            StoredResource.tenant_id == tenant_id,
            StoredResource.deleted.is_(False),
            StoredResource.type.not_in(sorted(MAPPED_TYPES)),
        )
        .group_by(StoredResource.type)
    )
    return {
        "unlinked": {t: n for t, n in session.execute(no_episode)},
        "unmapped": {t: n for t, n in session.execute(unmapped)},
    }


def unlinked_resources(session: Session, tenant_id: str, limit: int) -> list[JSON]:
    rows = session.execute(
        sa.select(
            FactRow.resource_type, FactRow.resource_id, FactRow.encounter_id, FactRow.link_ref
        )
        .outerjoin(
            EpisodeRow,
            sa.and_(
                EpisodeRow.tenant_id == FactRow.tenant_id,
                EpisodeRow.encounter_id == FactRow.encounter_id,
            ),
        )
        .where(FactRow.tenant_id == tenant_id, EpisodeRow.encounter_id.is_(None))
        .order_by(FactRow.resource_type, FactRow.resource_id)
        .limit(limit)
    )
    return [
        {
            "resource": f"{t}/{i}",
            "reason": "encounter not received"
            if e
            else (f"links through {ref}, which has no episode" if ref else "names no encounter"),
            "encounter": f"Encounter/{e}" if e else None,
        }
        for t, i, e, ref in rows
    ]
