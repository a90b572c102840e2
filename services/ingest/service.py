"""The resource store and its effects on episodes and facts.

One :class:`IngestUnit` is one unit of work (a request, or a whole Bundle). It writes
versions, re-maps facts, and remembers which episodes it touched; ``finish`` writes
one ``episode.changed`` event per touched episode to the outbox, in the same
transaction. It never commits: the edge does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.ingest import repository
from services.ingest.mapping import (
    MAPPED_TYPES,
    fact_to_json,
    map_encounter,
    map_fact,
    patient_fields,
)
from services.ingest.models import (
    DepartmentRow,
    EpisodeRow,
    FactRow,
    ResourceVersion,
    StoredResource,
)
from services.ingest.validation import content_hash, is_known_type, validate_resource
from shared.bus import Topic, emit_many
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


@dataclass(slots=True)
class Head:
    """What a unit needs of a current row to decide a write: never its body."""

    version: int
    content_hash: str
    deleted: bool
    last_updated: datetime


@dataclass(slots=True)
class _Fact:
    encounter_id: str | None
    link_ref: str | None


_RESOURCES = cast(sa.Table, StoredResource.__table__)
_VERSIONS = cast(sa.Table, ResourceVersion.__table__)
_FACTS = cast(sa.Table, FactRow.__table__)
_DEPARTMENTS = cast(sa.Table, DepartmentRow.__table__)
_EPISODES = cast(sa.Table, EpisodeRow.__table__)


def _by_key(table: sa.Table, *columns: str) -> sa.ColumnElement[bool]:
    return sa.and_(*(table.c[c] == sa.bindparam(f"k_{c}") for c in columns))


# Built once: constructing a statement per write costs about as much as running it.
_INSERT_VERSION = sa.insert(_VERSIONS)
_INSERT_RESOURCE = sa.insert(_RESOURCES)
_UPDATE_RESOURCE = (
    sa.update(_RESOURCES)
    .where(_by_key(_RESOURCES, "tenant_id", "type", "id"))
    .values(
        {c: sa.bindparam(c) for c in ("version", "content_hash", "body", "deleted", "last_updated")}
    )
)
_EPISODE_FIELDS = (
    "status",
    "class_code",
    "department",
    "department_name",
    "patient_id",
    "arrival",
    "discharge",
    "birth_date",
    "deceased_at",
    "part_of",
    "priority",
    "disposition_system",
    "disposition_code",
)
_INSERT_EPISODE = sa.insert(_EPISODES)
_UPDATE_EPISODE = (
    sa.update(_EPISODES)
    .where(_by_key(_EPISODES, "tenant_id", "encounter_id"))
    .values({c: sa.bindparam(c) for c in _EPISODE_FIELDS})
)
_DEPARTMENT_NAME = sa.select(_DEPARTMENTS.c.name).where(_by_key(_DEPARTMENTS, "tenant_id", "code"))
_INSERT_DEPARTMENT = sa.insert(_DEPARTMENTS)
_RENAME_DEPARTMENT = (
    sa.update(_DEPARTMENTS)
    .where(_by_key(_DEPARTMENTS, "tenant_id", "code"))
    .values(name=sa.bindparam("name"))
)
_DELETE_EPISODE = sa.delete(_EPISODES).where(_by_key(_EPISODES, "tenant_id", "encounter_id"))
_FACT_FIELDS = ("encounter_id", "link_ref", "patient_id", "kind", "time", "data")
_INSERT_FACT = sa.insert(_FACTS)
_UPDATE_FACT = (
    sa.update(_FACTS)
    .where(_by_key(_FACTS, "tenant_id", "resource_type", "resource_id"))
    .values({c: sa.bindparam(c) for c in _FACT_FIELDS})
)
_RELINK_FACT = (
    sa.update(_FACTS)
    .where(_by_key(_FACTS, "tenant_id", "resource_type", "resource_id"))
    .values(encounter_id=sa.bindparam("encounter_id"))
)
_DELETE_FACT = sa.delete(_FACTS).where(_by_key(_FACTS, "tenant_id", "resource_type", "resource_id"))
_PATIENT_EPISODES = sa.select(_EPISODES.c.encounter_id).where(
    _by_key(_EPISODES, "tenant_id", "patient_id")
)
_SET_PATIENT_FIELDS = (
    sa.update(_EPISODES)
    .where(_by_key(_EPISODES, "tenant_id", "patient_id"))
    .values(birth_date=sa.bindparam("birth_date"), deceased_at=sa.bindparam("deceased_at"))
)


FactKey = tuple[str, str]


@dataclass(slots=True)
class _Pending:
    """The rows an :class:`IngestUnit` decided and has not written yet.

    Versions are appended in order. Facts keep each resource's last state only (its
    values, or ``None`` for a retraction) beside whether the table held a row for it
    when the state was first decided, so a resource written twice in one Bundle is
    written once. ``relinks`` are stored facts whose episode follows a target written
    in this unit (never a key of ``facts``: a later write of the fact supersedes it)."""

    versions: list[dict[str, Any]] = field(default_factory=list)
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[FactKey, dict[str, Any] | None] = field(default_factory=dict)
    fact_stored: dict[FactKey, bool] = field(default_factory=dict)
    relinks: dict[FactKey, str | None] = field(default_factory=dict)
    _guarded: Session | None = None

    def __bool__(self) -> bool:
        return bool(self.versions or self.facts or self.relinks)

    def clear(self) -> None:
        self.versions.clear()
        self.inserts.clear()
        self.updates.clear()
        self.facts.clear()
        self.fact_stored.clear()
        self.relinks.clear()

    def set_fact(self, key: FactKey, values: dict[str, Any] | None, *, stored: bool) -> None:
        self.fact_stored.setdefault(key, stored)
        self.facts[key] = values
        self.relinks.pop(key, None)

    def relink(self, key: FactKey, encounter_id: str | None) -> None:
        # The query that finds facts to relink flushes first: ``key`` is a stored row.
        assert key not in self.facts, key
        self.relinks[key] = encounter_id

    def guard(self, session: Session) -> None:
        """Fail the session's commit while rows are pending (once per session)."""
        if self._guarded is session:
            return
        self._guarded = session

        def before_commit(_: Session) -> None:
            if self:
                raise RuntimeError(
                    f"{len(self.versions)} resource version(s) and {len(self.facts)} fact(s) "
                    "made but not written: IngestUnit.finish() (or flush()) was not called "
                    "before the commit"
                )

        sa.event.listen(session, "before_commit", before_commit, once=True)


