"""Bulk import: an ndjson body of resources, stored first, then applied line by line
exactly as ``PUT /fhir/{type}/{id}`` would, in large transactions that can resume.

The walk (docs/IMPORT.md):

1. :class:`BodyWriter` stores the body as it arrives, in chunks of whole lines
   (``import_chunks``, zlib-compressed), each batch of chunks in a short transaction;
   only once the last one is stored does the job become ``queued`` (and the caller
   answers 202). A body that fails on the way (bad gzip, too large, the client gone)
   is deleted with its job: no job, nothing applied.
2. :class:`ImportRunner` claims a queued job with a lease (``claimed_by``,
   ``claimed_until``), then takes one chunk at a time: it parses, checks and validates
   the lines outside the write transaction (validation depends on the content only),
   and in one write transaction re-checks its lease under the job row's lock, applies
   the lines through an :class:`IngestUnit`, writes the bad lines' outcomes, advances
   the job's progress and deletes the chunk. A crash loses the transaction in flight,
   never half of it: the next claimant starts at the first chunk not committed.
3. The lease is renewed by every commit. A process whose lease another took over
   finds the job no longer its own at its next transaction and stops, so two
   processes never apply the same chunk.
"""

from __future__ import annotations

import gzip
import os
import socket
import sys
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson
import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

from services.ingest import repository
from services.ingest.models import ImportChunkRow, ImportErrorRow, ImportJobRow
from services.ingest.service import JSON, IngestUnit, check_and_rewrite_references
from services.ingest.validation import (
    content_hash,
    is_known_type,
    json_depth_exceeds,
    valid_id,
    validate_resource,
)
from shared.bus import WorkerThread, wake_after_commit
from shared.db import is_postgres
from shared.errors import (
    AppError,
    InvalidInputError,
    Issue,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableError,
)
from shared.runtime import Runtime

if TYPE_CHECKING:
    import argparse

log = structlog.get_logger(__name__)

#: Lines per chunk, and so per write transaction.
CHUNK_LINES = 1000
#: A chunk is cut early once its lines hold this many bytes.
CHUNK_BYTES = 4 * 1024 * 1024
#: A body still arriving after this long without a new chunk was abandoned.
STALE_UPLOAD = timedelta(hours=1)
#: The notifier topic that wakes the runner when a job is queued.
TOPIC = "import.queued"
#: Errors the status endpoint lists per page at most.
MAX_ERROR_PAGE = 10_000

Progress = Callable[[int, int], None]

_JOBS = cast(sa.Table, ImportJobRow.__table__)
_CHUNKS = cast(sa.Table, ImportChunkRow.__table__)
_ERRORS = cast(sa.Table, ImportErrorRow.__table__)

_INSERT_CHUNK = sa.insert(_CHUNKS)
_INSERT_ERROR = sa.insert(_ERRORS)
_CHUNK = sa.select(_CHUNKS.c.first_line, _CHUNKS.c.line_count, _CHUNKS.c.data).where(
    _CHUNKS.c.job_id == sa.bindparam("job"), _CHUNKS.c.seq == sa.bindparam("seq")
)


def _wall() -> datetime:
    """Leases and job times are operational: the wall clock, not the clinical clock a
    demo or test may run on (every process of a deployment must agree on them)."""
    return datetime.now(UTC)


def _owner() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# -- the body ------------------------------------------------------------------------


@dataclass(slots=True)
class _Chunk:
    first_line: int
    lines: list[bytes]


