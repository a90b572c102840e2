"""Transaction and batch Bundles.

A transaction is checked whole before anything is written: every entry's shape,
references and structure. Any failure answers one OperationOutcome naming each bad
entry, and nothing is stored. A batch applies each entry inside its own savepoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from services.ingest import repository
from services.ingest.mapping import link_targets
from services.ingest.service import (
    JSON,
    IngestUnit,
    WriteResult,
    check_and_rewrite_references,
    new_id,
)
from services.ingest.validation import content_hash, is_known_type, valid_id, validate_resource
from shared.db import is_postgres
from shared.errors import AppError, Issue, NotFoundError, UnprocessableError
from shared.metrics import RESOURCES_INGESTED

METHODS = frozenset({"PUT", "POST", "DELETE"})


@dataclass
class Entry:
    index: int
    method: str
    type: str
    id: str
    resource: JSON | None
    full_url: str | None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def _parse_entry(index: int, raw: Any) -> tuple[Entry | None, list[Issue]]:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        return None, [Issue("structure", "entry must be an object", (where,))]
    request = raw.get("request")
    if not isinstance(request, dict):
        return None, [Issue("required", "entry.request is required", (f"{where}.request",))]
    method = str(request.get("method", "")).upper()
    url = request.get("url")
    if method not in METHODS:
        return None, [
            Issue(
                "not-supported",
                f"request.method '{method}' is not supported (PUT, POST, DELETE)",
                (f"{where}.request.method",),
            )
        ]
    if not isinstance(url, str) or not url:
        return None, [Issue("required", "request.url is required", (f"{where}.request.url",))]
    path = url.split("?")[0].strip("/").split("/")
    resource = raw.get("resource")
    full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
    rtype = path[0]
    if not is_known_type(rtype):
        return None, [
            Issue("not-supported", f"unknown resource type '{rtype}'", (f"{where}.request.url",))
        ]
    if method == "DELETE":
        if len(path) != 2 or not valid_id(path[1]):
            return None, [
                Issue("value", "DELETE needs request.url Type/id", (f"{where}.request.url",))
            ]
        return Entry(index, method, rtype, path[1], None, full_url), []
    if not isinstance(resource, dict):
        return None, [Issue("required", f"{method} needs entry.resource", (f"{where}.resource",))]
    if resource.get("resourceType") != rtype:
        return None, [
            Issue(
                "value",
                f"resourceType '{resource.get('resourceType')}' does not match request.url '{url}'",
                (f"{where}.resource.resourceType",),
            )
        ]
    if method == "PUT":
        if len(path) != 2 or not valid_id(path[1]):
            return None, [
                Issue("value", "PUT needs request.url Type/id", (f"{where}.request.url",))
            ]
        if "id" in resource and resource["id"] != path[1]:
            return None, [
                Issue(
                    "value",
                    f"resource id '{resource['id']}' does not match request.url id '{path[1]}'",
                    (f"{where}.resource.id",),
                )
            ]
        rid = path[1]
    else:
        if len(path) != 1:
            return None, [Issue("value", "POST needs request.url Type", (f"{where}.request.url",))]
        rid = new_id()
    resource = {**resource, "id": rid}
    return Entry(index, method, rtype, rid, resource, full_url), []


def _response_entry(result: WriteResult) -> JSON:
    return {
        "response": {
            "status": result.http_status,
            "location": result.location,
            "etag": f'W/"{result.version}"',
            "lastModified": result.last_updated.isoformat(),
        }
    }


def _outcome_entry(error: AppError) -> JSON:
    return {
        "response": {
            "status": f"{error.status_code} {error.title}",
            "outcome": error.operation_outcome(),
        }
    }


def check_envelope(bundle: Any, max_entries: int) -> tuple[str, list[Any]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        found = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise UnprocessableError(
            f"POST /fhir takes a Bundle, not '{found}'",
            issues=[
                Issue("structure", f"POST /fhir takes a Bundle, not '{found}'", ("resourceType",))
            ],
        )
    btype = bundle.get("type")
    if btype not in ("transaction", "batch"):
        raise UnprocessableError(
            f"Bundle.type must be transaction or batch, not '{btype}'",
            issues=[
                Issue(
                    "value",
                    f"Bundle.type must be transaction or batch, not '{btype}'",
                    ("Bundle.type",),
                )
            ],
        )
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise UnprocessableError(
            "Bundle.entry must be an array",
            issues=[Issue("structure", "Bundle.entry must be an array", ("Bundle.entry",))],
        )
    if len(entries) > max_entries:
        raise UnprocessableError(
            f"the Bundle has {len(entries)} entries; the limit is {max_entries}",
            issues=[
                Issue(
                    "too-costly",
                    f"the Bundle has {len(entries)} entries; the limit is {max_entries}",
                    ("Bundle.entry",),
                )
            ],
        )
    return str(btype), entries


def _rewrites(parsed: list[Entry] | list[Entry | None]) -> dict[str, str]:
    """``urn:uuid:`` fullUrls → the ``Type/id`` their entries are stored under."""
    out: dict[str, str] = {}
    for e in parsed:
        if e is not None and e.full_url is not None and e.full_url.startswith("urn:"):
            out[e.full_url] = f"{e.type}/{e.id}"
    return out


def _prepare(
    unit: IngestUnit, entries: list[Any], valid: frozenset[str] = frozenset()
) -> tuple[list[Entry | None], dict[int, list[Issue]]]:
    """Parse entries, assign ids, rewrite urn:uuid references, validate structure.

    Validation is skipped for content identical to what is stored: it was valid when it
    was first stored, and integration engines re-send whole episodes on every change.
    """
    parsed: list[Entry | None] = []
    problems: dict[int, list[Issue]] = {}
    for index, raw in enumerate(entries):
        entry, issues = _parse_entry(index, raw)
        parsed.append(entry)
        if issues:
            problems[index] = issues
    rewrites = _rewrites(parsed)
    unit.prefetch(
        [(e.type, e.id) for e in parsed if e is not None],
        links=[t for e in parsed if e is not None for t in link_targets(e.resource)],
    )
    for entry in parsed:
        if entry is None or entry.resource is None:
            continue
        issues = check_and_rewrite_references(
            entry.resource, unit.tenant_id, rewrites, f"{entry.where}.resource"
        )
        if not issues:
            digest = content_hash(entry.resource)
            if digest not in valid and not unit.is_unchanged(entry.type, entry.id, digest):
                issues = validate_resource(entry.resource, where=f"{entry.where}.resource")
        if issues:
            problems[entry.index] = issues
    return parsed, problems


def _apply(unit: IngestUnit, entry: Entry) -> WriteResult:
    if entry.method == "DELETE":
        return unit.delete(entry.type, entry.id)
    assert entry.resource is not None
    return unit.put(entry.resource, method=entry.method, validated=True, want_body=False)


@dataclass(frozen=True)
class Precheck:
    """What a Bundle's read phase found, before any write lock is taken."""

    #: The whole answer when the Bundle would change nothing; else None.
    response: JSON | None
    #: Content hashes of entries validated here: the write phase does not validate
    #: them again, so validation runs outside the write lock (SQLite's single writer,
    #: PostgreSQL's resource locks) and concurrent requests validate in parallel.
    valid: frozenset[str]