@dataclass
class IngestUnit:
    """Writes go straight to the tables with Core statements, in the caller's
    transaction: the ORM unit of work and loading full bodies cost more than the work
    itself (docs/PERFORMANCE.md). What the unit read or wrote is cached, so the same
    resource twice in one Bundle sees its own earlier write."""

    session: Session
    tenant_id: str
    tz: ZoneInfo
    now: datetime
    touched: set[str] = field(default_factory=set)
    _cache: dict[tuple[str, str], Head | None] = field(default_factory=dict)
    _facts: dict[tuple[str, str], _Fact | None] = field(default_factory=dict)
    _episodes: dict[str, bool] = field(default_factory=dict)
    #: Refs whose linked facts are known to be none (checked by a prefetch).
    _unlinked: set[str] = field(default_factory=set)
    #: Patient id → (birth date, time of death) as stored or as this unit wrote them.
    _patients: dict[str, tuple[date | None, datetime | None]] = field(default_factory=dict)
    #: Prefetched keys whose facts and episodes are not loaded yet.
    _to_map: set[tuple[str, str]] = field(default_factory=set)
    #: Department code → label as stored (or as this unit wrote it).
    _departments: dict[str, str | None] = field(default_factory=dict)
    #: Resource keys this unit holds the lock of (PostgreSQL; see :meth:`_lock`).
    _locked: set[tuple[str, str]] = field(default_factory=set)
    #: Version and fact rows not written yet: :meth:`flush` writes each kind with one
    #: ``executemany`` (a Bundle's new versions and facts in one statement per table and
    #: kind, not one per entry).
    _pending: _Pending = field(default_factory=lambda: _Pending())

    # -- reading -----------------------------------------------------------------

    def prefetch(
        self, keys: Sequence[tuple[str, str]], *, links: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Load the current heads of ``keys`` in one query per type. Their facts,
        episodes and links are loaded together on the first write that needs any of
        them, so a Bundle of identical re-sends costs one query per type. ``links``
        (the entries' :func:`link_targets`) are locked with the keys, in one order."""
        missing = sorted({k for k in keys if k not in self._cache})
        self._lock([*missing, *links])
        if not missing:
            return
        found = repository.current_heads(self.session, self.tenant_id, missing)
        for key in missing:
            row = found.get(key)
            self._cache[key] = Head(*row) if row is not None else None
        self._to_map.update(missing)

    def _load_mapping(self) -> None:
        keys, self._to_map = self._to_map, set()
        if self._pending.facts:
            self.flush()  # ``linked_refs`` must see the facts this unit decided
        fact_keys = [k for k in keys if k[0] in MAPPED_TYPES and k not in self._facts]
        if fact_keys:
            facts = repository.fact_links(self.session, self.tenant_id, fact_keys)
            for key in fact_keys:
                link = facts.get(key)
                self._facts[key] = _Fact(*link) if link is not None else None
            refs = {f"{t}/{i}" for t, i in fact_keys}
            linked = repository.linked_refs(self.session, self.tenant_id, refs)
            self._unlinked |= refs - linked
        encounters = [i for t, i in keys if t == "Encounter" and i not in self._episodes]
        if encounters:
            existing = repository.existing_episodes(self.session, self.tenant_id, encounters)
            for eid in encounters:
                self._episodes[eid] = eid in existing

    def _lock(self, keys: list[tuple[str, str]]) -> None:
        """Hold each resource's lock (PostgreSQL) before reading what its writer
        decides: writers of one resource queue, and a fact and the resource it links
        through see each other's committed rows. A no-op on SQLite (one writer)."""
        new = sorted(set(keys) - self._locked)
        if new:
            repository.lock_keys(self.session, self.tenant_id, new)
            self._locked.update(new)

    def current(self, rtype: str, rid: str) -> Head | None:
        key = (rtype, rid)
        if key not in self._cache:
            self._lock([key])
            row = repository.current_heads(self.session, self.tenant_id, [key]).get(key)
            self._cache[key] = Head(*row) if row is not None else None
        return self._cache[key]

    def forget(self, rtype: str, rid: str) -> None:
        """Drop cached state whose write was rolled back (a failed batch entry): the
        caller flushed before each entry, so what is pending is that entry's."""
        self._pending.clear()
        self._cache.pop((rtype, rid), None)
        self._facts.clear()
        self._episodes.clear()
        self._unlinked.clear()
        self._patients.clear()
        self._to_map.clear()
        self._departments.clear()
        self._locked.clear()  # a rolled-back savepoint released the locks taken in it

    def _fact(self, rtype: str, rid: str) -> _Fact | None:
        key = (rtype, rid)
        if key not in self._facts:
            link = repository.fact_links(self.session, self.tenant_id, [key]).get(key)
            self._facts[key] = _Fact(*link) if link is not None else None
        return self._facts[key]

    def _episode_exists(self, encounter_id: str) -> bool:
        if encounter_id not in self._episodes:
            self._episodes[encounter_id] = bool(
                repository.existing_episodes(self.session, self.tenant_id, [encounter_id])
            )
        return self._episodes[encounter_id]

    def _patient(self, patient_id: str) -> tuple[date | None, datetime | None]:
        if patient_id not in self._patients:
            body = repository.current_body(self.session, self.tenant_id, "Patient", patient_id)
            self._patients[patient_id] = (
                patient_fields(body, self.tz) if body is not None else (None, None)
            )
        return self._patients[patient_id]

    def is_unchanged(self, rtype: str, rid: str, digest: str) -> bool:
        row = self.current(rtype, rid)
        return row is not None and not row.deleted and row.content_hash == digest

    # -- writing -----------------------------------------------------------------

    def put(
        self,
        resource: JSON,
        *,
        method: str = "PUT",
        validated: bool = False,
        want_body: bool = True,
    ) -> WriteResult:
        """Create or update ``resource`` (its ``id`` set). Identical content is a no-op.

        ``want_body=False`` spares reading the stored body of an unchanged resource
        when the caller does not answer with it (Bundle responses)."""
        rtype, rid = str(resource["resourceType"]), str(resource["id"])
        digest = content_hash(resource)
        row = self.current(rtype, rid)
        if row is not None and not row.deleted and row.content_hash == digest:
            RESOURCES_INGESTED.labels(rtype, "unchanged").inc()
            if want_body:
                self.flush()  # it may be this unit's own earlier write
                stored = repository.current_body(self.session, self.tenant_id, rtype, rid)
            else:
                stored = None
            return WriteResult(rtype, rid, row.version, "unchanged", row.last_updated, stored)
        if not validated and (issues := validate_resource(resource)):
            raise UnprocessableError(issues[0].diagnostics, issues=issues)
        version = 1 if row is None else row.version + 1
        body = with_meta(resource, version, self.now)
        self._write_version(rtype, rid, version, digest, body, method)
        status: WriteStatus = "created" if row is None or row.deleted else "updated"
        self._cache[(rtype, rid)] = Head(version, digest, False, self.now)
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
        self._write_version(rtype, rid, version, "", None, "DELETE")
        self._cache[(rtype, rid)] = Head(version, "", True, self.now)
        self._remap(rtype, rid, None)
        RESOURCES_INGESTED.labels(rtype, "deleted").inc()
        return WriteResult(rtype, rid, version, "deleted", self.now, None)

    def _write_version(
        self, rtype: str, rid: str, version: int, digest: str, body: JSON | None, method: str
    ) -> None:
        values = {
            "tenant_id": self.tenant_id,
            "type": rtype,
            "id": rid,
            "version": version,
            "content_hash": digest,
            "body": body,
            "deleted": body is None,
            "last_updated": self.now,
        }
        pending = self._pending
        if not pending:
            # A commit with versions still pending would lose acknowledged writes:
            # refuse it (the transaction rolls back) rather than let it pass.
            pending.guard(self.session)
        pending.versions.append({**values, "method": method})
        if version == 1:
            pending.inserts.append(values)
        else:
            pending.updates.append(
                {**values, "k_tenant_id": self.tenant_id, "k_type": rtype, "k_id": rid}
            )

    def discard(self) -> None:
        """Drop the pending rows of writes the caller is rolling back (a failed
        transaction Bundle inside a savepoint whose transaction goes on, as HL7 v2's)."""
        self._pending.clear()

    def flush(self) -> None:
        """Write the pending version rows: one ``executemany`` per statement, in the
        order the rows were made (an update of a resource follows its insert). Called
        by :meth:`finish`, and by callers that flush per entry (a batch's savepoints)."""
        pending = self._pending
        if pending.versions:
            self.session.execute(_INSERT_VERSION, pending.versions)
        if pending.inserts:
            self.session.execute(_INSERT_RESOURCE, pending.inserts)
        if pending.updates:
            self.session.execute(_UPDATE_RESOURCE, pending.updates)
        if pending.facts or pending.relinks:
            self._write_facts()
        pending.clear()

    def _write_facts(self) -> None:
        """Each pending fact's last state: an insert, an update or a delete, one
        ``executemany`` per kind (the keys are distinct, so their order is free)."""
        pending = self._pending
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        for (rtype, rid), values in pending.facts.items():
            stored = pending.fact_stored[(rtype, rid)]
            where = {"k_tenant_id": self.tenant_id, "k_resource_type": rtype, "k_resource_id": rid}
            if values is None:
                if stored:
                    deletes.append(where)
            elif stored:
                updates.append({**values, **where})
            else:
                inserts.append(
                    {"tenant_id": self.tenant_id, "resource_type": rtype, "resource_id": rid}
                    | values
                )
        relinks = [
            {
                "k_tenant_id": self.tenant_id,
                "k_resource_type": rtype,
                "k_resource_id": rid,
                "encounter_id": encounter_id,
            }
            for (rtype, rid), encounter_id in pending.relinks.items()
        ]
        for statement, rows in (
            (_DELETE_FACT, deletes),
            (_INSERT_FACT, inserts),
            (_UPDATE_FACT, updates),
            (_RELINK_FACT, relinks),
        ):
            if rows:
                self.session.execute(statement, rows)

    def finish(self) -> None:
        """Write what is pending and announce every touched episode once, in this
        transaction."""
        self.flush()
        emit_many(
            self.session,
            self.tenant_id,
            Topic.EPISODE_CHANGED,
            [(eid, {"encounter_id": eid}) for eid in sorted(self.touched)],
        )
        self.touched.clear()

    # -- mapping -----------------------------------------------------------------

    def _remap(self, rtype: str, rid: str, body: JSON | None) -> None:
        if self._to_map:
            self._load_mapping()
        if rtype == "Encounter":
            self._remap_encounter(rid, body)
        elif rtype == "Patient":
            self._remap_patient(rid, body)
        elif rtype in MAPPED_TYPES:
            self._remap_fact(rtype, rid, body)

    def _remap_encounter(self, rid: str, body: JSON | None) -> None:
        fields = map_encounter(body, self.tz) if body is not None else None
        exists = self._episode_exists(rid)
        self.touched.add(rid)
        key = {"k_tenant_id": self.tenant_id, "k_encounter_id": rid}
        if fields is None:
            if exists:
                self.session.execute(_DELETE_EPISODE, key)
                self._episodes[rid] = False
            return
        birth_date, deceased_at = (
            self._patient(fields.patient_id) if fields.patient_id else (None, None)
        )
        disposition = fields.disposition
        values = {
            "status": fields.status,
            "class_code": fields.class_code,
            "department": fields.department,
            "department_name": fields.department_name,
            "patient_id": fields.patient_id,
            "arrival": fields.arrival,
            "discharge": fields.discharge,
            "birth_date": birth_date,
            "deceased_at": deceased_at,
            "part_of": fields.part_of,
            "priority": fields.priority,
            "disposition_system": disposition.system if disposition else None,
            "disposition_code": disposition.code if disposition else None,
        }
        if exists:
            self.session.execute(_UPDATE_EPISODE, {**values, **key})
        else:
            self.session.execute(
                _INSERT_EPISODE, [{"tenant_id": self.tenant_id, "encounter_id": rid, **values}]
            )
            self._episodes[rid] = True
        self._name_department(fields.department, fields.department_name)

    def _name_department(self, code: str, name: str | None) -> None:
        """Keep the department directory: the last label sent for a code wins; an
        Encounter without a label leaves the stored one. Read first, so the common
        case (known code, same label) writes nothing and locks nothing."""
        key = {"k_tenant_id": self.tenant_id, "k_code": code}
        if code not in self._departments:
            stored = self.session.execute(_DEPARTMENT_NAME, key).first()
            if stored is None:
                self.session.execute(
                    _INSERT_DEPARTMENT, [{"tenant_id": self.tenant_id, "code": code, "name": name}]
                )
                self._departments[code] = name
                return
            self._departments[code] = stored[0]
        if name is not None and name != self._departments[code]:
            self.session.execute(_RENAME_DEPARTMENT, {**key, "name": name})
            self._departments[code] = name

    def _remap_patient(self, rid: str, body: JSON | None) -> None:
        birth_date, deceased_at = (
            patient_fields(body, self.tz) if body is not None else (None, None)
        )
        self._patients[rid] = (birth_date, deceased_at)
        key = {"k_tenant_id": self.tenant_id, "k_patient_id": rid}
        self.touched.update(self.session.scalars(_PATIENT_EPISODES, key))
        self.session.execute(
            _SET_PATIENT_FIELDS, {**key, "birth_date": birth_date, "deceased_at": deceased_at}
        )

    def _remap_fact(self, rtype: str, rid: str, body: JSON | None) -> None:
        mapped = map_fact(body, self.tz) if body is not None else None
        row = self._fact(rtype, rid)
        if row is not None and row.encounter_id:
            self.touched.add(row.encounter_id)
        key = (rtype, rid)
        if mapped is None:
            if row is not None:
                self._pending.set_fact(key, None, stored=True)
                self._facts[key] = None
            self._relink(f"{rtype}/{rid}", None)
            return
        encounter_id = mapped.encounter_id
        if encounter_id is None and mapped.link_ref is not None:
            target_type, _, target_id = mapped.link_ref.partition("/")
            # Its writer may be committing now: wait for it, then read its link.
            self._lock([(target_type, target_id)])
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
        if mapped.link_ref is not None:
            self._unlinked.discard(mapped.link_ref)
        self._pending.set_fact(key, values, stored=row is not None)
        self._facts[key] = _Fact(encounter_id, mapped.link_ref)
        if encounter_id:
            self.touched.add(encounter_id)
        self._relink(f"{rtype}/{rid}", encounter_id)

    def _relink(self, ref: str, encounter_id: str | None) -> None:
        """Facts that join an episode through ``ref`` follow it."""
        if ref in self._unlinked:
            return  # a prefetch found no fact linking here, and none was written since
        if self._pending.facts:
            self.flush()  # the query must see the facts this unit decided
        for rtype, rid, current in repository.facts_linked_to(self.session, self.tenant_id, ref):
            if current != encounter_id:
                if current:
                    self.touched.add(current)
                self._pending.relink((rtype, rid), encounter_id)
                self._facts[(rtype, rid)] = _Fact(encounter_id, ref)
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
