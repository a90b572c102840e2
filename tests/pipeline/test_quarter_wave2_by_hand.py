"""The four pinned second-wave indicators over a generated quarter, counted by hand.

As in test_quarter_by_hand: a quarter of the synthetic hospital, weighted towards the
second-wave pathways (cardiac arrest, schizophrenia discharges, chest-wall repair with
readmissions, months of dialysis, STEMI through the ED), is posted out of order with
repeats; the final FHIR is replayed and each indicator is counted per month from the
pinned definitions in ../shared/design/INDICATORS.md ("Second catalogue wave"), with
code that shares nothing with the evaluator: chains through ``Encounter.partOf``,
death by ``exp`` or ``Patient.deceasedDateTime``, distinct antipsychotics, readmissions
within 31 days, the month's last haemoglobin in g/L.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qcpulse.synth import HospitalConfig, Send, generate
from services.indicators.worker import drain
from tests.conftest import TENANT
from tests.pipeline.test_quarter_by_hand import (
    ICD9,
    ICD10,
    SHANGHAI,
    SNOMED,
    codes,
    icd,
    live,
    post_all,
    ref_id,
    replay,
    when,
)

START = datetime(2026, 1, 1, tzinfo=SHANGHAI)
QUARTER = ("2026-01", "2026-02", "2026-03")
SERIES = {"granularity": "month", "from": "2025-12-01", "to": "2026-12-31"}
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
MED_CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
#: Haemoglobin in g/L from the units the design names; anything else matches nothing.
TO_G_PER_L = {"g/L": 1.0, "g/dL": 10.0, "mmol/L": 16.11}
ACUTE = {"IMP": 3, "EMER": 2, "AMB": 1}

Resource = dict[str, Any]
Tally = Counter[tuple[str, str]]  # (month, "numerator" | "denominator")


def posted_order(seed: int) -> list[Send]:
    """The quarter, jittered by up to six hours with a tenth of the sends twice."""
    mix = (
        ("cardiac_arrest", 1.0),
        ("schizophrenia", 1.4),
        ("chest_wall", 1.4),
        ("dialysis", 0.6),
        ("stemi", 0.8),
        ("ed_minor", 0.3),
    )
    config = HospitalConfig(tenant=TENANT, arrivals_per_day=320 / 91, episodes=320, mix=mix)
    sends = list(generate(config, start=START, days=91, seed=seed))
    rng = random.Random(seed)
    jittered = sorted(sends, key=lambda s: s.at + timedelta(minutes=rng.uniform(0, 360)))
    duplicates = [
        (rng.randrange(len(jittered)), s) for s in rng.sample(jittered, len(jittered) // 10)
    ]
    for position, send in sorted(duplicates, key=lambda d: -d[0]):
        jittered.insert(position, send)
    return jittered


def month(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m")


def fact_time(r: Resource) -> datetime | None:
    period = r.get("performedPeriod") or r.get("effectivePeriod") or {}
    return when(r.get("performedDateTime") or r.get("effectiveDateTime") or period.get("start"))


@dataclass
class Episode:
    root: Resource
    members: list[Resource]
    facts: list[Resource] = field(default_factory=list)

    @property
    def arrival(self) -> datetime:
        start = when(self.root["period"]["start"])
        assert start is not None
        return start

    @property
    def discharge(self) -> datetime | None:
        ends = [when(m["period"].get("end")) for m in self.members]
        if any(m["status"] != "finished" for m in self.members) or None in ends:
            return None
        return max(e for e in ends if e is not None)

    @property
    def cls(self) -> str:
        return max((m["class"]["code"] for m in self.members), key=lambda k: ACUTE.get(k, 0))

    @property
    def patient(self) -> str | None:
        return ref_id(self.root.get("subject"))

    def of(self, rtype: str) -> list[Resource]:
        return [r for r in self.facts if r["resourceType"] == rtype]

    def priorities(self) -> set[str]:
        return {c for m in self.members for s, c in codes(m.get("priority")) if s == PRIORITY}


def episodes_of(state: dict[tuple[str, str], Resource]) -> dict[str, Episode]:
    """Root Encounter id → the chain it heads, with the live facts of every member."""
    encounters = {rid: r for (t, rid), r in state.items() if t == "Encounter" and live(r)}

    def root_of(eid: str) -> str:
        seen = {eid}
        while (parent := ref_id(encounters[eid].get("partOf"))) in encounters:
            if parent in seen:
                break
            seen.add(parent)
            eid = parent
        return eid

    roots = {eid: root_of(eid) for eid in encounters}
    out: dict[str, Episode] = {}
    for eid, root in sorted(roots.items()):
        out.setdefault(root, Episode(encounters[root], []))
        out[root].members.append(encounters[eid])
    for (rtype, _), r in state.items():
        member = ref_id(r.get("encounter") or r.get("context"))
        if rtype != "Encounter" and member in roots and live(r):
            out[roots[member]].facts.append(r)
    return out


def deaths(state: dict[tuple[str, str], Resource]) -> dict[str, datetime]:
    return {
        rid: moment
        for (t, rid), r in state.items()
        if t == "Patient" and (moment := when(r.get("deceasedDateTime"))) is not None
    }


def died(ep: Episode, deceased: dict[str, datetime]) -> bool:
    end = ep.discharge
    exp = any(
        (DISPOSITION, "exp") in codes((m.get("hospitalization") or {}).get("dischargeDisposition"))
        for m in ep.members
    )
    at = deceased.get(ep.patient or "")
    return exp or (end is not None and at is not None and at <= end)


def count_arrest_survival(eps: dict[str, Episode], deceased: dict[str, datetime]) -> Tally:
    """PIT-2026-11: EMER/IMP episodes with I46 and CPR; numerator survived to discharge."""
    out: Tally = Counter()
    for ep in eps.values():
        arrest = any(
            icd(r.get("code"), ICD10, "I46") or (SNOMED, "410429000") in codes(r.get("code"))
            for r in ep.of("Condition")
        )
        cpr = any(
            icd(r.get("code"), ICD9, "99.60", "99.63")
            or (SNOMED, "89666000") in codes(r.get("code"))
            for r in ep.of("Procedure")
        )
        end = ep.discharge
        if ep.cls in ("EMER", "IMP") and arrest and cpr and end is not None:
            survived = not died(ep, deceased)
            out[(month(end), "numerator" if survived else "denominator")] += 1
    return out


def count_monotherapy(eps: dict[str, Episode]) -> Tally:
    """PIT-2026-39: discharged F20 inpatients going home on ≥ 1 antipsychotic; numerator
    exactly one distinct antipsychotic ATC (N05A except lithium N05AN)."""
    out: Tally = Counter()
    for ep in eps.values():
        end = ep.discharge
        if ep.cls != "IMP" or end is None:
            continue
        if not any(icd(r.get("code"), ICD10, "F20") for r in ep.of("Condition")):
            continue
        drugs = {
            code
            for r in ep.of("MedicationRequest")
            if (MED_CATEGORY, "discharge") in codes(r.get("category"))
            and r.get("status") in ("active", "completed")
            for system, code in codes(r.get("medicationCodeableConcept"))
            if system == ATC and code.startswith("N05A") and not code.startswith("N05AN")
        }
        if drugs:
            out[(month(end), "numerator" if len(drugs) == 1 else "denominator")] += 1
    return out


def count_readmission(eps: dict[str, Episode], deceased: dict[str, datetime]) -> Tally:
    """PIT-2026-47: survived IMP episodes with a chest-wall repair (34.74); numerator
    another IMP episode of the patient arriving within 31 days after discharge, not EL."""
    by_patient: dict[str, list[Episode]] = defaultdict(list)
    for ep in eps.values():
        if ep.patient:
            by_patient[ep.patient].append(ep)
    out: Tally = Counter()
    for ep in eps.values():
        end = ep.discharge
        if ep.cls != "IMP" or end is None or died(ep, deceased):
            continue
        if not any(icd(r.get("code"), ICD9, "34.74") for r in ep.of("Procedure")):
            continue
        back = [
            other
            for other in by_patient[ep.patient or ""]
            if other is not ep
            and other.cls == "IMP"
            and end < other.arrival <= end + timedelta(days=31)
            and "EL" not in other.priorities()
        ]
        out[(month(end), "numerator" if back else "denominator")] += 1
    return out


def count_anaemia_control(eps: dict[str, Episode]) -> Tally:
    """PIT-2026-03: patient × local month with dialysis (39.95, 54.98) and a haemoglobin
    (718-7); numerator when the month's last haemoglobin is ≥ 110 g/L."""
    dialysis: set[tuple[str, str]] = set()
    haemoglobin: dict[tuple[str, str], list[tuple[datetime, float | None]]] = defaultdict(list)
    for ep in eps.values():
        for r in ep.facts:
            at = fact_time(r)
            if at is None or not ep.patient:
                continue
            key = (ep.patient, month(at))
            if r["resourceType"] == "Procedure" and icd(r.get("code"), ICD9, "39.95", "54.98"):
                dialysis.add(key)
            if r["resourceType"] == "Observation" and (LOINC, "718-7") in codes(r.get("code")):
                quantity = r.get("valueQuantity") or {}
                factor = TO_G_PER_L.get(quantity.get("code") or quantity.get("unit") or "")
                value = None if factor is None else float(quantity["value"]) * factor
                haemoglobin[key].append((at, value))
    out: Tally = Counter()
    for key in dialysis:
        if haemoglobin.get(key):
            _, last = max(haemoglobin[key], key=lambda hb: hb[0])
            out[(key[1], "numerator" if last is not None and last >= 110 else "denominator")] += 1
    return out


