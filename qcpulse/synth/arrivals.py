"""When patients arrive.

Two superposed processes: acute arrivals through the ED follow the familiar
double-humped daily curve (morning and evening peaks, a trough at 3–5 am) every day
of the week; booked admissions and clinic visits follow office hours on weekdays.
The night trough matters for the indicators: door-to-needle and door-to-balloon
times are worse at night in every published Chinese registry, and alert routing is
tested by cases that fall due at 3 am.

Arrival times come from inverting the cumulative intensity, one local hour at a
time, so they are produced in order and never held in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random

from qcpulse.synth.clock import CST

_ACUTE_RAW = (
    0.50, 0.40, 0.32, 0.28, 0.28, 0.35, 0.55, 0.85, 1.25, 1.55, 1.65, 1.55,
    1.30, 1.25, 1.35, 1.40, 1.35, 1.30, 1.30, 1.35, 1.30, 1.10, 0.85, 0.65,
)  # fmt: skip
_ELECTIVE_RAW = (
    0.05, 0.03, 0.02, 0.02, 0.02, 0.03, 0.10, 0.60, 2.30, 3.10, 3.00, 2.40,
    1.10, 1.90, 2.50, 2.20, 1.40, 0.60, 0.25, 0.15, 0.10, 0.07, 0.05, 0.05,
)  # fmt: skip
_WEEKEND_ELECTIVE = 0.35
_WEEKDAY_ELECTIVE = (7 - 2 * _WEEKEND_ELECTIVE) / 5  # keeps the weekly mean at 1


def _normalise(raw: tuple[float, ...]) -> tuple[float, ...]:
    mean = sum(raw) / len(raw)
    return tuple(x / mean for x in raw)


ACUTE_PROFILE = _normalise(_ACUTE_RAW)
ELECTIVE_PROFILE = _normalise(_ELECTIVE_RAW)


@dataclass(frozen=True, slots=True)
class Arrival:
    at: datetime
    acute: bool


@dataclass(frozen=True, slots=True)
class _Bin:
    start: datetime
    hours: float
    acute_rate: float  # arrivals per hour
    elective_rate: float

    @property
    def rate(self) -> float:
        return self.acute_rate + self.elective_rate


def _bins(start: datetime, end: datetime, per_day: float, acute_share: float) -> Iterator[_Bin]:
    t = start
    while t < end:
        local = t.astimezone(CST)
        next_hour = local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        stop = min(end, next_hour)
        weekday_factor = _WEEKEND_ELECTIVE if local.weekday() >= 5 else _WEEKDAY_ELECTIVE
        yield _Bin(
            start=t,
            hours=(stop - t).total_seconds() / 3600,
            acute_rate=per_day / 24 * acute_share * ACUTE_PROFILE[local.hour],
            elective_rate=per_day
            / 24
            * (1 - acute_share)
            * ELECTIVE_PROFILE[local.hour]
            * weekday_factor,
        )
        t = stop


def arrivals(
    rng: Random,
    *,
    start: datetime,
    end: datetime,
    per_day: float,
    acute_share: float,
    exact: int | None = None,
) -> Iterator[Arrival]:
    """Arrivals in ``[start, end)`` in time order.

    Without ``exact`` the count is Poisson; with it, exactly ``exact`` arrivals are
    placed as the order statistics of the same intensity.
    """
    if exact is None:
        targets: Iterator[float] = _poisson_targets(rng)
    else:
        total = sum(b.rate * b.hours for b in _bins(start, end, per_day, acute_share))
        targets = _sorted_uniform_targets(rng, exact, total)
    bins = _bins(start, end, per_day, acute_share)
    current = next(bins, None)
    done = 0.0  # cumulative intensity at the start of ``current``
    for target in targets:
        while current is not None and done + current.rate * current.hours < target:
            done += current.rate * current.hours
            current = next(bins, None)
        if current is None:
            return
        offset_h = (target - done) / current.rate if current.rate > 0 else 0.0
        at = current.start + timedelta(hours=min(offset_h, current.hours))
        at = at.astimezone(UTC).replace(microsecond=0)
        acute = rng.random() * current.rate < current.acute_rate
        yield Arrival(at=at, acute=acute)


def _poisson_targets(rng: Random) -> Iterator[float]:
    x = 0.0
    while True:
        x += rng.expovariate(1.0)
        yield x


def _sorted_uniform_targets(rng: Random, n: int, total: float) -> Iterator[float]:
    """``n`` sorted uniforms on ``[0, total)`` generated in order (no sort, O(1) memory)."""
    u = 0.0
    for i in range(n):
        u = 1.0 - (1.0 - u) * math.pow(rng.random(), 1.0 / (n - i))
        yield u * total