class _Gunzip:
    """Incremental gzip (multi-member, as ``cat a.gz b.gz`` makes) with bounded output
    per step, so a small bomb cannot expand past the size limit in one call."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._seen = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            try:
                out = self._d.decompress(data, 1024 * 1024)
            except zlib.error as exc:
                raise _bad_gzip(str(exc)) from exc
            self._seen = True
            if out:
                yield out
            if self._d.eof:
                data = self._d.unused_data
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._seen = False
            else:
                data = self._d.unconsumed_tail

    def close(self) -> None:
        if self._seen and not self._d.eof:
            raise _bad_gzip("the gzip stream is truncated")


def _bad_gzip(why: str) -> InvalidInputError:
    detail = f"Content-Encoding is gzip but the body is not valid gzip ({why})"
    return InvalidInputError(detail, issues=[Issue("structure", detail, ("$",))])


class _Splitter:
    """Bytes in, chunks of whole lines out, numbered by physical line (blank lines
    keep their numbers so that an error names the line an editor shows)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.nonblank = 0
        self._tail = b""
        self._lines: list[bytes] = []
        self._bytes = 0
        self._next_line = 1

    def feed(self, data: bytes) -> list[_Chunk]:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise PayloadTooLargeError(
                f"the ndjson body exceeds the import limit of {self.max_bytes} bytes "
                "(QCPULSE_MAX_IMPORT_BYTES)"
            )
        parts = (self._tail + data).split(b"\n")
        self._tail = parts.pop()
        out: list[_Chunk] = []
        for line in parts:
            self._add(line, out)
        return out

    def close(self) -> list[_Chunk]:
        out: list[_Chunk] = []
        if self._tail:
            self._add(self._tail, out)
            self._tail = b""
        if self._lines:
            out.append(self._cut())
        return out

    def _add(self, line: bytes, out: list[_Chunk]) -> None:
        self._lines.append(line)
        self._bytes += len(line)
        if line.strip():
            self.nonblank += 1
        if len(self._lines) >= CHUNK_LINES or self._bytes >= CHUNK_BYTES:
            out.append(self._cut())

    def _cut(self) -> _Chunk:
        chunk = _Chunk(self._next_line, self._lines)
        self._next_line += len(self._lines)
        self._lines, self._bytes = [], 0
        return chunk


class BodyWriter:
    """Stores one ndjson body as a job's chunks while it arrives.

    ``open`` → ``write``… → ``finish`` (the job is queued; answer 202) or ``abort``
    (the job and its chunks are gone)."""

    def __init__(self, runtime: Runtime, tenant_id: str, source: str, *, gzipped: bool) -> None:
        self.runtime = runtime
        self.tenant_id = tenant_id
        self.source = source[:400]
        self.job_id = uuid.uuid4().hex
        self._gunzip = _Gunzip() if gzipped else None
        self._splitter = _Splitter(runtime.settings.max_import_bytes)
        self._seq = 0

    def open(self) -> str:
        now = _wall()
        with self.runtime.write() as session:
            session.add(
                ImportJobRow(
                    id=self.job_id,
                    tenant_id=self.tenant_id,
                    status="receiving",
                    source=self.source,
                    created_at=now,
                    updated_at=now,
                    total_lines=0,
                    total_chunks=0,
                    next_chunk=0,
                    last_line=0,
                    lines=0,
                    applied=0,
                    unchanged=0,
                    failed=0,
                )
            )
        return self.job_id

    def write(self, data: bytes) -> None:
        pieces = self._gunzip.feed(data) if self._gunzip is not None else iter((data,))
        chunks = [c for piece in pieces for c in self._splitter.feed(piece)]
        self._store(chunks)

    def finish(self) -> int:
        """Queue the job; returns its number of (non-blank) lines."""
        if self._gunzip is not None:
            self._gunzip.close()
        chunks = self._splitter.close()
        if self._splitter.nonblank == 0:
            detail = "the body holds no ndjson lines"
            raise InvalidInputError(detail, issues=[Issue("required", detail, ("$",))])
        self._store(chunks, queue=True)
        return self._splitter.nonblank

    def abort(self) -> None:
        with self.runtime.write() as session:
            _delete_job(session, self.job_id)

    def _store(self, chunks: list[_Chunk], *, queue: bool = False) -> None:
        if not chunks and not queue:
            return
        rows = []
        for chunk in chunks:
            data = zlib.compress(b"\n".join(chunk.lines), 1)
            rows.append(
                {
                    "job_id": self.job_id,
                    "seq": self._seq,
                    "first_line": chunk.first_line,
                    "line_count": len(chunk.lines),
                    "data": data,
                }
            )
            self._seq += 1
        values: dict[str, Any] = {"updated_at": _wall()}
        if queue:
            values |= {
                "status": "queued",
                "total_lines": self._splitter.nonblank,
                "total_chunks": self._seq,
            }
        with self.runtime.write() as session:
            if rows:
                session.execute(_INSERT_CHUNK, rows)
            session.execute(sa.update(_JOBS).where(_JOBS.c.id == self.job_id).values(values))
            if queue:
                wake_after_commit(session, TOPIC)