def precheck(session: Session, tenant_id: str, bundle: Any, *, max_entries: int) -> Precheck:
    """The read phase of ``POST /fhir``, without the write path (no write lock, no
    resource locks, no transaction to commit).

    Integration engines re-send whole episodes and retry whole Bundles: such a
    Bundle's every entry is a PUT of content identical to the current version, or a
    DELETE of something already deleted. That was valid when stored, so nothing is
    validated again, and the answer is complete here. Otherwise every changed entry is
    validated here, and ``process_bundle`` decides under its locks: it re-reads the
    heads, so a concurrent writer is never missed, and validates only content this
    phase did not.

    ``session`` must not have begun its transaction yet (its snapshot is chosen here)."""
    btype, raw_entries = check_envelope(bundle, max_entries)
    if is_postgres(session):
        # One snapshot for every head query: READ COMMITTED could see one type's rows
        # before a concurrent commit and another's after, and call a mix unchanged
        # that never existed. (A SQLite read transaction is one snapshot already.)
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    parsed: list[Entry] = []
    unchanged = True
    for index, raw in enumerate(raw_entries):
        entry, issues = _parse_entry(index, raw)
        if entry is None or issues:
            unchanged = False  # reported by the write phase, with the rest
        elif entry.method == "POST":
            unchanged = False  # a new id each time: validated under the lock
        else:
            parsed.append(entry)
    rewrites = _rewrites(parsed)
    heads = repository.current_heads(session, tenant_id, [(e.type, e.id) for e in parsed])
    response = []
    valid: set[str] = set()
    for entry in parsed:
        head = heads.get((entry.type, entry.id))
        if entry.resource is None:
            if head is None or not head[2]:
                unchanged = False
            else:
                response.append(_unchanged_entry(entry, head))
            continue
        if check_and_rewrite_references(
            entry.resource, tenant_id, rewrites, f"{entry.where}.resource"
        ):
            unchanged = False
            continue
        digest = content_hash(entry.resource)
        if head is not None and not head[2] and head[1] == digest:
            response.append(_unchanged_entry(entry, head))
            continue
        unchanged = False
        if not validate_resource(entry.resource, where=f"{entry.where}.resource"):
            valid.add(digest)
    if not unchanged:
        return Precheck(None, frozenset(valid))
    for entry in parsed:
        if entry.resource is not None:  # as the write path: a repeated DELETE counts nothing
            RESOURCES_INGESTED.labels(entry.type, "unchanged").inc()
    answer = {"resourceType": "Bundle", "type": f"{btype}-response", "entry": response}
    return Precheck(answer, frozenset())


