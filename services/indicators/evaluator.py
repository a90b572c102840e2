"""The indicator evaluator: one episode's facts in, that episode's cases out.

``evaluate`` is a pure, deterministic function of (definition, episode, facts, now,
time zone, code map): no I/O, no wall clock, the same cases whatever the order of the
facts. Incremental maintenance is recompute-and-diff (docs/ARCHITECTURE.md), so late,
corrected or retracted data re-decides a case simply by evaluating again.

Decisions where docs/INDICATORS.md leaves room (copied to docs/):

Facts and episodes
    * Facts with status ``entered-in-error``, and Procedure / MedicationAdministration
      facts with ``not-done``, are ignored (ingest drops them too; this is a second line).
      If a resource appears twice, one version is kept, chosen by content, not position.
    * A cancelled or entered-in-error Encounter yields no case for any indicator.
    * Condition facts carry no verification status, so any coded Condition counts.
    * ``medication`` selectors read MedicationAdministration and fall back to
      MedicationRequest (authoredOn) only when the episode has no administration matching
      the selector's code filters ("that drug class"); time filters apply afterwards.

Clock
    * With a stop: ``numerator`` when stop − start ≤ window (exactly at the window is
      met), else ``denominator``. Without a stop: ``pending`` while now < deadline,
      ``denominator`` from the deadline on, or — for ``decided_by: discharge`` —
      ``pending`` until discharge. Late documentation of the stop re-decides the case.
    * No clock start, no case: a case that can be neither timed nor filed is not counted.
    * ``deadline`` = start + window and ``at_risk_at`` = start + at_risk (or share × window,
      default 2/3) are set on every clock case whatever its status; ``decide_at`` is set
      only on a pending case that the deadline alone will decide, and is None otherwise.
    * Definitions with a clock but no window (NIT-2026-VII, AMR-PATHOGEN) are decided at
      the clock start: ``deadline`` = start, no ``at_risk_at``; a start in the future
      (a scheduled surgery) leaves the case pending until then, with decide_at = start.
    * Discharge-decided cases stay pending while the episode is open even when their
      numerator is already certain, because their period date (the discharge) is not
      known yet.
    * A time point that has not happened (no discharge yet, no antibiotic yet) lies in the
      future: "before/not_after it" holds, "after/not_before it" does not. A fact without a
      time never satisfies a time relation. ``before``/``after`` are strict,
      ``not_after``/``not_before`` inclusive.

Periods
    * ``period_date`` is the local date (``tz``, default Asia/Shanghai) of the clock start
      (``period: start``) or of the discharge (``period: discharge``).
    * A case whose anchor date is not known yet (discharge-anchored, episode still open)
      is pending — whatever it would otherwise be — and is filed under the local date of
      the episode's arrival so that pending counts have a home; once the episode is
      discharged it moves to its real period date. Without an arrival either, the episode
      yields no case.

Indicator-specific
    * PIT-2026-23 (STEMI) and NIT-2026-I-DNT (``pending_while``): diagnosis present, no
      PCI / thrombolytic yet, episode open → pending with deadline and at_risk_at (so
      alerts fire) but decide_at None, even past the deadline: a late procedure still
      makes it a (denominator) case, and closure without one removes the case entirely.
    * NIT-2026-III-A / PIT-2026-40: age from the *local* date of arrival. Unknown birth
      date → included (``unknown_age: include``): inpatients are overwhelmingly adults,
      and excluding would hide unassessed patients whenever the Patient resource is late
      or incomplete, flattering the rate; the definition can say ``exclude``.
      "Discharged within 24 h without an assessment" means discharge − admission ≤ 24 h
      and no assessment at all (a late-documented one counts as an assessment); it wins
      over the deadline, so an episode discharged at 20 h unassessed is excluded
      although its deadline has not passed.
    * NIT-2026-IV bundles: every element is taken at its first occurrence at or after
      T0 − 6 h; the clock stops when the last required element happened (never earlier
      than T0), so the bundle is met when all elements fall in [T0 − 6 h, T0 + window].
      "Culture before the first antibiotic" compares with the first antibiotic of the
      bundle (at or after T0 − 6 h), inclusive of equal timestamps (charting is often at
      minute resolution). The repeat lactate is required only when the first lactate's
      value is > 2 (values read as mmol/L, the unit of both LOINC codes; no value → not
      required). ``details["missing"]`` lists the elements not yet documented.
    * PIT-2026-31: the clock starts at Observation.issued, falling back to the effective
      time when issued is absent (``details["start"] = "effective"``): the effective time
      is never later, so the fallback can only make the target harder, never hide a late
      notification. Communication.about may be relative, absolute or versioned.
    * NIT-2026-VI (ratio): both case sets are Cases of the same indicator and the status
      tells them apart — the numerator set has status ``numerator`` (one per AdverseEvent,
      key ``AdverseEvent/<id>``, filed on the local date of the event, else of the
      arrival), the denominator set ``denominator`` (one per discharged IMP episode, key
      the encounter id; ``pending`` while open). ``details["set"]`` repeats it. The rate is
      numerator count / denominator count, scaled by the unit. Population filters apply
      to the denominator set only: every reported event counts.
    * NIT-2026-VII: MDT strictly before the surgery start. AMR-PATHOGEN: specimen at or
      before the first therapeutic antibacterial.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from shared import units
from shared.clinical import Case, CaseStatus, Coding, Episode, Fact, FactKind

from .definitions import (
    CountPlan,
    CriterionPlan,
    DefinitionError,
    FilterPlan,
    Indicator,
    IndicatorDefinition,
    SelectorPlan,
    TimePointPlan,
    TimeRef,
    ValuePlan,
    compile_definition,
    load_definitions,
)
from .valuesets import CodeMap, ValueSet

__all__ = [
    "DEFAULT_TZ",
    "Catalogue",
    "CustomEvaluator",
    "CustomInput",
    "FactIndex",
    "custom_indicator",
    "evaluate",
]

DEFAULT_TZ = ZoneInfo("Asia/Shanghai")

_VOID_EPISODE = frozenset({"cancelled", "entered-in-error"})
_NOT_DONE_KINDS = frozenset({FactKind.PROCEDURE, FactKind.MEDICATION_ADMINISTRATION})
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _counts(fact: Fact) -> bool:
    if fact.status == "entered-in-error":
        return False
    return not (fact.status == "not-done" and fact.kind in _NOT_DONE_KINDS)


def _fact_order(fact: Fact) -> tuple[bool, datetime, str, str]:
    return (fact.time is None, fact.time or _EARLIEST, fact.resource_type, fact.resource_id)


class FactIndex:
    """One episode's usable facts, grouped by kind in time order, built once per episode.

    Selector matches that depend only on the facts (codes, categories, statuses) are
    memoised per compiled selector, so the 14 indicators share the work. To find them,
    a value set is tested once per *distinct* coding of a kind (an inverted index built
    lazily), not once per fact: a long stay has hundreds of results but few test codes.
    """

    __slots__ = ("_by_kind", "_inverted", "_static", "code_map")

    def __init__(self, facts: Iterable[Fact], code_map: CodeMap | None = None) -> None:
        unique: dict[tuple[str, str], Fact] = {}
        for f in facts:
            if not _counts(f):
                continue
            key = (f.resource_type, f.resource_id)
            kept = unique.get(key)
            # Two versions of one resource should not reach us; if they do, the choice
            # must not depend on list order.
            if kept is None or (kept != f and repr(f) > repr(kept)):
                unique[key] = f
        grouped: dict[FactKind, list[Fact]] = {}
        for f in sorted(unique.values(), key=_fact_order):
            grouped.setdefault(f.kind, []).append(f)
        self._by_kind = {k: tuple(v) for k, v in grouped.items()}
        self._static: dict[SelectorPlan, tuple[Fact, ...]] = {}
        self._inverted: dict[tuple[FactKind, str], dict[Coding, list[int]]] = {}
        self.code_map = code_map

    def of(self, kind: FactKind) -> tuple[Fact, ...]:
        """Facts of one kind, earliest first, untimed last."""
        return self._by_kind.get(kind, ())

    def all(self) -> Iterator[Fact]:
        """Every usable fact, kind by kind."""
        for facts in self._by_kind.values():
            yield from facts

    def matching(self, sel: SelectorPlan) -> tuple[Fact, ...]:
        """Facts matching the selector's case-independent filters, earliest first."""
        hit = self._static.get(sel)
        if hit is None:
            hit = ()
            fp, cm = sel.filter, self.code_map
            for kind in sel.kinds:
                candidates, indexed = self._candidates(kind, fp)
                hit = tuple(f for f in candidates if _static_ok(fp, f, cm, indexed))
                if hit or not sel.fallback:
                    break
            self._static[sel] = hit
        return hit

    def _candidates(self, kind: FactKind, fp: FilterPlan) -> tuple[tuple[Fact, ...], str | None]:
        """Facts that pass the first coded filter, and the name of that filter's field."""
        facts = self.of(kind)
        for field, vs in fp.coded:
            inverted = self._inverted.get((kind, field))
            if inverted is None:
                inverted = {}
                for pos, f in enumerate(facts):
                    for coding in getattr(f, field):
                        inverted.setdefault(coding, []).append(pos)
                self._inverted[(kind, field)] = inverted
            positions: set[int] = set()
            for coding, where in inverted.items():
                if vs.matches(coding, self.code_map):
                    positions.update(where)
            return tuple(facts[p] for p in sorted(positions)), field
        return facts, None