def _delete_job(session: Session, job_id: str) -> None:
    session.execute(sa.delete(_CHUNKS).where(_CHUNKS.c.job_id == job_id))
    session.execute(sa.delete(_ERRORS).where(_ERRORS.c.job_id == job_id))
    session.execute(sa.delete(_JOBS).where(_JOBS.c.id == job_id))


# -- status -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobStatus:
    id: str
    tenant_id: str
    status: str
    source: str
    total_lines: int
    lines: int
    applied: int
    unchanged: int
    failed: int
    last_line: int
    created_at: datetime
    finished_at: datetime | None

    @property
    def done(self) -> bool:
        return self.status == "completed"

    @property
    def progress(self) -> str:
        """The ``X-Progress`` header."""
        share = 100 * self.lines // self.total_lines if self.total_lines else 0
        return f"{self.status}: {self.lines} of {self.total_lines} lines ({share}%)"

    def summary(self, errors: list[JSON]) -> JSON:
        return {
            "job": self.id,
            "status": self.status,
            "lines": self.lines,
            "total_lines": self.total_lines,
            "applied": self.applied,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "errors": errors,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def _status_of(row: ImportJobRow) -> JobStatus:
    return JobStatus(
        row.id,
        row.tenant_id,
        row.status,
        row.source,
        row.total_lines,
        row.lines,
        row.applied,
        row.unchanged,
        row.failed,
        row.last_line,
        row.created_at,
        row.finished_at,
    )


def job_status(session: Session, tenant_id: str, job_id: str) -> JobStatus:
    """A job of ``tenant_id``; another tenant's, or one still arriving, is not found."""
    row = session.get(ImportJobRow, job_id)
    if row is None or row.tenant_id != tenant_id or row.status == "receiving":
        raise NotFoundError(f"import job {job_id} is not known")
    return _status_of(row)


def job_errors(session: Session, job_id: str, *, after: int = 0, limit: int = 1000) -> list[JSON]:
    """The job's bad lines after line ``after``, in line order."""
    rows = session.execute(
        sa.select(_ERRORS.c.line, _ERRORS.c.outcome)
        .where(_ERRORS.c.job_id == job_id, _ERRORS.c.line > after)
        .order_by(_ERRORS.c.line)
        .limit(limit)
    )
    return [{"line": line, **stored} for line, stored in rows]


def cancel(session: Session, tenant_id: str, job_id: str) -> JobStatus:
    """Cancel a job (or forget a finished one): lines already committed stay applied;
    the rest are never applied. The runner working on it stops at its next commit."""
    query = sa.select(ImportJobRow).where(ImportJobRow.id == job_id)
    if is_postgres(session):
        query = query.with_for_update()  # waits for the runner's transaction in flight
    row = session.scalars(query).first()
    if row is None or row.tenant_id != tenant_id or row.status == "receiving":
        raise NotFoundError(f"import job {job_id} is not known")
    status = _status_of(row)
    session.expunge(row)
    _delete_job(session, job_id)
    return status


# -- applying -----------------------------------------------------------------------


@dataclass(slots=True)
class _Line:
    line: int
    resource: JSON | None = None
    digest: str = ""
    #: None: not validated yet (it was unchanged when read; the write path decides).
    issues: list[Issue] | None = None
    error: AppError | None = None

    @property
    def key(self) -> tuple[str, str]:
        assert self.resource is not None
        return str(self.resource["resourceType"]), str(self.resource["id"])


def _invalid(diagnostics: str, code: Any = "structure", where: str = "$") -> AppError:
    return UnprocessableError(diagnostics, issues=[Issue(code, diagnostics, (where,))])


def _parse(number: int, raw: bytes, tenant_id: str, max_line: int, max_depth: int) -> _Line:
    """One line's checks that depend on its content only: what ``PUT`` checks before
    its transaction (JSON, nesting, type, id, references into another tenant)."""
    out = _Line(number)
    if len(raw) > max_line:
        out.error = _invalid(
            f"the line has {len(raw)} bytes; a resource may have {max_line}", "too-costly"
        )
        return out
    try:
        resource = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        out.error = _invalid(f"malformed JSON: {exc}")
        return out
    if json_depth_exceeds(resource, max_depth):
        out.error = _invalid(f"JSON nested deeper than {max_depth} levels", "too-costly")
        return out
    if not isinstance(resource, dict):
        out.error = _invalid("a line must be one resource (a JSON object)")
        return out
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not is_known_type(rtype):
        out.error = _invalid(
            f"unknown resource type {rtype!r}" if rtype else "resourceType is missing",
            "not-supported" if rtype else "required",
            "resourceType",
        )
        return out
    rid = resource.get("id")
    if rid is None:
        # A backfill must be idempotent: a line is a PUT of Type/id, never a POST.
        out.error = _invalid(
            f"the {rtype} has no id: $import writes each line as PUT {rtype}/{{id}}",
            "required",
            f"{rtype}.id",
        )
        return out
    if not isinstance(rid, str) or not valid_id(rid):
        out.error = _invalid(f"invalid id {rid!r}", "value", f"{rtype}.id")
        return out
    issues = check_and_rewrite_references(resource, tenant_id, {}, rtype)
    if issues:
        out.error = UnprocessableError(issues[0].diagnostics, issues=issues)
        return out
    out.resource = resource
    out.digest = content_hash(resource)
    return out


class LeaseLost(Exception):
    """The job was cancelled, finished or taken over by another process."""


class _Careful(Exception):
    """A write failed after validation: apply the chunk again, a savepoint per line."""


@dataclass
class ImportRunner:
    """Claims import jobs and applies them. One per process (the ``import`` worker
    thread of roles ``all`` and ``ingest``), or ``qcpulse import`` in-process."""

    runtime: Runtime
    owner: str = field(default_factory=_owner)

    @property
    def lease(self) -> timedelta:
        return self.runtime.settings.import_lease

    # -- the worker loop ------------------------------------------------------------

    def run_once(self) -> int:
        """Collect abandoned uploads, then run one claimable job to its end; 1 if a
        job was worked on."""
        self._collect_abandoned()
        job_id = self.claim()
        if job_id is None:
            return 0
        self.run(job_id)
        return 1

    def claim(self, job_id: str | None = None) -> str | None:
        """Take the oldest queued job (or ``job_id``) whose lease is free or expired."""

        def work(session: Session) -> str | None:
            now = _wall()
            query = (
                sa.select(_JOBS.c.id)
                .where(
                    _JOBS.c.status.in_(("queued", "running")),
                    sa.or_(_JOBS.c.claimed_until.is_(None), _JOBS.c.claimed_until < now),
                )
                .order_by(_JOBS.c.created_at, _JOBS.c.id)
                .limit(1)
            )
            if job_id is not None:
                query = query.where(_JOBS.c.id == job_id)
            if is_postgres(session):
                query = query.with_for_update(skip_locked=True)
            found = session.scalar(query)
            if found is None:
                return None
            session.execute(
                sa.update(_JOBS)
                .where(_JOBS.c.id == found)
                .values(
                    status="running",
                    claimed_by=self.owner,
                    claimed_until=now + self.lease,
                    updated_at=now,
                )
            )
            return str(found)

        claimed = self.runtime.write_tx(work)
        if claimed is not None:
            log.info("import job claimed", job=claimed, owner=self.owner)
        return claimed

    def run(self, job_id: str, progress: Progress | None = None) -> bool:
        """Apply a claimed job chunk by chunk; True when it completed here."""
        with self.runtime.read() as session:
            job = session.get(ImportJobRow, job_id)
            if job is None or job.claimed_by != self.owner:
                return False
            seq, total, tenant_id = job.next_chunk, job.total_chunks, job.tenant_id
            done, total_lines = job.lines, job.total_lines
        try:
            while seq < total:
                if self.runtime.stop.is_set():
                    self._release(job_id)
                    return False
                done = self._step(job_id, tenant_id, seq, last=seq == total - 1)
                seq += 1
                if progress is not None:
                    progress(done, total_lines)
        except LeaseLost:
            log.info("import job no longer ours", job=job_id, owner=self.owner)
            return False
        log.info("import job completed", job=job_id)
        return True

    def _release(self, job_id: str) -> None:
        """Give the lease back on a clean stop, so another process resumes at once."""
        with self.runtime.write() as session:
            session.execute(
                sa.update(_JOBS)
                .where(_JOBS.c.id == job_id, _JOBS.c.claimed_by == self.owner)
                .values(claimed_by=None, claimed_until=None)
            )

    def _collect_abandoned(self) -> None:
        cutoff = _wall() - STALE_UPLOAD
        with self.runtime.write() as session:
            stale = session.scalars(
                sa.select(_JOBS.c.id).where(
                    _JOBS.c.status == "receiving", _JOBS.c.updated_at < cutoff
                )
            ).all()
            for job_id in stale:
                _delete_job(session, job_id)

    # -- one chunk ------------------------------------------------------------------

    def _step(self, job_id: str, tenant_id: str, seq: int, *, last: bool) -> int:
        settings = self.runtime.settings
        with self.runtime.read() as session:
            row = session.execute(_CHUNK, {"job": job_id, "seq": seq}).first()
            if row is None:
                raise LeaseLost(job_id)  # cancelled, or applied by another process
            first_line, count, data = row
            lines = []
            for offset, raw in enumerate(zlib.decompress(data).split(b"\n")):
                raw = raw.rstrip(b"\r")
                if raw.strip():
                    lines.append(
                        _parse(
                            first_line + offset,
                            raw,
                            tenant_id,
                            settings.max_body_bytes,
                            settings.max_json_depth,
                        )
                    )
            good = [p for p in lines if p.resource is not None]
            heads = repository.current_heads(session, tenant_id, [p.key for p in good])
        # Validation depends on the content only: done here, outside the write lock.
        # Content identical to what is stored was valid when stored (as for a Bundle).
        for p in good:
            head = heads.get(p.key)
            if head is None or head[2] or head[1] != p.digest:
                assert p.resource is not None
                p.issues = validate_resource(p.resource)
        position = first_line + count - 1

        def work(careful: bool) -> Callable[[Session], int]:
            return lambda session: self._apply(
                session, job_id, seq, lines, position, last=last, careful=careful
            )

        try:
            return self.runtime.write_tx(work(False))
        except _Careful:
            return self.runtime.write_tx(work(True))

    def _apply(
        self,
        session: Session,
        job_id: str,
        seq: int,
        lines: list[_Line],
        position: int,
        *,
        last: bool,
        careful: bool,
    ) -> int:
        query = sa.select(ImportJobRow).where(ImportJobRow.id == job_id)
        if is_postgres(session):
            query = query.with_for_update()
        job = session.scalars(query).first()
        # The fence: under the job row's lock (SQLite: the one writer), the job is
        # still ours and still at this chunk, so no chunk is ever applied twice.
        if job is None or job.claimed_by != self.owner or job.next_chunk != seq:
            raise LeaseLost(job_id)
        now = _wall()
        unit = IngestUnit(
            session,
            job.tenant_id,
            self.runtime.tenant_zone(session, job.tenant_id),
            self.runtime.clock.now(),
        )
        unit.prefetch([p.key for p in lines if p.resource is not None and not p.issues])
        applied = unchanged = 0
        errors: list[dict[str, Any]] = []
        for p in lines:
            error = p.error
            if error is None and p.resource is not None:
                rtype, rid = p.key
                if p.issues is None and not unit.is_unchanged(rtype, rid, p.digest):
                    p.issues = validate_resource(p.resource)  # changed since it was read
                if p.issues:
                    error = UnprocessableError(p.issues[0].diagnostics, issues=p.issues)
                else:
                    try:
                        if careful:
                            with session.begin_nested():
                                result = unit.put(p.resource, validated=True, want_body=False)
                                unit.flush()
                                session.flush()
                        else:
                            result = unit.put(p.resource, validated=True, want_body=False)
                    except AppError as exc:
                        if not careful:
                            raise _Careful from exc
                        unit.forget(rtype, rid)
                        error = exc
                    else:
                        if result.status == "unchanged":
                            unchanged += 1
                        else:
                            applied += 1
            if error is not None:
                errors.append({"job_id": job_id, "line": p.line, "outcome": _outcome(p, error)})
        unit.finish()
        if errors:
            session.execute(_INSERT_ERROR, errors)
        session.execute(sa.delete(_CHUNKS).where(_CHUNKS.c.job_id == job_id, _CHUNKS.c.seq == seq))
        job.next_chunk = seq + 1
        job.last_line = position
        job.lines += len(lines)
        job.applied += applied
        job.unchanged += unchanged
        job.failed += len(errors)
        job.updated_at = now
        job.claimed_until = now + self.lease
        if last:
            job.status = "completed"
            job.finished_at = now
            job.claimed_by = None
            job.claimed_until = None
        session.flush()
        return job.lines


def _outcome(line: _Line, error: AppError) -> JSON:
    """What ``import_errors.outcome`` holds: the OperationOutcome, and the resource
    the line named when it named one."""
    stored: JSON = {"outcome": error.operation_outcome()}
    if line.resource is not None:
        stored["resource"] = "/".join(line.key)
    return stored


def worker(runtime: Runtime) -> WorkerThread:
    """The background loop of roles ``all`` and ``ingest``: woken when a job is queued,
    and every few seconds to take over jobs whose lease expired."""
    runner = ImportRunner(runtime)
    return WorkerThread(
        "import",
        runner.run_once,
        stop=runtime.stop,
        notifier=runtime.notifier,
        topic=TOPIC,
        interval=min(5.0, runtime.settings.import_lease.total_seconds()),
    )


# -- the command --------------------------------------------------------------------


def _read_file(path: Path, size: int = 1024 * 1024) -> Iterable[bytes]:
    with path.open("rb") as fh:
        while data := fh.read(size):
            yield data


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def store_file(runtime: Runtime, tenant_id: str, path: Path) -> tuple[str, int]:
    """Store a file (ndjson, or gzip of it) as a queued job: (job id, lines)."""
    writer = BodyWriter(runtime, tenant_id, f"file:{path.name}", gzipped=_is_gzip(path))
    writer.open()
    try:
        for data in _read_file(path):
            writer.write(data)
        lines = writer.finish()
    except BaseException:
        writer.abort()
        raise
    return writer.job_id, lines


def _print_summary(label: str, status: JobStatus, errors: list[JSON]) -> None:
    print(
        f"import {label}: {status.lines} line(s), {status.applied} applied, "
        f"{status.unchanged} unchanged, {status.failed} failed (job {status.id})"
    )
    for error in errors:
        for issue in error["outcome"]["issue"]:
            print(f"  {label}:{error['line']}: {issue['diagnostics']}", file=sys.stderr)
    if status.failed > len(errors):
        print(f"  … and {status.failed - len(errors)} more", file=sys.stderr)


def _finish(runtime: Runtime, runner: ImportRunner, job_id: str, label: str) -> bool | None:
    """Run a claimable job to its end here; print its summary. None when another
    process holds it; otherwise whether every line was applied or unchanged."""
    from qcpulse.progress import progress_bar

    if runner.claim(job_id) is None:
        return None
    with progress_bar(f"importing {label}") as advance:
        completed = runner.run(job_id, progress=advance)
    with runtime.read() as session:
        row = session.get(ImportJobRow, job_id)
        if row is None:
            print(f"import {label}: job {job_id} was cancelled", file=sys.stderr)
            return False
        status = _status_of(row)
        errors = job_errors(session, job_id, limit=100)
    _print_summary(label, status, errors)
    return completed and status.failed == 0


def cmd_import(args: argparse.Namespace) -> int:
    """``qcpulse import FILE… --tenant T`` (or ``--resume``): the same jobs as
    ``POST /fhir/$import``, stored, then applied in this process with a progress bar.
    The outbox events it writes are turned into cases by the server's workers."""
    from qcpulse.app import prepare
    from shared.auth import ensure_tenant
    from shared.settings import Settings

    if not args.files and not args.resume:
        print("qcpulse import: name at least one FILE, or --resume", file=sys.stderr)
        return 2
    if args.files and not args.tenant:
        print("qcpulse import: --tenant is required with files", file=sys.stderr)
        return 2
    runtime = Runtime.from_settings(Settings())
    prepare(runtime)
    runner = ImportRunner(runtime)
    ok = True
    try:
        if args.resume:
            with runtime.read() as session:
                query = sa.select(_JOBS.c.id, _JOBS.c.source).where(
                    _JOBS.c.status.in_(("queued", "running"))
                )
                if args.tenant:
                    query = query.where(_JOBS.c.tenant_id == args.tenant)
                pending = session.execute(query.order_by(_JOBS.c.created_at)).all()
            for job_id, source in pending:
                result = _finish(runtime, runner, job_id, source)
                if result is None:
                    print(f"import {source}: job {job_id} is held by another process")
                ok = ok and result is not False
        for name in args.files:
            path = Path(name)
            if not path.is_file():
                print(f"qcpulse import: {name}: no such file", file=sys.stderr)
                ok = False
                continue
            with runtime.write() as session:
                ensure_tenant(session, args.tenant, timezone=runtime.settings.default_timezone)
            try:
                job_id, _ = store_file(runtime, args.tenant, path)
            except AppError as exc:
                print(f"qcpulse import: {name}: {exc.detail}", file=sys.stderr)
                ok = False
                continue
            ok = _finish(runtime, runner, job_id, name) is True and ok
    finally:
        runtime.close()
    return 0 if ok else 1


def resources_ndjson(bundles: Iterable[JSON], out: Path, *, compress: bool = False) -> int:
    """Write the resources of ``bundles``' PUT entries, one per line (for tests and
    the bench; ``qcpulse synth`` writes Bundles). Returns the number of lines."""
    count = 0
    with gzip.open(out, "wb", compresslevel=1) if compress else out.open("wb") as fh:
        for bundle in bundles:
            for entry in bundle.get("entry") or ():
                request = entry.get("request") or {}
                if request.get("method") == "PUT" and isinstance(entry.get("resource"), dict):
                    fh.write(orjson.dumps(entry["resource"]) + b"\n")
                    count += 1
    return count