def count_stemi(eps: dict[str, Episode]) -> tuple[int, int, dict[str, datetime]]:
    """PIT-2026-23 over chains: (numerator, denominator, root → door) for cases."""
    num = den = 0
    doors: dict[str, datetime] = {}
    for root, ep in eps.items():
        if ep.cls not in ("EMER", "IMP"):
            continue
        stemi = any(
            icd(r.get("code"), ICD10, "I21.0", "I21.1", "I21.2", "I21.3")
            or (SNOMED, "401303003") in codes(r.get("code"))
            for r in ep.of("Condition")
        )
        pcis = [
            fact_time(r)
            for r in ep.of("Procedure")
            if icd(r.get("code"), ICD9, "00.66", "36.06", "36.07")
            or (SNOMED, "415070008") in codes(r.get("code"))
        ]
        starts = [p for p in pcis if p is not None]
        if stemi and starts:
            num += min(starts) - ep.arrival <= timedelta(minutes=90)
            den += 1
            doors[root] = ep.arrival
    return num, den, doors


@pytest.fixture(scope="module")
def sends() -> list[Send]:
    return posted_order(seed=26)


def api_months(app_client, headers, code: str) -> dict[str, tuple[int, int]]:
    response = app_client.get(f"/api/v1/indicators/{code}/series", params=SERIES, headers=headers)
    assert response.status_code == 200, (code, response.text)
    return {
        p["period_start"][:7]: (p["numerator"], p["denominator"])
        for p in response.json()["points"]
        if p["numerator"] or p["denominator"]
    }