def value_passes(test: ValuePlan, f: Fact) -> bool:
    """The fact's ``valueQuantity``, converted to the test's unit, passes its bounds; a
    value in a unit that does not convert passes nothing."""
    if f.value is None:
        return False
    value = units.convert(f.value, f.unit, test.unit, test.quantity)
    return value is not None and test.passes(value)


def _duration_ok(fp: FilterPlan, f: Fact) -> bool:
    if f.time is None or f.end_time is None:
        return False
    length = f.end_time - f.time
    if fp.longer_than is not None and not length > fp.longer_than:
        return False
    return fp.not_longer_than is None or length <= fp.not_longer_than


def _static_ok(fp: FilterPlan, f: Fact, cm: CodeMap | None, indexed: str | None = None) -> bool:
    """The case-independent filters; ``indexed`` names a field already checked."""
    if fp.statuses is not None and f.status not in fp.statuses:
        return False
    if fp.actualities is not None and f.actuality not in fp.actualities:
        return False
    for field, vs in fp.coded:
        if field != indexed and not vs.matches_any(getattr(f, field), cm):
            return False
    if fp.value is not None and not value_passes(fp.value, f):
        return False
    if (fp.longer_than is not None or fp.not_longer_than is not None) and not _duration_ok(fp, f):
        return False
    return not any(_static_ok(u, f, cm) for u in fp.unless)


