"""Manual indicators: monthly numerators and denominators entered through the API.

Organisational facts (EQA participation, coding accuracy, …) are not patient events,
so a ``kind: manual`` definition has no population or clock: an authorised user enters
one numerator and denominator per month, for the whole hospital (``department`` "")
or for one department. Every entry is audited: who, when, the value before and after.

How the values read (``queries`` uses :func:`monthly` and :func:`pooled`):

- a month counts in a range when any of its days lies in the range;
- without a department filter, a month's value is the whole-hospital entry when there
  is one, else the sum of the department entries (never both: that would count twice);
- with a department filter (or a department-limited key), the department entries of
  those departments; the whole-hospital entry is no department's;
- a proportion (unit ``percent``) needs numerator ≤ denominator; the other units
  (events per 100, 1,000, 10,000) are ratios, and the numerator may exceed the
  denominator.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from services.indicators.definitions import IndicatorDefinition
from shared.auth import Principal
from shared.db import Base, UTCDateTime
from shared.errors import ConflictError, ForbiddenError, UnprocessableError

#: The department of a whole-hospital entry.
HOSPITAL = ""

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


class ManualValueRow(Base):
    """The current value of one manual indicator for one month and department."""

    __tablename__ = "manual_values"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    indicator: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    #: The first day of the month.
    month: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    #: A department code, or "" for the whole hospital.
    department: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    numerator: Mapped[int] = mapped_column(sa.Integer)
    denominator: Mapped[int] = mapped_column(sa.Integer)
    note: Mapped[str] = mapped_column(sa.Text, default="")
    #: The id of the API key that entered the current value.
    entered_by: Mapped[str] = mapped_column(sa.String(32))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ManualAuditRow(Base):
    """One ``PUT`` of a manual value: who, when, the value before (None for the first
    entry) and after."""

    __tablename__ = "manual_value_audit"
    __table_args__ = (
        sa.Index("ix_manual_audit_value", "tenant_id", "indicator", "month", "department"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    indicator: Mapped[str] = mapped_column(sa.String(64))
    month: Mapped[date] = mapped_column(sa.Date)
    department: Mapped[str] = mapped_column(sa.String(64))
    entered_by: Mapped[str] = mapped_column(sa.String(32))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    previous_numerator: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    previous_denominator: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    previous_note: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    numerator: Mapped[int] = mapped_column(sa.Integer)
    denominator: Mapped[int] = mapped_column(sa.Integer)
    note: Mapped[str] = mapped_column(sa.Text)


# -- the arithmetic kind of a manual indicator ---------------------------------------


def measure(defn: IndicatorDefinition) -> Literal["proportion", "ratio"]:
    """How a manual indicator's numerator relates to its denominator: ``percent`` is a
    proportion (a subset), the per-N units are ratios (events per N)."""
    return "proportion" if defn.unit == "percent" else "ratio"


# -- entering values ------------------------------------------------------------------


def parse_month(text: str) -> date:
    """``2026-03`` → 2026-03-01; anything else is a 422."""
    m = _MONTH_RE.match(text)
    if m is None or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1900:
        raise UnprocessableError(f"invalid month '{text}' (write YYYY-MM, e.g. 2026-03)")
    return date(int(m.group(1)), int(m.group(2)), 1)


def check_entry(defn: IndicatorDefinition, numerator: int, denominator: int) -> None:
    if defn.kind != "manual":
        raise ConflictError(f"indicator '{defn.code}' is computed from events, not entered")
    if numerator < 0:
        raise UnprocessableError("numerator must be 0 or more")
    if denominator <= 0:
        raise UnprocessableError("denominator must be more than 0")
    if measure(defn) == "proportion" and numerator > denominator:
        raise UnprocessableError(
            f"numerator ({numerator}) exceeds denominator ({denominator}):"
            f" '{defn.code}' is a proportion"
        )


def check_department(principal: Principal, department: str | None) -> str:
    """The stored department of an entry; a department-limited key enters only its own."""
    if department is None:
        if principal.departments is not None:
            raise ForbiddenError("this key may enter values of its departments only")
        return HOSPITAL
    if not department.strip():
        raise UnprocessableError("department must be a department code or null")
    if principal.departments is not None and department not in principal.departments:
        raise ForbiddenError(f"this key may not enter values of department '{department}'")
    return department


def put_value(
    session: Session,
    principal: Principal,
    defn: IndicatorDefinition,
    month: date,
    department: str,
    numerator: int,
    denominator: int,
    note: str,
    now: datetime,
) -> ManualValueRow:
    """Store the value and its audit row (checks done by the caller)."""
    key = (principal.tenant_id, defn.code, month, department)
    row = session.get(ManualValueRow, key, with_for_update=True)
    previous = None if row is None else (row.numerator, row.denominator, row.note)
    if row is None:
        row = ManualValueRow(
            tenant_id=principal.tenant_id,
            indicator=defn.code,
            month=month,
            department=department,
        )
        session.add(row)
    row.numerator, row.denominator, row.note = numerator, denominator, note
    row.entered_by, row.entered_at = principal.key_id, now
    session.add(
        ManualAuditRow(
            tenant_id=principal.tenant_id,
            indicator=defn.code,
            month=month,
            department=department,
            entered_by=principal.key_id,
            entered_at=now,
            previous_numerator=previous[0] if previous else None,
            previous_denominator=previous[1] if previous else None,
            previous_note=previous[2] if previous else None,
            numerator=numerator,
            denominator=denominator,
            note=note,
        )
    )
    session.flush()
    return row


def value_json(row: ManualValueRow) -> dict[str, Any]:
    return {
        "code": row.indicator,
        "month": row.month.strftime("%Y-%m"),
        "department": row.department or None,
        "numerator": row.numerator,
        "denominator": row.denominator,
        "note": row.note,
        "entered_by": row.entered_by,
        "entered_at": row.entered_at.isoformat(),
    }


def _audit_json(row: ManualAuditRow) -> dict[str, Any]:
    previous = None
    if row.previous_numerator is not None:
        previous = {
            "numerator": row.previous_numerator,
            "denominator": row.previous_denominator,
            "note": row.previous_note,
        }
    return {
        "entered_by": row.entered_by,
        "entered_at": row.entered_at.isoformat(),
        "previous": previous,
        "numerator": row.numerator,
        "denominator": row.denominator,
        "note": row.note,
    }


def list_values(
    session: Session,
    tenant_id: str,
    code: str,
    departments: Sequence[str] | None,
    start: date | None = None,
    end: date | None = None,
) -> list[dict[str, Any]]:
    """Entries by month and department, each with its audit trail (oldest first).
    ``departments`` None lists all, the whole-hospital entries included."""
    values = sa.select(ManualValueRow).where(
        ManualValueRow.tenant_id == tenant_id, ManualValueRow.indicator == code
    )
    audits = sa.select(ManualAuditRow).where(
        ManualAuditRow.tenant_id == tenant_id, ManualAuditRow.indicator == code
    )
    if departments is not None:
        values = values.where(ManualValueRow.department.in_(list(departments)))
        audits = audits.where(ManualAuditRow.department.in_(list(departments)))
    if start is not None:
        values = values.where(ManualValueRow.month >= start)
        audits = audits.where(ManualAuditRow.month >= start)
    if end is not None:
        values = values.where(ManualValueRow.month <= end)
        audits = audits.where(ManualAuditRow.month <= end)
    trail: dict[tuple[date, str], list[dict[str, Any]]] = defaultdict(list)
    for audit in session.scalars(audits.order_by(ManualAuditRow.id)):
        trail[(audit.month, audit.department)].append(_audit_json(audit))
    rows = session.scalars(values.order_by(ManualValueRow.month, ManualValueRow.department)).all()
    return [{**value_json(r), "audit": trail.get((r.month, r.department), [])} for r in rows]


# -- reading values -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    numerator: int
    denominator: int


def monthly(
    session: Session,
    tenant_id: str,
    code: str,
    start: date,
    end: date,
    departments: Sequence[str] | None,
) -> dict[date, dict[str, Entry]]:
    """Entries of the months that touch [start, end], by month and department."""
    query = sa.select(
        ManualValueRow.month,
        ManualValueRow.department,
        ManualValueRow.numerator,
        ManualValueRow.denominator,
    ).where(
        ManualValueRow.tenant_id == tenant_id,
        ManualValueRow.indicator == code,
        ManualValueRow.month >= start.replace(day=1),
        ManualValueRow.month <= end,
    )
    if departments is not None:
        query = query.where(ManualValueRow.department.in_(list(departments)))
    out: dict[date, dict[str, Entry]] = defaultdict(dict)
    for month, department, numerator, denominator in session.execute(query):
        out[month][department] = Entry(numerator, denominator)
    return out


def pooled(by_department: dict[str, Entry], departments: Sequence[str] | None) -> Entry:
    """One month's value: the whole-hospital entry when the hospital is asked for and
    has one, else the sum of the department entries."""
    if departments is None and HOSPITAL in by_department:
        return by_department[HOSPITAL]
    parts = [e for d, e in by_department.items() if d != HOSPITAL]
    return Entry(sum(e.numerator for e in parts), sum(e.denominator for e in parts))