def by_hand(tally: Tally) -> dict[str, tuple[int, int]]:
    months = {m for m, _ in tally}
    return {
        m: (tally[(m, "numerator")], tally[(m, "numerator")] + tally[(m, "denominator")])
        for m in sorted(months)
    }


def all_cases(app_client, headers, code: str) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = app_client.get(f"/api/v1/indicators/{code}/cases", params=params, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        out.extend(body["cases"])
        cursor = body["next_cursor"]
        if not cursor:
            return out


def test_a_wave2_quarter_counts_as_by_hand(runtime, clock, app_client, reader_headers, sends):
    # Long after the quarter: every month has ended, every 31-day window has passed.
    clock.set(datetime(2027, 1, 1, tzinfo=UTC))
    accepted = post_all(runtime, sends)
    assert len(accepted) > 0.95 * len(sends)
    drain(runtime)
    state = replay(accepted)
    eps = episodes_of(state)
    deceased = deaths(state)

    chains = [ep for ep in eps.values() if len(ep.members) > 1]
    late_roots = 0
    first_seen: dict[str, int] = {}
    for k, send in enumerate(accepted):
        for entry in send.bundle.get("entry", []):
            first_seen.setdefault(entry["request"]["url"], k)
    for ep in chains:
        member = next(m for m in ep.members if m is not ep.root)
        root_at = first_seen[f"Encounter/{ep.root['id']}"]
        late_roots += first_seen[f"Encounter/{member['id']}"] < root_at
    assert len(chains) >= 20, "the quarter should hold ED→ward chains"
    assert late_roots >= 3, "some ward stays should arrive before their ED visit"

    expected = {
        "PIT-2026-11": count_arrest_survival(eps, deceased),
        "PIT-2026-39": count_monotherapy(eps),
        "PIT-2026-47": count_readmission(eps, deceased),
        "PIT-2026-03": count_anaemia_control(eps),
    }
    for code, tally in expected.items():
        want = by_hand(tally)
        assert sum(v[1] for v in want.values()) >= 20, (code, want)
        for m in QUARTER:  # a hand count that could not tell right from wrong is no test
            num, den = want.get(m, (0, 0))
            assert 0 < num < den, (code, m, want)
        assert api_months(app_client, reader_headers, code) == want, code

    # PIT-2026-23 over chains: the door is the ED arrival, even when the diagnosis and
    # the PCI belong to the ward stay.
    num, den, doors = count_stemi(eps)
    value = app_client.get(
        "/api/v1/indicators/PIT-2026-23/value",
        params={"from": "2025-06-01", "to": "2027-06-30"},
        headers=reader_headers,
    ).json()
    assert (value["numerator"], value["denominator"]) == (num, den)
    member_root = {m["id"]: root for root, ep in eps.items() for m in ep.members}
    chained = {root for root, ep in eps.items() if len(ep.members) > 1 and root in doors}
    checked = 0
    for case in all_cases(app_client, reader_headers, "PIT-2026-23"):
        root = member_root.get(case["episode"].removeprefix("Encounter/"))
        if root in chained and case["status"] in ("numerator", "denominator"):
            start = datetime.fromisoformat(case["clock_start"])
            assert start == doors[root], (case, doors[root])
            checked += 1
    assert checked == len(chained) >= 5