def _reference_key(ref: str) -> str:
    """``Type/id`` of a relative, absolute or versioned reference."""
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:])


def _resource_key(f: Fact) -> str:
    return f"{f.resource_type}/{f.resource_id}"


def _local_date(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


class _Ctx:
    """Time points and selector answers for one case (one trigger resource, or none)."""

    __slots__ = ("_elements", "_times", "ep", "idx", "ind", "trigger")

    def __init__(self, ind: Indicator, ep: Episode, idx: FactIndex, trigger: Fact | None) -> None:
        self.ind = ind
        self.ep = ep
        self.idx = idx
        self.trigger = trigger
        self._times: dict[str, datetime | None] = {}
        self._elements: dict[str, datetime | None] = {}

    # time points ---------------------------------------------------------------
    def time(self, ref: TimeRef) -> datetime | None:
        base = self._named(ref.name)
        return None if base is None else base + ref.offset

    def _named(self, name: str) -> datetime | None:
        if name == "arrival":
            return self.ep.arrival
        if name == "discharge":
            return self.ep.discharge
        if name in self._elements:
            return self._elements[name]
        if name in self._times:
            return self._times[name]
        if name in ("resource.time", "resource.issued"):
            t = self.trigger
            if t is None:
                return None
            if name == "resource.issued" and t.issued is not None:
                return t.issued
            return t.time
        if name == "start":
            assert self.ind.clock is not None  # guaranteed by the compiler's scope check
            point = self.ind.clock.start
        else:
            point = self.ind.times[name]
        self._times[name] = value = self.point(point)
        return value

    def point(self, p: TimePointPlan) -> datetime | None:
        if p.ref is not None:
            return self.time(p.ref)
        assert p.first is not None
        f = self.first(p.first)
        return None if f is None else f.time

    def start(self) -> datetime | None:
        return self._named("start")

    # selectors -----------------------------------------------------------------
    def _dynamic_ok(self, fp: FilterPlan, f: Fact) -> bool:
        if fp.about_resource:
            t = self.trigger
            if t is None:
                return False
            target = _resource_key(t)
            if not any(_reference_key(a) == target for a in f.about):
                return False
        for op, ref in fp.relations:
            if f.time is None:
                return False
            bound = self.time(ref)
            if bound is None:  # has not happened: lies in the future
                if op in ("after", "not_before"):
                    return False
                continue
            if op == "after":
                ok = f.time > bound
            elif op == "not_before":
                ok = f.time >= bound
            elif op == "before":
                ok = f.time < bound
            else:
                ok = f.time <= bound
            if not ok:
                return False
        return True

    def select(self, sel: SelectorPlan) -> Iterator[Fact]:
        fp = sel.filter
        facts = self.idx.matching(sel)
        if not fp.about_resource and not fp.relations:
            return iter(facts)
        return (f for f in facts if self._dynamic_ok(fp, f))

    def first(self, sel: SelectorPlan) -> Fact | None:
        for f in self.select(sel):
            if f.time is not None:
                return f
            break  # time order puts untimed facts last: nothing timed follows
        return None

    def exists(self, sel: SelectorPlan) -> bool:
        return next(self.select(sel), None) is not None

    def count(self, c: CountPlan) -> int:
        if not c.distinct_codes:
            return sum(1 for _ in self.select(c.selector))
        vs, cm = c.selector.filter.code, self.idx.code_map
        seen: set[tuple[str, str]] = set()
        for f in self.select(c.selector):
            matched = [x for x in f.codes if vs is None or vs.matches(x, cm)]
            seen.add(
                min((x.system, x.code) for x in matched)
                if matched
                else (f.resource_type, f.resource_id)
            )
        return len(seen)

    def _rises(self, sel: SelectorPlan, unit: str, quantity: str | None, more: float) -> bool:
        """Last − first converted value > ``more``; needs two timed values that convert."""
        values = [
            v
            for f in self.select(sel)
            if f.time is not None
            and f.value is not None
            and (v := units.convert(f.value, f.unit, unit, quantity)) is not None
        ]
        return len(values) >= 2 and values[-1] - values[0] > more

    def _end_value(self, end: tuple[SelectorPlan, ValuePlan], last: bool) -> bool:
        timed = [f for f in self.select(end[0]) if f.time is not None]
        if not timed:
            return False
        return value_passes(end[1], timed[-1] if last else timed[0])

    def holds(self, c: CriterionPlan) -> bool:
        ep = self.ep
        if c.episode_open is not None and ep.is_open != c.episode_open:
            return False
        if c.discharged_within is not None and (
            ep.discharge is None
            or ep.arrival is None
            or ep.discharge - ep.arrival > c.discharged_within
        ):
            return False
        if c.stay_longer_than is not None and (
            ep.discharge is None
            or ep.arrival is None
            or not ep.discharge - ep.arrival > c.stay_longer_than
        ):
            return False
        if c.outcome is not None:
            if ep.discharge is None:
                return False
            if died(ep, self.idx.code_map) != (c.outcome == "died"):
                return False
        if c.count is not None:
            n = self.count(c.count)
            if n < c.count.at_least or (c.count.at_most is not None and n > c.count.at_most):
                return False
        if c.first is not None and not self._end_value(c.first, last=False):
            return False
        if c.last is not None and not self._end_value(c.last, last=True):
            return False
        if c.rise is not None and not self._rises(*c.rise):
            return False
        if c.selector is not None and not self.exists(c.selector):
            return False
        if c.without is not None and self.exists(c.without):
            return False
        return not c.any_of or any(self.holds(a) for a in c.any_of)

    def all_hold(self, cs: Sequence[CriterionPlan]) -> bool:
        return all(self.holds(c) for c in cs)

    # bundles ---------------------------------------------------------------------
    def bundle_stop(self, start: datetime) -> tuple[datetime | None, list[str]]:
        """When the last required element happened (not before ``start``), and what is missing."""
        assert self.ind.clock is not None
        found: dict[str, Fact | None] = {}
        latest = start
        missing: list[str] = []
        for el in self.ind.clock.bundle:
            if el.when_element is not None:
                cond = found.get(el.when_element)
                bound = el.when_value_above
                if cond is None or cond.value is None or bound is None or not cond.value > bound:
                    found[el.name] = None
                    self._elements[el.name] = None
                    continue
            f = self.first(el.selector)
            found[el.name] = f
            self._elements[el.name] = f.time if f is not None else None
            if f is None or f.time is None:
                missing.append(el.name)
            elif f.time > latest:
                latest = f.time
        return (None if missing else latest), missing


#: Discharge disposition "expired" (docs/INDICATORS.md, "Discharge disposition and death").
_DIED = ValueSet.compile("died", {"discharge-disposition": ["exp"]})


def died(ep: Episode, code_map: CodeMap | None = None) -> bool:
    """Discharged dead: disposition ``exp`` (or a local code mapped to it), or the
    patient's recorded death at or before the discharge."""
    if ep.disposition is not None and _DIED.matches(ep.disposition, code_map):
        return True
    return (
        ep.deceased_at is not None and ep.discharge is not None and ep.deceased_at <= ep.discharge
    )


def _in_population(ind: Indicator, ep: Episode, tz: ZoneInfo) -> bool:
    if (
        ind.encounter_classes is not None
        and (ep.class_code or "").upper() not in ind.encounter_classes
    ):
        return False
    if ind.min_age is not None or ind.max_age is not None:
        age = ep.age_at_arrival(tz)
        if age is None:
            return ind.include_unknown_age
        if ind.min_age is not None and age < ind.min_age:
            return False
        return ind.max_age is None or age <= ind.max_age
    return True


def _case_for(
    ind: Indicator, ep: Episode, idx: FactIndex, now: datetime, tz: ZoneInfo, trigger: Fact | None
) -> Case | None:
    ctx = _Ctx(ind, ep, idx, trigger)
    waiting = False
    if not ctx.all_hold(ind.requires):
        if not ind.pending_while or not ctx.all_hold(ind.pending_while):
            return None
        waiting = True

    clock = ind.clock
    start = stop = deadline = at_risk_at = decide_at = None
    details: dict[str, str] = {}
    if clock is not None:
        start = ctx.start()
        if start is None:
            return None
        deadline = start + clock.window if clock.window is not None else start
        if clock.at_risk_after is not None:
            at_risk_at = start + clock.at_risk_after
        if trigger is not None and trigger.issued is None and _uses_issued(clock.start):
            details["start"] = "effective"

    status: CaseStatus
    if any(ctx.holds(c) for c in ind.exclusions):
        status = CaseStatus.EXCLUDED
    elif waiting:
        status = CaseStatus.PENDING
    elif ind.is_ratio:
        status = CaseStatus.PENDING if ep.is_open else CaseStatus.DENOMINATOR
    elif clock is not None and clock.has_stop:
        assert start is not None
        assert deadline is not None
        assert clock.window is not None
        if clock.bundle:
            stop, missing = ctx.bundle_stop(start)
            if missing:
                details["missing"] = ",".join(missing)
        else:
            assert clock.stop is not None
            stop = ctx.point(clock.stop)
        if stop is not None:
            status = (
                CaseStatus.NUMERATOR if stop - start <= clock.window else CaseStatus.DENOMINATOR
            )
        elif ind.decided_by == "deadline":
            if now < deadline:
                status, decide_at = CaseStatus.PENDING, deadline
            else:
                status = CaseStatus.DENOMINATOR
        else:
            status = CaseStatus.PENDING if ep.is_open else CaseStatus.DENOMINATOR
    elif ind.decided_by == "discharge":
        if ep.is_open:
            status = CaseStatus.PENDING
        else:
            status = CaseStatus.NUMERATOR if ctx.all_hold(ind.numerator) else CaseStatus.DENOMINATOR
    else:
        assert deadline is not None
        if ctx.all_hold(ind.numerator):
            status = CaseStatus.NUMERATOR
        elif now < deadline:
            status, decide_at = CaseStatus.PENDING, deadline
        else:
            status = CaseStatus.DENOMINATOR

    anchor = start if ind.spec.period == "start" else ep.discharge
    if anchor is None:
        if ep.arrival is None:
            return None
        anchor, status, decide_at = ep.arrival, CaseStatus.PENDING, None
    if ind.is_ratio:
        details["set"] = "denominator"
    return Case(
        indicator=ind.code,
        key=_resource_key(trigger) if trigger is not None else ep.encounter_id,
        encounter_id=ep.encounter_id,
        department=ep.department,
        status=status,
        period_date=_local_date(anchor, tz),
        clock_start=start,
        clock_stop=stop,
        deadline=deadline,
        at_risk_at=at_risk_at,
        decide_at=decide_at,
        details=details,
    )


def _uses_issued(p: TimePointPlan) -> bool:
    return p.ref is not None and p.ref.name == "resource.issued"


def _numerator_events(ind: Indicator, ep: Episode, idx: FactIndex, tz: ZoneInfo) -> list[Case]:
    ctx = _Ctx(ind, ep, idx, None)
    cases: dict[str, Case] = {}
    for sel in ind.numerator_events:
        for f in ctx.select(sel):
            key = _resource_key(f)
            anchor = f.time or ep.arrival
            if key in cases or anchor is None:
                continue
            cases[key] = Case(
                indicator=ind.code,
                key=key,
                encounter_id=ep.encounter_id,
                department=ep.department,
                status=CaseStatus.NUMERATOR,
                period_date=_local_date(anchor, tz),
                clock_start=f.time,
                details={"set": "numerator"},
            )
    return list(cases.values())


def _next_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)


