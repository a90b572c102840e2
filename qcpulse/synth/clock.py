"""Time helpers for the simulation.

The simulation runs on UTC-aware datetimes and renders every FHIR time in China
Standard Time. China has had no daylight saving time since 1991, so a fixed +08:00
offset is exact and avoids a tz database lookup per timestamp (the generator
formats hundreds of thousands of them).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

CST = timezone(timedelta(hours=8))


def fhir_time(at: datetime) -> str:
    """``2026-03-01T08:15:00+08:00``: FHIR dateTime/instant in local time."""
    return at.astimezone(CST).isoformat(timespec="seconds")


def local_date(at: datetime) -> date:
    return at.astimezone(CST).date()


def local_hour(at: datetime) -> int:
    return at.astimezone(CST).hour


def at_local(day: date, hour: int, minute: int = 0) -> datetime:
    """The UTC instant of ``hour:minute`` on local ``day``."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=CST).astimezone(UTC)


def minutes(m: float) -> timedelta:
    return timedelta(minutes=m)


def floor_minute(at: datetime) -> datetime:
    """Clinical times are charted to the minute in Chinese HIS/EMR systems."""
    return at.replace(second=0, microsecond=0)