def _unchanged_entry(entry: Entry, head: tuple[int, str, bool, datetime]) -> JSON:
    version, _, _, last_updated = head
    return _response_entry(
        WriteResult(entry.type, entry.id, version, "unchanged", last_updated, None)
    )


def process_bundle(
    unit: IngestUnit, bundle: Any, *, max_entries: int, valid: frozenset[str] = frozenset()
) -> JSON:
    """Write a Bundle in the unit's transaction. ``valid``: content hashes that
    :func:`precheck` validated already."""
    btype, raw_entries = check_envelope(bundle, max_entries)
    parsed, problems = _prepare(unit, raw_entries, valid)
    if btype == "transaction":
        if problems:
            issues = [i for index in sorted(problems) for i in problems[index]]
            n = len(problems)
            raise UnprocessableError(
                f"transaction rejected: {n} invalid entr{'y' if n == 1 else 'ies'}; "
                "nothing was stored",
                issues=issues,
            )
        response = []
        try:
            for entry in parsed:
                assert entry is not None
                try:
                    response.append(_response_entry(_apply(unit, entry)))
                except NotFoundError as exc:
                    raise NotFoundError(
                        f"{entry.where}: {exc.detail}; nothing was stored",
                        issues=[Issue("not-found", exc.detail, (f"{entry.where}.request.url",))],
                    ) from exc
        except BaseException:
            unit.discard()  # the caller rolls the transaction (or its savepoint) back
            raise
        unit.finish()
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": response}

    out: list[JSON] = []
    for index, entry in enumerate(parsed):
        if index in problems or entry is None:
            out.append(_outcome_entry(UnprocessableError("invalid entry", issues=problems[index])))
            continue
        try:
            with unit.session.begin_nested():
                result = _apply(unit, entry)
                # Write inside the savepoint so a failing entry rolls back alone.
                unit.flush()
                unit.session.flush()
        except AppError as exc:
            unit.forget(entry.type, entry.id)
            out.append(_outcome_entry(exc))
            continue
        out.append(_response_entry(result))
    unit.finish()
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}


def apply_transaction(
    session: Session,
    tenant_id: str,
    tz: ZoneInfo,
    now: datetime,
    entries: list[JSON],
    *,
    max_entries: int,
) -> JSON:
    """Write ``entries`` as one transaction Bundle in the caller's transaction, exactly
    as ``POST /fhir`` would: for adapters at the ingest edge (HL7 v2) that must commit
    their own records with the same transaction. Raises what ``process_bundle`` raises."""
    unit = IngestUnit(session, tenant_id, tz, now)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return process_bundle(unit, bundle, max_entries=max_entries)


def lock_resources(session: Session, tenant_id: str, keys: list[tuple[str, str]]) -> None:
    """Take the per-resource locks a write of ``keys`` takes (PostgreSQL; SQLite has one
    writer), early: a caller that decides what to write from its own records about
    those resources decides under the same locks as the write."""
    repository.lock_keys(session, tenant_id, sorted(set(keys)))