def _exposure_days(
    ind: Indicator, ep: Episode, idx: FactIndex, now: datetime, tz: ZoneInfo
) -> list[Case]:
    """Denominator cases of a ratio counted in days: one per local calendar day of the
    stay, or on which a device was in place (several devices on one day: one day).
    The day of arrival (insertion) counts, the day of discharge (removal) does not,
    except that a span within one day counts that day. A closed span is decided; an
    open one is decided up to yesterday, and today (or its first day, when it starts
    later) is pending until the next local midnight, when the timer moves it on."""
    ctx = _Ctx(ind, ep, idx, None)
    if not ctx.all_hold(ind.requires) or any(ctx.holds(c) for c in ind.exclusions):
        return []
    spans: list[tuple[datetime, datetime | None]] = []
    if ind.denominator_days == "stay":
        if ep.arrival is not None:
            spans.append((ep.arrival, ep.discharge))
    else:
        assert isinstance(ind.denominator_days, SelectorPlan)
        for f in ctx.select(ind.denominator_days):
            if f.time is not None:
                spans.append((f.time, f.end_time or ep.discharge))
    today = _local_date(now, tz)
    final: dict[date, bool] = {}
    one_day = timedelta(days=1)
    for start, end in spans:
        first = _local_date(start, tz)
        if end is not None:
            # A closed span is decided whole, whatever the clock says.
            day, stop = first, max(_local_date(end, tz), first + one_day)
            while day < stop:
                final[day] = True
                day += one_day
            continue
        # An open span: decided up to yesterday; its last day so far — today, or its
        # first day while that is still to come — waits for the next midnight.
        last = max(today, first)
        day = first
        while day <= last:
            final[day] = final.get(day, False) or day < last
            day += one_day
    return [
        Case(
            indicator=ind.code,
            key=f"days/{day.isoformat()}",
            encounter_id=ep.encounter_id,
            department=ep.department,
            status=CaseStatus.DENOMINATOR if done else CaseStatus.PENDING,
            period_date=day,
            decide_at=None if done else _next_midnight(day, tz),
            details={"set": "denominator"},
        )
        for day, done in sorted(final.items())
    ]


