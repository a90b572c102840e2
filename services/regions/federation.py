"""Federated submission, the region's side (docs/FEDERATION.md).

A hospital running its own qcpulse submits summary MeasureReports (one indicator,
one month, the hospital or one department: numerator and denominator, no patient
data) with a submission key bound to (region, member). Every submitted version is
kept; an identical re-send is not a new version. League tables read the latest
version through :func:`submitted_counts`.
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Mapped, Session, mapped_column

from services.indicators import Catalogue
from services.regions.models import RegionMember
from shared.clock import utcnow
from shared.db import Base, JSONDoc, UTCDateTime, advisory_locks
from shared.errors import (
    AppError,
    ConflictError,
    Issue,
    NotFoundError,
    UnauthorizedError,
    UnprocessableError,
)

#: Submission keys: ``qcs_`` + 43 url-safe characters, so that one is never taken for
#: an API key (``qcp_``) and the other way round; only the SHA-256 is stored.
KEY_PREFIX = "qcs_"
MEASURE_BASE = "https://qcpulse.org/fhir/Measure"
DEPARTMENT_URL = "https://qcpulse.org/fhir/StructureDefinition/department"
#: ``MeasureReport.reporter.identifier.system`` naming the member a report is from.
MEMBER_SYSTEM = "https://qcpulse.org/fhir/sid/region-member"
#: Fields left out of a report's digest: they change on every build, not with the data.
VOLATILE_FIELDS = frozenset({"id", "meta", "date", "text"})


class SubmissionKeyRow(Base):
    """A key a member instance submits with. Bound to one (region, member)."""

    __tablename__ = "region_submission_keys"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["region_id", "member_id"], ["region_members.region_id", "region_members.member_id"]
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    region_id: Mapped[str] = mapped_column(sa.String(64))
    member_id: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SubmissionRow(Base):
    """One submitted version of one (member, indicator, month, department) figure."""

    __tablename__ = "region_submissions"
    __table_args__ = (
        sa.Index(
            "ix_region_submissions_region_id",
            "region_id",
            "member_id",
            "code",
            "month",
            "department",
            "version",
        ),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    region_id: Mapped[str] = mapped_column(sa.String(64))
    member_id: Mapped[str] = mapped_column(sa.String(64))
    code: Mapped[str] = mapped_column(sa.String(64))
    #: ``YYYY-MM``, the month of the report's period in the member's time zone.
    month: Mapped[str] = mapped_column(sa.String(7))
    #: None: the whole hospital.
    department: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    numerator: Mapped[int] = mapped_column(sa.Integer)
    denominator: Mapped[int] = mapped_column(sa.Integer)
    #: 1, 2, … per (region, member, code, month, department): every change is kept.
    version: Mapped[int] = mapped_column(sa.Integer)
    #: :func:`report_digest` of ``report``: an identical re-send is not a new version.
    digest: Mapped[str] = mapped_column(sa.String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    key_id: Mapped[str] = mapped_column(sa.String(32))
    report: Mapped[dict[str, Any]] = mapped_column(JSONDoc)


# -- keys ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submitter:
    """Who a submission key speaks for."""

    key_id: str
    region_id: str
    member_id: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_submission_key(
    session: Session, region_id: str, member_id: str, *, name: str = ""
) -> tuple[SubmissionKeyRow, str]:
    """A new key for (region, member): the row and the secret, which is not stored.
    The member must be one that submits (no ``tenant_id``: a tenant of this instance
    is read directly, it has nothing to submit)."""
    member = session.get(RegionMember, (region_id, member_id))
    if member is None:
        raise NotFoundError(f"region '{region_id}' has no member '{member_id}'")
    if member.tenant_id is not None:
        raise ConflictError(
            f"member '{member_id}' is tenant '{member.tenant_id}' of this instance: "
            "its figures are read here, it submits none"
        )
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = SubmissionKeyRow(
        id=secrets.token_hex(8),
        region_id=region_id,
        member_id=member_id,
        name=name,
        key_hash=hash_key(secret),
    )
    session.add(row)
    session.flush()
    return row, secret


def authenticate_submitter(session: Session, authorization: str | None) -> Submitter:
    if not authorization:
        raise UnauthorizedError("missing Authorization: Bearer <submission key>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("Authorization must be 'Bearer <submission key>'")
    row = session.execute(
        sa.select(SubmissionKeyRow.id, SubmissionKeyRow.region_id, SubmissionKeyRow.member_id)
        .where(SubmissionKeyRow.key_hash == hash_key(token.strip()))
        .where(SubmissionKeyRow.revoked_at.is_(None))
    ).one_or_none()
    if row is None:
        raise UnauthorizedError("invalid or revoked submission key")
    return Submitter(key_id=row[0], region_id=row[1], member_id=row[2])


# -- reading reports ----------------------------------------------------------------


def report_digest(report: dict[str, Any]) -> str:
    """SHA-256 of the report without the fields a rebuild changes (``date``, ``id``,
    ``meta``, ``text``), keys sorted. The hospital computes it too, to re-send only
    what changed."""
    body = {k: v for k, v in report.items() if k not in VOLATILE_FIELDS}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Figure:
    """What a report says, once checked."""

    code: str
    month: str
    department: str | None
    numerator: int
    denominator: int
    digest: str
    report: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str | None]:
        return self.code, self.month, self.department


def _when(value: Any) -> datetime | date | None:
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def report_month(period: Any) -> str | None:
    """``YYYY-MM`` when the period is exactly one calendar month (in its own offset):
    ``2026-03-01T00:00:00+08:00`` to ``2026-03-31T23:59:59+08:00``, or the dates."""
    if not isinstance(period, dict):
        return None
    start, end = _when(period.get("start")), _when(period.get("end"))
    if start is None or end is None:
        return None
    if isinstance(start, datetime):
        if not isinstance(end, datetime) or start.utcoffset() != end.utcoffset():
            return None
        if start.time() != time(0) or end.time().replace(microsecond=0) != time(23, 59, 59):
            return None
        start, end = start.date(), end.date()
    elif isinstance(end, datetime):
        return None
    last = calendar.monthrange(start.year, start.month)[1]
    if start.day != 1 or end != start.replace(day=last):
        return None
    return f"{start.year:04d}-{start.month:02d}"


def _count(group: dict[str, Any], population: str) -> int | None:
    for entry in group.get("population") or ():
        codings = (entry.get("code") or {}).get("coding") or ()
        if any(c.get("code") == population for c in codings):
            count = entry.get("count")
            return count if isinstance(count, int) and count >= 0 else None
    return None


def _department(report: dict[str, Any]) -> tuple[bool, str | None]:
    found = [e for e in report.get("extension") or () if e.get("url") == DEPARTMENT_URL]
    if not found:
        return True, None
    value = found[0].get("valueString")
    ok = len(found) == 1 and isinstance(value, str) and 0 < len(value) <= 64
    return ok, value if ok else None


def _member(report: dict[str, Any]) -> str | None:
    identifier = (report.get("reporter") or {}).get("identifier") or {}
    if identifier.get("system") != MEMBER_SYSTEM:
        return None
    value = identifier.get("value")
    return value if isinstance(value, str) else None


def read_report(
    report: Any, where: str, submitter: Submitter, catalogue: Catalogue
) -> tuple[Figure | None, list[Issue]]:
    """The figure a summary MeasureReport carries, or the issues that refuse it."""
    from fhir.resources.R4B.measurereport import MeasureReport

    if not isinstance(report, dict) or report.get("resourceType") != "MeasureReport":
        return None, [Issue("not-supported", "only MeasureReport resources are accepted", (where,))]
    try:
        MeasureReport.model_validate(report)
    except ValidationError as exc:
        return None, [
            Issue("structure", f"MeasureReport: {err['msg']}", (where,))
            for err in exc.errors(include_url=False)[:20]
        ]
    except (ValueError, TypeError) as exc:
        return None, [Issue("value", f"MeasureReport: {exc}", (where,))]
    issues: list[Issue] = []
    if report.get("type") != "summary":
        issues.append(Issue("value", "type must be 'summary'", (f"{where}.type",)))
    measure = str(report.get("measure", ""))
    code = measure.partition("|")[0].removeprefix(MEASURE_BASE + "/")
    defn = catalogue.get(code) if measure.startswith(MEASURE_BASE + "/") else None
    if defn is None:
        issues.append(
            Issue("not-found", f"measure '{measure}' is no known indicator", (f"{where}.measure",))
        )
    month = report_month(report.get("period"))
    if month is None:
        issues.append(Issue("value", "the period must be one calendar month", (f"{where}.period",)))
    member = _member(report)
    if member != submitter.member_id:
        issues.append(
            Issue(
                "forbidden",
                f"reporter.identifier ({MEMBER_SYSTEM}) must be this key's member "
                f"'{submitter.member_id}'",
                (f"{where}.reporter",),
            )
        )
    ok, department = _department(report)
    if not ok:
        issues.append(
            Issue("value", "one department extension with a valueString", (f"{where}.extension",))
        )
    groups = report.get("group") or []
    numerator = denominator = None
    if len(groups) != 1:
        issues.append(Issue("value", "exactly one group", (f"{where}.group",)))
    else:
        numerator, denominator = _count(groups[0], "numerator"), _count(groups[0], "denominator")
        if numerator is None or denominator is None:
            issues.append(
                Issue(
                    "required",
                    "numerator and denominator populations with counts ≥ 0",
                    (f"{where}.group[0].population",),
                )
            )
        elif defn is not None and defn.kind == "proportion" and numerator > denominator:
            issues.append(
                Issue("value", "a proportion's numerator exceeds its denominator", (where,))
            )
    if issues or defn is None or month is None or numerator is None or denominator is None:
        return None, issues
    figure = Figure(code, month, department, numerator, denominator, report_digest(report), report)
    return figure, []


def read_body(
    body: Any, submitter: Submitter, catalogue: Catalogue, *, max_entries: int
) -> list[Figure]:
    """Every figure of a Bundle (``collection`` or ``batch``) or of one MeasureReport;
    UnprocessableError with every issue when any entry is refused."""
    if not isinstance(body, dict):
        raise UnprocessableError("the body must be a Bundle or a MeasureReport")
    if body.get("resourceType") == "MeasureReport":
        resources: list[tuple[Any, str]] = [(body, "MeasureReport")]
    elif body.get("resourceType") == "Bundle":
        if body.get("type") not in ("collection", "batch"):
            raise UnprocessableError(
                "a submission Bundle is of type 'collection' or 'batch'",
                issues=[
                    Issue("value", "Bundle.type must be collection or batch", ("Bundle.type",))
                ],
            )
        entries = body.get("entry") or []
        if not isinstance(entries, list) or not entries:
            raise UnprocessableError("the Bundle has no entry")
        if len(entries) > max_entries:
            raise UnprocessableError(f"the Bundle has more than {max_entries} entries")
        resources = [
            (e.get("resource") if isinstance(e, dict) else None, f"Bundle.entry[{i}].resource")
            for i, e in enumerate(entries)
        ]
    else:
        raise UnprocessableError(
            "the body must be a Bundle or a MeasureReport",
            issues=[Issue("not-supported", "expected a Bundle or a MeasureReport", ("$",))],
        )
    figures: list[Figure] = []
    issues: list[Issue] = []
    seen: dict[tuple[str, str, str | None], str] = {}
    for resource, where in resources:
        figure, found = read_report(resource, where, submitter, catalogue)
        issues += found
        if figure is None:
            continue
        if figure.key in seen:
            issues.append(
                Issue(
                    "duplicate",
                    f"the same indicator, month and department as {seen[figure.key]}",
                    (where,),
                )
            )
            continue
        seen[figure.key] = where
        figures.append(figure)
    if issues:
        raise UnprocessableError(
            f"{len(issues)} issue(s); nothing was stored: {issues[0].diagnostics}", issues=issues
        )
    return figures


# -- storing and reading ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    accepted: int
    unchanged: int

    def operation_outcome(self) -> dict[str, Any]:
        return {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": f"accepted {self.accepted}, unchanged {self.unchanged}",
                }
            ],
        }


def _latest(
    session: Session, region_id: str, member_id: str, codes: Iterable[str], months: Iterable[str]
) -> dict[tuple[str, str, str | None], SubmissionRow]:
    rows = session.scalars(
        sa.select(SubmissionRow)
        .where(
            SubmissionRow.region_id == region_id,
            SubmissionRow.member_id == member_id,
            SubmissionRow.code.in_(sorted(set(codes))),
            SubmissionRow.month.in_(sorted(set(months))),
        )
        .order_by(SubmissionRow.version.desc())
    )
    latest: dict[tuple[str, str, str | None], SubmissionRow] = {}
    for row in rows:
        latest.setdefault((row.code, row.month, row.department), row)
    return latest


def store(
    session: Session, submitter: Submitter, figures: Sequence[Figure], now: datetime
) -> Outcome:
    """A new version of each figure whose digest differs from its latest; flushes only."""
    # Two sends of one member at once (a retry overtaking itself) queue here, so that
    # two rows never get the same version.
    advisory_locks(session, [f"region-submission:{submitter.region_id}:{submitter.member_id}"])
    latest = _latest(
        session,
        submitter.region_id,
        submitter.member_id,
        (f.code for f in figures),
        (f.month for f in figures),
    )
    accepted = 0
    for figure in figures:
        last = latest.get(figure.key)
        if last is not None and last.digest == figure.digest:
            continue
        session.add(
            SubmissionRow(
                region_id=submitter.region_id,
                member_id=submitter.member_id,
                code=figure.code,
                month=figure.month,
                department=figure.department,
                numerator=figure.numerator,
                denominator=figure.denominator,
                version=(last.version + 1) if last is not None else 1,
                digest=figure.digest,
                received_at=now,
                key_id=submitter.key_id,
                report=figure.report,
            )
        )
        accepted += 1
    session.flush()
    return Outcome(accepted, len(figures) - accepted)


def submitted_counts(
    session: Session, region_id: str, member_id: str, code: str, months: list[str]
) -> dict[tuple[str, str | None], tuple[int, int]]:
    """(month, department or None for the hospital) → (numerator, denominator) of the
    latest version a member submitted; a month it never submitted is absent."""
    if not months:
        return {}
    latest = _latest(session, region_id, member_id, [code], months)
    return {
        (month, department): (row.numerator, row.denominator)
        for (_, month, department), row in latest.items()
    }


def submission_versions(
    session: Session, region_id: str, member_id: str, code: str, month: str
) -> list[SubmissionRow]:
    """Every version of a member's figures for one indicator and month, oldest first."""
    return list(
        session.scalars(
            sa.select(SubmissionRow)
            .where(
                SubmissionRow.region_id == region_id,
                SubmissionRow.member_id == member_id,
                SubmissionRow.code == code,
                SubmissionRow.month == month,
            )
            .order_by(SubmissionRow.department, SubmissionRow.version)
        )
    )


def cmd_submission_key(args: argparse.Namespace) -> int:
    """``qcpulse region submission-key REGION MEMBER``: print a new key (shown once)."""
    from qcpulse.app import prepare
    from shared.runtime import Runtime
    from shared.settings import Settings

    runtime = Runtime.from_settings(Settings())
    try:
        prepare(runtime)
        with runtime.write() as session:
            row, secret = create_submission_key(session, args.region, args.member, name=args.name)
    except AppError as exc:
        print(f"qcpulse region submission-key: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        runtime.close()
    print(secret)
    print(
        f"# submission key {row.id}: region {row.region_id}, member {row.member_id} (shown once)",
        file=sys.stderr,
    )
    return 0
