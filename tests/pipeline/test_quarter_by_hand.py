"""A quarter of synthetic care, sent out of order with duplicates and corrections,
counted by hand from the raw FHIR and compared with what the API says.

The hand count below is written from the indicator definitions directly, sharing no
code with the evaluator: a replay of the posted bundles (last write wins, as in the
store) and a few dozen lines per indicator that a quality department could check.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from qcpulse.synth import HospitalConfig, Send, generate
from services.indicators import verify
from services.indicators.worker import drain
from services.ingest.bundles import process_bundle
from services.ingest.service import IngestUnit
from shared.errors import NotFoundError
from tests.conftest import TENANT

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 1, 1, tzinfo=SHANGHAI)
EVERYTHING = {"from": "2025-06-01", "to": "2027-06-30"}
ICD10 = {
    "http://hl7.org/fhir/sid/icd-10",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "urn:oid:2.16.156.10011.2.3.3.11",
}
ICD9 = {"http://hl7.org/fhir/sid/icd-9-cm", "urn:oid:2.16.156.10011.2.3.3.12"}
SNOMED = "http://snomed.info/sct"

Resource = dict[str, Any]


def posted_order(seed: int) -> list[Send]:
    """Sends jittered by up to six hours (so bundles overtake each other, across and
    within episodes) with a tenth of them sent twice."""
    config = HospitalConfig.for_episodes(150, 91, tenant=TENANT)
    sends = list(generate(config, start=START, days=91, seed=seed))
    rng = random.Random(seed)
    jittered = sorted(sends, key=lambda s: s.at + timedelta(minutes=rng.uniform(0, 360)))
    duplicates = [
        (rng.randrange(len(jittered)), s) for s in rng.sample(jittered, len(jittered) // 10)
    ]
    for position, send in sorted(duplicates, key=lambda d: -d[0]):
        jittered.insert(position, send)
    return jittered


def replay(sends: list[Send]) -> dict[tuple[str, str], Resource]:
    state: dict[tuple[str, str], Resource] = {}
    for send in sends:
        for entry in send.bundle.get("entry", []):
            rtype, rid = entry["request"]["url"].split("/")[:2]
            if entry["request"]["method"] == "DELETE":
                state.pop((rtype, rid), None)
            else:
                state[(rtype, rid)] = entry["resource"]
    return state


def when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


def ref_id(ref: dict[str, Any] | None) -> str | None:
    if not ref or "reference" not in ref:
        return None
    return ref["reference"].rstrip("/").split("/")[-1]


def codes(concept: Any) -> list[tuple[str, str]]:
    concepts = concept if isinstance(concept, list) else [concept or {}]
    return [(c.get("system", ""), c["code"]) for cc in concepts for c in cc.get("coding", [])]


def icd(concept: Any, systems: set[str], *prefixes: str) -> bool:
    return any(
        s in systems
        and code.replace(".", "").startswith(tuple(p.replace(".", "") for p in prefixes))
        for s, code in codes(concept)
    )


def live(resource: Resource) -> bool:
    ver = codes(resource.get("verificationStatus"))
    return resource.get("status") not in ("entered-in-error", "not-done", "cancelled") and not any(
        c in ("entered-in-error", "refuted") for _, c in ver
    )


def local_day(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).date().isoformat()


def hand_count(state: dict[tuple[str, str], Resource]) -> dict[str, Counter[tuple[str, str]]]:
    """Counter per indicator of (department, status) from the final resources."""
    encounters = {rid: r for (t, rid), r in state.items() if t == "Encounter" and live(r)}
    dept = {rid: ref_id(r.get("serviceProvider")) or "unassigned" for rid, r in encounters.items()}
    by_episode: dict[str, list[Resource]] = {}
    for (rtype, _), r in state.items():
        episode = ref_id(r.get("encounter") or r.get("context"))
        if rtype != "Encounter" and episode in encounters and live(r):
            by_episode.setdefault(episode, []).append(r)
    out: dict[str, Counter[tuple[str, str]]] = {k: Counter() for k in ("stemi", "critical", "ae")}

    # PIT-2026-23: STEMI episodes (EMER/IMP) with primary PCI; met if PCI − arrival ≤ 90 min.
    for eid, enc in encounters.items():
        if enc["class"]["code"] not in ("EMER", "IMP"):
            continue
        rs = by_episode.get(eid, [])
        stemi = any(
            r["resourceType"] == "Condition"
            and (
                icd(r.get("code"), ICD10, "I21.0", "I21.1", "I21.2", "I21.3")
                or (SNOMED, "401303003") in codes(r.get("code"))
            )
            for r in rs
        )
        pcis = [
            when(r.get("performedDateTime") or r.get("performedPeriod", {}).get("start"))
            for r in rs
            if r["resourceType"] == "Procedure"
            and (
                icd(r.get("code"), ICD9, "00.66", "36.06", "36.07")
                or (SNOMED, "415070008") in codes(r.get("code"))
            )
        ]
        pcis = [p for p in pcis if p is not None]
        arrival = when(enc["period"]["start"])
        if stemi and pcis and arrival:
            met = min(pcis) - arrival <= timedelta(minutes=90)
            out["stemi"][(dept[eid], "numerator" if met else "denominator")] += 1

    # PIT-2026-31: imaging critical results; met if a completed Communication about it
    # was sent within 10 minutes of the result's release.
    sent_about: dict[str, list[datetime]] = {}
    for (rtype, _), r in state.items():
        if rtype == "Communication" and r.get("status") == "completed" and r.get("sent"):
            for about in r.get("about", []):
                sent_about.setdefault(ref_id(about) or "", []).append(when(r["sent"]))  # type: ignore[arg-type]
    for eid, rs in by_episode.items():
        for r in rs:
            if r["resourceType"] != "Observation":
                continue
            imaging = any(c == "imaging" for _, c in codes(r.get("category")))
            critical = any(c in ("AA", "HH", "LL") for _, c in codes(r.get("interpretation")))
            issued = when(r.get("issued") or r.get("effectiveDateTime"))
            if imaging and critical and issued:
                sent = sent_about.get(r["id"], [])
                met = bool(sent) and min(sent) - issued <= timedelta(minutes=10)
                out["critical"][(dept[eid], "numerator" if met else "denominator")] += 1

    # NIT-2026-VI: adverse events (actual or potential) per 100 discharged inpatients.
    for eid, rs in by_episode.items():
        for r in rs:
            if r["resourceType"] == "AdverseEvent" and r.get("actuality") in (
                "actual",
                "potential",
            ):
                out["ae"][(dept[eid], "numerator")] += 1
    for eid, enc in encounters.items():
        if (
            enc["class"]["code"] == "IMP"
            and enc["status"] == "finished"
            and enc["period"].get("end")
        ):
            out["ae"][(dept[eid], "denominator")] += 1
    return out


def post_all(runtime, sends: list[Send]) -> list[Send]:
    """Post every bundle; return those the server accepted. Out of order, a DELETE can
    overtake the resource it deletes, and that transaction is rejected whole (404)."""
    accepted = []
    for send in sends:

        def work(session, bundle=send.bundle):
            unit = IngestUnit(
                session, TENANT, runtime.tenant_zone(session, TENANT), runtime.clock.now()
            )
            return process_bundle(unit, bundle, max_entries=5000)

        try:
            runtime.write_tx(work)
        except NotFoundError:
            continue
        accepted.append(send)
    return accepted


@pytest.fixture(scope="module")
def sends() -> list[Send]:
    return posted_order(seed=11)


def test_a_quarter_out_of_order_counts_as_by_hand(
    runtime, clock, app_client, reader_headers, sends
):
    clock.set(datetime(2026, 6, 1, tzinfo=UTC))  # long after the quarter: every deadline passed
    accepted = post_all(runtime, sends)
    assert len(accepted) > 0.95 * len(sends)
    drain(runtime)
    expected = hand_count(replay(accepted))
    assert sum(expected["stemi"].values()) >= 3, "the sample should hold STEMI cases"

    for code, key, ratio in (
        ("PIT-2026-23", "stemi", False),
        ("PIT-2026-31", "critical", False),
        ("NIT-2026-VI", "ae", True),
    ):
        rows = app_client.get(
            f"/api/v1/indicators/{code}/breakdown", params=EVERYTHING, headers=reader_headers
        ).json()["rows"]
        got = {
            r["department"]: (r["numerator"], r["denominator"])
            for r in rows
            if r["numerator"] or r["denominator"]
        }
        want: dict[str, tuple[int, int]] = {}
        for department in {d for d, _ in expected[key]}:
            num = expected[key][(department, "numerator")]
            den_only = expected[key][(department, "denominator")]
            want[department] = (num, den_only if ratio else num + den_only)
        assert got == {d: v for d, v in want.items() if any(v)}, code
        total = app_client.get(
            f"/api/v1/indicators/{code}/value", params=EVERYTHING, headers=reader_headers
        ).json()
        assert (total["numerator"], total["denominator"]) == (
            sum(v[0] for v in want.values()),
            sum(v[1] for v in want.values()),
        )

    report = verify(runtime)
    assert report.ok, report.differences