def _evaluate(
    ind: Indicator, ep: Episode, idx: FactIndex, now: datetime, tz: ZoneInfo
) -> list[Case]:
    if ep.status in _VOID_EPISODE or ind.is_manual or ind.patient_level:
        return []
    if ind.spec.custom is not None:
        custom = resolve_custom(ind.spec.custom)
        return sorted(custom(CustomInput(ind, ep, idx, now, tz)), key=lambda c: c.key)
    cases: list[Case] = []
    if _in_population(ind, ep, tz):
        if ind.denominator_days is not None:
            cases.extend(_exposure_days(ind, ep, idx, now, tz))
        elif ind.per_resource:
            ctx = _Ctx(ind, ep, idx, None)
            seen: set[str] = set()
            for sel in ind.each:
                for f in ctx.select(sel):
                    key = _resource_key(f)
                    if key in seen:
                        continue
                    seen.add(key)
                    case = _case_for(ind, ep, idx, now, tz, f)
                    if case is not None:
                        cases.append(case)
        else:
            case = _case_for(ind, ep, idx, now, tz, None)
            if case is not None:
                cases.append(case)
    if ind.is_ratio:
        cases.extend(_numerator_events(ind, ep, idx, tz))
    cases.sort(key=lambda c: c.key)
    return cases


# --------------------------------------------------------------------------- patient level

#: One episode chain of a patient and the index of its facts.
PatientEpisode = tuple[Episode, FactIndex]


def _followup(
    ind: Indicator,
    chains: Sequence[PatientEpisode],
    now: datetime,
    tz: ZoneInfo,
    patient_id: str | None,
) -> list[Case]:
    """An index episode, and whether what ``followup`` asks for happened in its window:
    numerator as soon as it is known, denominator once the window has passed without,
    pending until then (decided by the timer at the window's end)."""
    fp = ind.followup
    assert fp is not None
    cases: list[Case] = []
    for ep, idx in chains:
        if ep.status in _VOID_EPISODE or not _in_population(ind, ep, tz):
            continue
        ctx = _Ctx(ind, ep, idx, None)
        if not ctx.all_hold(ind.requires):
            continue
        start = ctx.time(fp.start)
        if start is None:
            continue
        end = start + fp.within
        stop: datetime | None = None
        decide_at: datetime | None = None
        if any(ctx.holds(c) for c in ind.exclusions):
            status = CaseStatus.EXCLUDED
        else:
            stop = _first_followup(ind, ep, chains, start, end)
            if stop is not None:
                status = CaseStatus.NUMERATOR
            elif now >= end:
                status = CaseStatus.DENOMINATOR
            else:
                status, decide_at = CaseStatus.PENDING, end
        cases.append(
            Case(
                indicator=ind.code,
                key=ep.encounter_id,
                encounter_id=ep.encounter_id,
                department=ep.department,
                status=status,
                period_date=_local_date(start, tz),
                clock_start=start,
                clock_stop=stop,
                deadline=end,
                decide_at=decide_at,
                patient_id=patient_id,
            )
        )
    return cases


def _first_followup(
    ind: Indicator,
    index: Episode,
    chains: Sequence[PatientEpisode],
    start: datetime,
    end: datetime,
) -> datetime | None:
    """When the first event that counts happened in (start, end], or None."""
    fp = ind.followup
    assert fp is not None
    found: list[datetime] = []
    for ep, idx in chains:
        if ep.status in _VOID_EPISODE:
            continue
        if fp.fact is not None:
            found.extend(
                f.time
                for f in idx.matching(fp.fact)
                if f.time is not None and start < f.time <= end
            )
            continue
        t = ep.arrival
        if ep.encounter_id == index.encounter_id or t is None or not start < t <= end:
            continue
        if (
            fp.encounter_classes is not None
            and (ep.class_code or "").upper() not in fp.encounter_classes
        ):
            continue
        if ep.priority is not None and ep.priority in fp.priority_not:
            continue
        if fp.requires and not _Ctx(ind, ep, idx, None).all_hold(fp.requires):
            continue
        found.append(t)
    return min(found, default=None)


def _month_start(year: int, month: int, tz: ZoneInfo) -> datetime:
    return datetime(year, month, 1, tzinfo=tz).astimezone(UTC)


def _patient_months(
    ind: Indicator,
    chains: Sequence[PatientEpisode],
    now: datetime,
    tz: ZoneInfo,
    patient_id: str | None,
    code_map: CodeMap | None,
) -> list[Case]:
    """One case per local calendar month in which the patient had a ``month.active``
    fact and ``month.requires`` holds over that month's facts (all episodes). Pending
    until the month is over; filed on its last day, under the department of the episode
    with the month's latest active fact."""
    mp = ind.month
    assert mp is not None
    live = [(ep, idx) for ep, idx in chains if ep.status not in _VOID_EPISODE]
    latest: dict[tuple[int, int], tuple[datetime, str, Episode]] = {}
    for ep, idx in live:
        for f in idx.matching(mp.active):
            if f.time is None:
                continue
            local = f.time.astimezone(tz)
            ym = (local.year, local.month)
            mark = (f.time, ep.encounter_id, ep)
            if ym not in latest or mark[:2] > latest[ym][:2]:
                latest[ym] = mark
    cases: list[Case] = []
    for (year, month), (_, _, ep) in sorted(latest.items()):
        if not _in_population(ind, ep, tz):
            continue
        begin = _month_start(year, month, tz)
        after = _month_start(year + month // 12, month % 12 + 1, tz)
        facts = [
            f
            for _, idx in live
            for f in idx.all()
            if f.time is not None and begin <= f.time < after
        ]
        ctx = _Ctx(ind, ep, FactIndex(facts, code_map), None)
        if not ctx.all_hold(mp.requires):
            continue
        decide_at: datetime | None = None
        if any(ctx.holds(c) for c in ind.exclusions):
            status = CaseStatus.EXCLUDED
        elif now < after:
            status, decide_at = CaseStatus.PENDING, after
        elif ctx.all_hold(ind.numerator):
            status = CaseStatus.NUMERATOR
        else:
            status = CaseStatus.DENOMINATOR
        cases.append(
            Case(
                indicator=ind.code,
                key=f"{patient_id or ep.encounter_id}/{year:04d}-{month:02d}",
                encounter_id=ep.encounter_id,
                department=ep.department,
                status=status,
                period_date=_local_date(after, tz) - timedelta(days=1),
                decide_at=decide_at,
                patient_id=patient_id,
            )
        )
    return cases


def evaluate_patient(
    ind: Indicator,
    chains: Sequence[PatientEpisode],
    now: datetime,
    tz: ZoneInfo,
    patient_id: str | None,
    code_map: CodeMap | None = None,
) -> list[Case]:
    """Cases of a patient-level indicator over one patient's episode chains."""
    if ind.spec.case == "followup":
        cases = _followup(ind, chains, now, tz, patient_id)
    elif ind.spec.case == "patient_month":
        cases = _patient_months(ind, chains, now, tz, patient_id, code_map)
    else:
        return []
    cases.sort(key=lambda c: c.key)
    return cases


def _check_now(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def evaluate(
    defn: Indicator | IndicatorDefinition,
    episode: Episode,
    facts: Sequence[Fact],
    now: datetime,
    tz: ZoneInfo = DEFAULT_TZ,
    code_map: CodeMap | None = None,
) -> list[Case]:
    """Cases of one indicator for one episode as of ``now``, sorted by key.

    Pass a compiled :class:`Indicator` on hot paths; an :class:`IndicatorDefinition` is
    compiled on every call.
    """
    _check_now(now)
    ind = defn if isinstance(defn, Indicator) else compile_definition(defn)
    return _evaluate(ind, episode, FactIndex(facts, code_map), now, tz)


# --------------------------------------------------------------------------- escape hatch


@dataclass(frozen=True, slots=True)
class CustomInput:
    """What a custom evaluator receives; it returns the episode's cases for ``indicator``."""

    indicator: Indicator
    episode: Episode
    facts: FactIndex
    now: datetime
    tz: ZoneInfo


CustomEvaluator = Callable[[CustomInput], Sequence[Case]]
_F = TypeVar("_F", bound=CustomEvaluator)
_CUSTOM: dict[str, CustomEvaluator] = {}


def custom_indicator(func: _F) -> _F:
    """Register ``func`` so a definition may say ``custom: <module>:<function>``.

    Only registered functions can be named: a definition file cannot reach arbitrary code.
    """
    _CUSTOM[f"{func.__module__}:{func.__qualname__}"] = func
    return func


def resolve_custom(ref: str) -> CustomEvaluator:
    found = _CUSTOM.get(ref)
    if found is None:
        module = ref.partition(":")[0]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise LookupError(f"cannot import {module!r}: {exc}") from None
        found = _CUSTOM.get(ref)
        if found is None:
            raise LookupError(f"{ref!r} is not registered with @custom_indicator")
    return found


# --------------------------------------------------------------------------- catalogue


class Catalogue:
    """The compiled indicators of one deployment, evaluated together per episode."""

    __slots__ = ("_by_code", "_indicators")

    def __init__(self, indicators: Iterable[Indicator]) -> None:
        by_code: dict[str, Indicator] = {}
        for ind in indicators:
            if ind.code in by_code:
                raise ValueError(f"indicator {ind.code} defined twice")
            if ind.spec.custom is not None:
                try:
                    resolve_custom(ind.spec.custom)
                except LookupError as exc:
                    raise DefinitionError(ind.source_file, [("custom", str(exc))]) from None
            by_code[ind.code] = ind
        self._indicators = tuple(by_code[c] for c in sorted(by_code))
        self._by_code = by_code

    @classmethod
    def load(cls, override_dir: Path | None = None) -> Catalogue:
        """The shipped catalogue with a deployment's definition directory on top."""
        return cls(load_definitions(override_dir))

    @property
    def indicators(self) -> tuple[Indicator, ...]:
        """Compiled indicators, by code."""
        return self._indicators

    def indicator(self, code: str) -> Indicator:
        """The compiled indicator; KeyError when unknown."""
        return self._by_code[code]

    def get(self, code: str) -> IndicatorDefinition | None:
        """The definition as written (for the read API), or None when unknown."""
        found = self._by_code.get(code)
        return None if found is None else found.spec

    def definitions(self) -> list[IndicatorDefinition]:
        """All definitions as written, by code."""
        return [ind.spec for ind in self._indicators]

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __iter__(self) -> Iterator[Indicator]:
        return iter(self._indicators)

    def __len__(self) -> int:
        return len(self._indicators)

    def reported(self, year: str | None) -> frozenset[str]:
        """Codes a tenant reporting catalogue ``year`` reports (None or ``all``: every
        code). That year's definitions and those of no year; and a newer definition
        when no definition of ``year`` stands for it — a 2025 tenant reports
        PIT-2025-24 rather than PIT-2026-23, which ``supersedes`` it, but still the
        2026 definitions of items 2025 did not change (they have no 2025 file). Older
        years' definitions are not reported."""
        if year is None or year == "all":
            return frozenset(self._by_code)
        of_year = {i.code for i in self._indicators if i.spec.effective_catalogue == year}
        out: set[str] = set()
        for ind in self._indicators:
            spec = ind.spec
            own = spec.effective_catalogue
            newer_unreplaced = (
                own is not None and own > year and not of_year.intersection(spec.supersedes)
            )
            if own in (None, year) or newer_unreplaced:
                out.add(ind.code)
        return frozenset(out)

    @property
    def patient_level(self) -> tuple[Indicator, ...]:
        """Indicators whose cases span a patient's episodes."""
        return tuple(i for i in self._indicators if i.patient_level)

    def evaluate_all(
        self,
        episode: Episode,
        facts: Sequence[Fact],
        now: datetime,
        tz: ZoneInfo = DEFAULT_TZ,
        code_map: CodeMap | None = None,
    ) -> list[Case]:
        """Cases of every episode-level indicator for one episode (chain), sorted by
        (indicator, key)."""
        _check_now(now)
        idx = FactIndex(facts, code_map)
        out: list[Case] = []
        for ind in self._indicators:
            out.extend(_evaluate(ind, episode, idx, now, tz))
        return out

    def evaluate_patient(
        self,
        chains: Sequence[tuple[Episode, Sequence[Fact]]],
        now: datetime,
        tz: ZoneInfo = DEFAULT_TZ,
        code_map: CodeMap | None = None,
        patient_id: str | None = None,
    ) -> list[Case]:
        """Cases of every patient-level indicator for one patient's episode chains (or a
        chain without a patient, standing alone), sorted by (indicator, key)."""
        _check_now(now)
        indexed = [(ep, FactIndex(facts, code_map)) for ep, facts in chains]
        out: list[Case] = []
        for ind in self.patient_level:
            out.extend(evaluate_patient(ind, indexed, now, tz, patient_id, code_map))
        return out
