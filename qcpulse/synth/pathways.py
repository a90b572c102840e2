"""Clinical pathways: what happens to each kind of patient, and when.

Each pathway charts one episode so that it lands in the population of one or more
indicators in docs/INDICATORS.md, with times spread around the indicator's window
the way audit data from Chinese tertiary hospitals spread: most cases meet the
target, a tail misses it, a few never get the intervention at all. The spreads are
written as explicit mixtures (:data:`Spread`) rather than fitted distributions so
that a reader can check them against the target at a glance and a test can rely
on every branch occurring.

Pathways also chart the distractors an evaluator must ignore: NSTEMI with PCI,
haemorrhagic stroke, anxiety disorders next to F20–F39, prophylactic antibiotics,
non-critical imaging, minors in a VTE population, episodes that end before 24 h.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from qcpulse.synth import codes as c
from qcpulse.synth.chart import Chart, EncounterClass, Resource, RiskLevel
from qcpulse.synth.clock import at_local, fhir_time, floor_minute, local_date, minutes
from qcpulse.synth.config import DepartmentRole, Pathway

#: A mixture of uniform ranges in minutes; ``None`` bounds mean "never happens".
Spread = tuple[tuple[float, float | None, float | None], ...]

HOUR: Final = 60.0
DAY: Final = 1440.0

STEMI_DOOR_TO_PCI: Final[Spread] = (
    (0.70, 55, 100),
    (0.12, 100, 200),
    (0.06, 6 * HOUR, 30 * HOUR),
    (0.12, None, None),
)
STROKE_DOOR_TO_NEEDLE: Final[Spread] = (
    (0.45, 40, 80),
    (0.08, 25, 40),
    (0.12, 80, 160),
    (0.35, None, None),  # outside the window, haemorrhage, contraindication
)
VTE_ASSESSMENT: Final[Spread] = (
    (0.85, 20, 20 * HOUR),
    (0.09, 25 * HOUR, 72 * HOUR),
    (0.06, None, None),
)
PSYCH_ASSESSMENT: Final[Spread] = (
    (0.86, 20, 20 * HOUR),
    (0.08, 25 * HOUR, 72 * HOUR),
    (0.06, None, None),
)
#: Septic-shock bundle elements, minutes from time zero.
SEPSIS_LACTATE: Final[Spread] = ((0.85, -50, 40), (0.10, 40, 150), (0.05, None, None))
SEPSIS_ANTIBIOTIC: Final[Spread] = ((0.65, -30, 60), (0.25, 60, 180), (0.10, 180, 360))
SEPSIS_CRYSTALLOID: Final[Spread] = ((0.80, -20, 60), (0.15, 60, 180), (0.05, None, None))
SEPSIS_VASOPRESSOR: Final[Spread] = (
    (0.60, 20, 180),
    (0.25, 180, 360),
    (0.10, 360, 720),
    (0.05, None, None),
)
#: Culture relative to the first antibiotic dose: before (negative), after, or never.
CULTURE_VS_ANTIBIOTIC: Final[Spread] = (
    (0.56, -240, -5),
    (0.26, 20, 2 * DAY),
    (0.18, None, None),
)
SEPSIS_CULTURE_VS_ANTIBIOTIC: Final[Spread] = ((0.75, -60, -5), (0.15, 10, 120), (0.10, None, None))
#: Radiology critical value: issued → phone notification charted as a Communication.
CRITICAL_NOTIFICATION: Final[Spread] = (
    (0.68, 1, 8),
    (0.12, 8, 10),
    (0.14, 10, 45),
    (0.06, None, None),
)


def spread(ch: Chart, table: Spread) -> float | None:
    x = ch.rng.random() * sum(w for w, _, _ in table)
    for weight, lo, hi in table:
        x -= weight
        if x < 0:
            if lo is None or hi is None:
                return None
            return ch.rng.uniform(lo, hi)
    return None


def _at(base: datetime, offset_min: float) -> datetime:
    return floor_minute(base + minutes(offset_min))


def _not_before(t: datetime, floor: datetime) -> datetime:
    return t if t >= floor else floor


def _daytime(ch: Chart, day_offset: float, lo_hour: int = 8, hi_hour: int = 17) -> datetime:
    """A local office-hours time ``day_offset`` days after arrival."""
    day = local_date(ch.arrival + timedelta(days=day_offset))
    return at_local(day, ch.rng.randint(lo_hour, hi_hour - 1), ch.rng.randrange(60))


def _discharge_from(ch: Chart, earliest: datetime) -> datetime:
    """Chinese wards discharge after the morning round: the first such slot after ``earliest``."""
    hour = ch.rng.choice((9, 9, 10, 10, 10, 11, 11, 14, 15, 16))
    minute = ch.rng.randrange(60)
    day = local_date(earliest)
    end = at_local(day, hour, minute)
    if end <= earliest:
        end = at_local(day + timedelta(days=1), hour, minute)
    return end


def _inpatient_end(ch: Chart, lo_days: float, hi_days: float, after: datetime) -> datetime:
    """A length of stay of ``lo``–``hi`` days, and at least half a day after ``after``."""
    stay = ch.arrival + timedelta(days=ch.rng.uniform(lo_days, hi_days))
    return _discharge_from(ch, max(stay, after + timedelta(hours=12)))


# -- building blocks --------------------------------------------------------------------


def labs(
    ch: Chart,
    at: datetime,
    panel: tuple[c.Lab, ...],
    *,
    abnormal: float = 0.2,
    end: datetime | None = None,
) -> list[Resource]:
    """A panel drawn at ``at``, released together by the LIS."""
    if end is not None and at >= end:
        return []
    issued = ch.after(at, 30, 110) + timedelta(seconds=ch.rng.randrange(60))
    results = []
    for lab in panel:
        if ch.chance(abnormal):
            value = lab.high * ch.rng.uniform(1.1, 3.0)
        else:
            value = ch.rng.uniform(lab.low, lab.high)
        results.append(ch.lab(lab, value, collected=at, issued=issued))
    sent = ch.after(issued, 0, 5)
    ch.send(sent, *results)
    if not results:
        return results
    ch.maybe_duplicate(results[-1], sent)
    if ch.chance(ch.cfg.correction_rate / 2):
        wrong = results[0]
        fixed = {
            **wrong,
            "status": "corrected",
            "valueQuantity": {
                **wrong["valueQuantity"],
                "value": round(wrong["valueQuantity"]["value"] * ch.rng.uniform(0.6, 0.9), 2),
            },
        }
        ch.correct(ch.after(issued, 60, 1440), fixed)
    return results


def imaging(
    ch: Chart,
    study: c.Imaging,
    ordered: datetime,
    *,
    critical_p: float,
    end: datetime | None = None,
) -> Resource | None:
    """Order → exam → report; a critical finding is phoned through and charted."""
    if end is not None and ordered >= end:
        return None
    order = ch.service_request(study, authored=ordered)
    ch.send(ch.after(ordered, 1, 5), order)
    performed = ch.after(ordered, 10, 70)
    issued = ch.after(performed, 8, 45) + timedelta(seconds=ch.rng.randrange(60))
    critical = ch.chance(critical_p)
    if critical:
        finding = ch.rng.choice(study.critical)
        flag = ch.rng.choices(("AA", "HH", "LL"), weights=(0.85, 0.1, 0.05))[0]
    else:
        finding = study.normal
        flag = "N" if ch.chance(0.6) else "A"
    obs = ch.imaging(
        study, performed=performed, issued=issued, finding=finding, interpretation=flag
    )
    report = ch.imaging_report(
        study, observation=obs, order=order, performed=performed, issued=issued
    )
    done = {**order, "status": "completed"}
    ch.send(ch.after(issued, 0, 4), obs, report, done)
    if not critical:
        return obs
    if ch.chance(ch.cfg.correction_rate):
        # Over-called on first read; the attending downgrades it and the case disappears.
        downgraded = {
            **obs,
            "status": "amended",
            "interpretation": [c.concept(c.INTERPRETATION, "A")],
        }
        ch.correct(ch.after(issued, 30, 600), downgraded)
    delay = spread(ch, CRITICAL_NOTIFICATION)
    if delay is not None:
        sent = issued + minutes(delay)
        notice = ch.critical_notice(obs, sent=sent, with_encounter=ch.chance(0.8))
        # Most notices are charted at once; some are typed in after the shift.
        charted = sent + minutes(
            ch.rng.uniform(0, 5) if ch.chance(0.85) else ch.rng.uniform(60, 360)
        )
        ch.send(charted, notice)
        ch.maybe_duplicate(notice, charted)
    return obs


def culture(
    ch: Chart,
    test: tuple[str, str],
    collected: datetime,
) -> None:
    """Registered at collection; the result follows two to four days later."""
    registered = ch.culture(test, collected=collected)
    ch.send(ch.after(collected, 5, 40), registered)
    issued = ch.after(collected, 2 * DAY, 4 * DAY) + timedelta(seconds=ch.rng.randrange(60))
    ch.send(ch.after(issued, 0, 10), ch.culture_result(registered, issued=issued), note="update")


def doses(
    ch: Chart,
    drug: c.Drug,
    first: datetime,
    *,
    every_hours: float,
    count: int,
    end: datetime,
    prophylaxis: bool = False,
    infusion_min: float | None = None,
    authored: datetime | None = None,
) -> list[Resource]:
    """An order and its administrations, each charted by the nurse after the fact."""
    authored = authored or ch.after(first, -20, -3)
    authored = _not_before(authored, ch.arrival)
    order = ch.medication_request(drug, authored=authored, prophylaxis=prophylaxis)
    ch.send(ch.after(authored, 1, 8), order)
    given: list[Resource] = []
    for k in range(count):
        at = floor_minute(first + timedelta(hours=every_hours * k))
        if at >= end:
            break
        stop = at + minutes(infusion_min) if infusion_min else None
        adm = ch.administration(drug, at=at, end=stop, request=order, prophylaxis=prophylaxis)
        charted = (stop or at) + minutes(
            ch.rng.uniform(5, 90) if ch.chance(0.9) else ch.rng.uniform(120, 600)
        )
        ch.send(charted, adm)
        given.append(adm)
    if given:
        ch.send(ch.after(end if count > 1 else first, 0, 30), {**order, "status": "completed"})
    return given


def vte_care(ch: Chart, end: datetime, *, high_share: float = 0.25) -> None:
    """NIT-2026-III: risk assessment, bleeding risk and prophylaxis for adult inpatients."""
    if ch.age() < 18:
        return
    offset = spread(ch, VTE_ASSESSMENT)
    if offset is None:
        return
    at = _at(ch.arrival, offset)
    if at >= end:
        return
    weights = (0.75 - high_share, 0.25 + high_share / 2, high_share)
    level: RiskLevel = ch.rng.choices(("low", "moderate", "high"), weights=weights)[0]
    method = "Padua" if ch.department.role in ("general_medicine", "cardiology") else "Caprini"
    ra = ch.risk(
        "vte-risk", "VTE风险评估", at=at, level=level, outcome="静脉血栓栓塞症", method=method
    )
    sent = ch.after(at, 5, 90)
    ch.send(sent, ra)
    ch.maybe_duplicate(ra, sent)
    if ch.chance(ch.cfg.correction_rate):
        # The Caprini score was summed wrongly; the corrected grade may change the case.
        other: RiskLevel = "moderate" if level != "moderate" else "high"
        prediction = [
            {**ra["prediction"][0], "qualitativeRisk": c.concept(c.RISK_PROBABILITY, other)}
        ]
        ch.correct(ch.after(sent, 60, 1440), {**ra, "prediction": prediction})
        level = other
    if level == "low":
        return
    if ch.chance(0.88):
        bleed_at = ch.after(at, 0, 360)
        if bleed_at < end:
            bleed: RiskLevel = "high" if ch.chance(0.15) else "low"
            ch.send(
                ch.after(bleed_at, 5, 60),
                ch.risk("bleeding-risk", "出血风险评估", at=bleed_at, level=bleed, outcome="出血"),
            )
    choice = ch.rng.choices(("drug", "mechanical", "both", "none"), weights=(0.6, 0.18, 0.1, 0.12))[
        0
    ]
    start = ch.after(at, 60, 720)
    if choice in ("drug", "both"):
        drug = (
            c.RIVAROXABAN
            if ch.department.role == "orthopaedics" and ch.chance(0.5)
            else c.ENOXAPARIN
        )
        doses(ch, drug, start, every_hours=24, count=ch.rng.randint(2, 6), end=end)
    if choice in ("mechanical", "both"):
        mech_start = ch.after(start, 0, 240)
        if mech_start < end:
            code = c.concept(c.QC, "vte-mechanical-prophylaxis", "间歇充气加压装置预防VTE")
            proc = ch.procedure(code, start=mech_start, running=True)
            ch.send(ch.after(mech_start, 30, 480), proc)
            stop = min(end, ch.after(mech_start, DAY, 4 * DAY))
            ch.send(ch.after(stop, 10, 240), ch.finished(proc, stop))


def iv_therapy(ch: Chart, start: datetime, end: datetime, p: float) -> None:
    """NIT-2026-V: most Chinese inpatients still get a daily IV drip; some only oral drugs."""
    if ch.chance(p):
        drug = ch.rng.choice(c.ROUTINE_IV)
        days = max(1, min(5, int((end - start).total_seconds() // 86400)))
        doses(
            ch,
            drug,
            ch.after(start, 30, 300),
            every_hours=24,
            count=days,
            end=end,
            infusion_min=ch.rng.uniform(40, 120),
        )
    else:
        doses(ch, c.PARACETAMOL, ch.after(start, 60, 600), every_hours=12, count=2, end=end)


def adverse_events(ch: Chart, end: datetime, p: float) -> None:
    """NIT-2026-VI: voluntarily reported events, usually filed a day or two later."""
    while ch.chance(p):
        span = (end - ch.arrival).total_seconds() / 60
        when = _at(ch.arrival, ch.rng.uniform(30, max(31.0, span - 10)))
        recorded = ch.after(when, 30, 2 * DAY)
        ae = ch.adverse_event(at=when, recorded=recorded)
        sent = ch.after(recorded, 0, 60)
        ch.send(sent, ae)
        ch.maybe_duplicate(ae, sent)
        p /= 5


def antibiotic_course(
    ch: Chart,
    first: datetime,
    end: datetime,
    *,
    specimen: tuple[str, str],
    culture_spread: Spread = CULTURE_VS_ANTIBIOTIC,
    drug: c.Drug | None = None,
) -> None:
    """AMR-PATHOGEN: a therapeutic antibacterial, with a culture before, after or never."""
    drug = drug or ch.rng.choice(c.THERAPEUTIC_ANTIBIOTICS)
    offset = spread(ch, culture_spread)
    if offset is not None:
        collected = _not_before(_at(first, offset), ch.arrival + minutes(3))
        if collected < end:
            culture(ch, specimen, collected)
    days = max(1, min(7, int((end - first).total_seconds() // 86400)))
    every = 24 if drug is c.CEFTRIAXONE else 12
    given = doses(
        ch, drug, first, every_hours=every, count=days * 24 // every, end=end, infusion_min=30
    )
    if given:
        ch.maybe_duplicate(given[0], first + minutes(60))


def inpatient_care(
    ch: Chart,
    end: datetime,
    *,
    iv_p: float,
    ae_p: float = 0.03,
    vte_high_share: float = 0.25,
    admission_panel: tuple[c.Lab, ...] = c.ADMISSION_LABS,
) -> None:
    labs(ch, ch.after(ch.arrival, 20, 180), admission_panel, end=end)
    vte_care(ch, end, high_share=vte_high_share)
    iv_therapy(ch, ch.after(ch.arrival, 30, 240), end, iv_p)
    adverse_events(ch, end, ae_p)
    if ch.chance(0.35):
        imaging(ch, c.XR_CHEST, ch.after(ch.arrival, 60, 1440), critical_p=0.04, end=end)


# -- pathways ------------------------------------------------------------------------


def ed_minor(ch: Chart) -> None:
    dx = ch.rng.choice(c.ED_MINOR_DX)
    ch.admit(ch.admission_diagnosis(dx))
    if ch.chance(0.01):
        # Duplicate registration, voided by the clerk: an episode that never was.
        assert ch.encounter is not None
        ch.retract(ch.after(ch.arrival, 10, 60), ch.encounter)
        return
    end = ch.after(ch.arrival, 60, 480)
    if ch.chance(0.5):
        labs(ch, ch.after(ch.arrival, 10, 40), (c.WBC, c.CRP), end=end)
    if ch.chance(0.45):
        study = c.CT_HEAD if dx.who == "S06.0" else ch.rng.choice(c.IMAGING_STUDIES)
        imaging(ch, study, ch.after(ch.arrival, 10, 60), critical_p=0.1, end=end)
    if ch.chance(0.35):
        doses(
            ch,
            c.SALINE,
            ch.after(ch.arrival, 20, 90),
            every_hours=24,
            count=1,
            end=end,
            infusion_min=60,
        )
    ch.discharge(end)


def clinic(ch: Chart) -> None:
    dx = ch.rng.choice(c.AMB_DX)
    ch.admit(ch.admission_diagnosis(dx))
    end = ch.after(ch.arrival, 15, 60)
    if ch.chance(0.4):
        labs(ch, ch.after(ch.arrival, 5, 15), (c.GLUCOSE, c.CREATININE), end=end + minutes(90))
    if ch.chance(0.5):
        drug = c.PARACETAMOL if dx.who == "J06.9" else c.ASPIRIN
        order = ch.medication_request(drug, authored=ch.after(ch.arrival, 10, 14))
        ch.send(ch.after(ch.arrival, 15, 20), order)
    ch.discharge(end)


def stemi(ch: Chart) -> None:
    """PCI-2026-23: STEMI, ECG in minutes, primary PCI, door-to-balloon spread."""
    rng = ch.rng
    dx = rng.choice(c.STEMI_DX)
    ecg_at = ch.after(ch.arrival, 2, 12)
    dx_at = ch.after(ecg_at, 3, 20)
    mis_coded = ch.chance(3 * ch.cfg.correction_rate)
    initial_dx = c.MI_UNSPECIFIED_DX if mis_coded and ch.chance(0.6) else dx
    wrong_stemi = mis_coded and initial_dx is dx  # coded STEMI, later revised to NSTEMI
    onset = ch.after(ch.arrival, -240, -30)
    # Through the ED (a chain): the ED charts chest pain and the ECG; the STEMI is
    # often coded only on the cardiology admission, where the PCI is charted too.
    dx_on_ward = ch.chained and ch.chance(0.6)
    if dx_on_ward:
        ch.admit(
            ch.admission_diagnosis(c.Dx("R07.400", "胸痛", "R07.4")),
            start_error_min=_registration_error(ch),
        )
        ch.send(ch.after(ecg_at, 3, 15), ch.ecg(at=ecg_at, finding="窦性心律，V1-V4导联ST段抬高"))
        condition = None
    elif ch.chance(0.3) and not ch.chained:  # the ambulance ECG diagnosed it: admission slip
        condition = ch.admission_diagnosis(initial_dx, onset=onset)
        dx_at = floor_minute(ch.arrival)
        ch.admit(condition, start_error_min=_registration_error(ch))
    else:
        ch.admit(
            ch.admission_diagnosis(c.Dx("R07.400", "胸痛", "R07.4")),
            start_error_min=_registration_error(ch),
        )
        condition = ch.condition(initial_dx, recorded=dx_at, onset=onset)
        ecg = ch.ecg(at=ecg_at, finding="窦性心律，V1-V4导联ST段抬高")
        ch.send(ch.after(dx_at, 0, 10), ecg, condition)
    if mis_coded and condition is not None:
        revised = ch.recode(condition, c.NSTEMI_DX if wrong_stemi else dx)
        ch.correct(ch.after(dx_at, 6 * HOUR, 3 * DAY), revised)
    labs(ch, ch.after(ch.arrival, 5, 20), (c.TROPONIN_I, c.CREATININE), abnormal=0.5)
    loading = ch.after(dx_at, 0, 15)
    ch.send(
        ch.after(loading, 5, 40),
        ch.administration(c.ASPIRIN, at=loading),
        ch.administration(c.TICAGRELOR, at=loading),
    )
    door_to_pci = spread(ch, STEMI_DOOR_TO_PCI)
    if ch.chained:
        to_ward = max(loading, dx_at) + minutes(ch.rng.uniform(5, 25))
        if door_to_pci is not None:
            to_ward = min(to_ward, _at(ch.arrival, door_to_pci) - minutes(ch.rng.uniform(3, 10)))
        to_ward = max(to_ward, ch.arrival + minutes(8))
        ch.transfer(to_ward, *((initial_dx,) if dx_on_ward else ()))
    if door_to_pci is None:
        pci_end = None
        if ch.chance(0.4):
            angio_at = ch.after(ch.arrival, 90, 600)
            code = c.concept(c.ICD9CM3_CN, *c.CORONARY_ANGIOGRAPHY)
            ch.send(ch.after(angio_at, 60, 240), ch.procedure(code, start=angio_at))
    else:
        pci_end = _pci(ch, _at(ch.arrival, door_to_pci))
    if ch.encounter_class == "EMER":
        base = pci_end or ch.arrival + minutes(rng.uniform(120, 600))
        ch.discharge(
            ch.after(base, 30, 240), disposition=("other-hcf", "Other healthcare facility")
        )
        return
    end = _inpatient_end(ch, 4, 9, pci_end or ch.arrival)
    inpatient_care(ch, end, iv_p=0.6, ae_p=0.03)
    if ch.chance(0.3):
        imaging(ch, c.XR_CHEST, ch.after(ch.arrival, 20, 120), critical_p=0.03, end=end)
    ch.discharge(end)


def _pci(ch: Chart, start: datetime) -> datetime:
    code_cn, name = ch.rng.choices(c.PCI_CODES, weights=(0.65, 0.3, 0.05))[0]
    if ch.who_icd10:
        code = c.concept(c.ICD9CM_WHO, code_cn[:5], name)
    else:
        code = c.concept(c.ICD9CM3_CN, code_cn, name)
    if ch.chance(0.15):
        code["coding"].append(c.coding(c.SNOMED, "415070008", "Percutaneous coronary intervention"))
    heparin_at = start - minutes(ch.rng.uniform(2, 10))
    ch.send(ch.after(heparin_at, 5, 60), ch.administration(c.HEPARIN, at=heparin_at, amount=7000))
    end = ch.after(start, 30, 95)
    true_pci = ch.procedure(code, start=start, end=end)
    late_charting = ch.chance(3 * ch.cfg.correction_rate)
    if late_charting:
        # Charted from the first balloon inflation, not the puncture; the cath-lab
        # log fixes it, and may move the case across the 90-minute line.
        charted_start = floor_minute(start + (end - start) * ch.rng.uniform(0.4, 0.9))
        period = {**true_pci["performedPeriod"], "start": fhir_time(charted_start)}
        pci = {**true_pci, "performedPeriod": period}
    else:
        pci = true_pci
    sent = ch.after(end, 10, 120) if ch.chance(0.9) else ch.after(end, 6 * HOUR, 24 * HOUR)
    ch.send(sent, pci)
    if late_charting:
        ch.correct(ch.after(sent, 120, 3 * DAY), true_pci)
    if not ch.maybe_withdraw(pci, sent):
        ch.maybe_duplicate(true_pci, sent)
    return end


def _registration_error(ch: Chart) -> float:
    """Minutes by which the registration desk charts arrival late (later corrected)."""
    return ch.rng.uniform(5, 40) if ch.chance(ch.cfg.correction_rate) else 0.0


def stroke(ch: Chart) -> None:
    """NIT-2026-I-DNT: ischaemic stroke, CT, IV thrombolysis with door-to-needle spread."""
    dx = ch.rng.choice(c.ISCHAEMIC_STROKE_DX)
    symptom = c.Dx("R29.800", "急性肢体无力", "R29.8")
    ch.admit(
        ch.admission_diagnosis(symptom),
        start_error_min=_registration_error(ch),
    )
    ct = imaging(ch, c.CT_HEAD, ch.after(ch.arrival, 5, 20), critical_p=0.02)
    ct_done = ch.after(ch.arrival, 25, 40) if ct is None else _issued(ct)
    dx_at = ch.after(ct_done, 1, 10)
    dx_on_ward = ch.chained and ch.chance(0.4)
    if not dx_on_ward:
        condition = ch.condition(dx, recorded=dx_at, onset=ch.after(ch.arrival, -270, -30))
        ch.send(ch.after(dx_at, 0, 15), condition)
    labs(ch, ch.after(ch.arrival, 3, 15), (c.GLUCOSE, c.CREATININE), abnormal=0.3)
    dtn = spread(ch, STROKE_DOOR_TO_NEEDLE)
    needle_end: datetime | None = None
    if dtn is not None:
        needle = _at(ch.arrival, dtn)
        drug = c.TENECTEPLASE if ch.chance(0.2) else c.ALTEPLASE
        infusion = 60.0 if drug is c.ALTEPLASE else None
        authored = ch.after(needle, -12, -3)
        order = ch.medication_request(drug, authored=authored)
        ch.send(ch.after(authored, 1, 3), order)
        given = ch.administration(
            drug,
            at=needle,
            end=needle + minutes(infusion) if infusion else None,
            request=order,
            amount=round(0.9 * ch.rng.uniform(50, 85), 1) if infusion else None,
        )
        needle_end = needle + minutes(infusion or 5)
        charted = ch.after(needle_end, 5, 120)
        if ch.chance(2 * ch.cfg.correction_rate):
            # The nurse charted when the infusion ended, or the bolus when she wrote it
            # down; the correction next day moves the needle time back.
            late = fhir_time(needle_end + minutes(ch.rng.uniform(0, 20)))
            if "effectivePeriod" in given:
                wrong = {**given, "effectivePeriod": {**given["effectivePeriod"], "start": late}}
                wrong["effectivePeriod"]["end"] = max(late, given["effectivePeriod"]["end"])
            else:
                wrong = {**given, "effectiveDateTime": late}
            ch.send(charted, wrong)
            ch.correct(ch.after(charted, 6 * HOUR, 2 * DAY), given)
        else:
            ch.send(charted, given)
        if not ch.maybe_withdraw(given, charted):
            ch.maybe_duplicate(given, charted)
    if ch.chained:  # from the ED to the stroke unit once the needle is in, or the CT read
        ch.transfer(ch.after(needle_end or dx_at, 20, 150), *((dx,) if dx_on_ward else ()))
    if ch.encounter_class == "EMER":
        base = needle_end or ch.arrival + minutes(ch.rng.uniform(120, 360))
        ch.discharge(
            ch.after(base, 60, 300), disposition=("other-hcf", "Other healthcare facility")
        )
        return
    end = _inpatient_end(ch, 7, 14, needle_end or ch.arrival)
    inpatient_care(ch, end, iv_p=0.75, ae_p=0.04, vte_high_share=0.4)
    ch.discharge(end)


def _issued(obs: Resource) -> datetime:
    return datetime.fromisoformat(obs["issued"]).astimezone(UTC)


def septic_shock(ch: Chart) -> None:
    """NIT-2026-IV: septic shock at time zero and the 1/3/6-hour bundle elements around it."""
    rng = ch.rng
    hospital_onset = ch.encounter_class == "IMP" and ch.department.role != "icu"
    if hospital_onset:
        t0 = _at(ch.arrival, rng.uniform(1 * DAY, 5 * DAY))
        site = rng.choice(("pneumonia", "abdomen", "urine"))
        admit_dx = c.Dx("J18.900", "肺炎", "J18.9") if site == "pneumonia" else c.SEPSIS_DX
    else:
        t0 = _at(ch.arrival, rng.uniform(0, 240))
        site = rng.choice(("pneumonia", "abdomen", "urine", "unknown"))
        admit_dx = c.SEPSIS_DX
    ch.admit(ch.admission_diagnosis(admit_dx))
    recorded = ch.after(t0, 5, 60)
    with_onset = ch.chance(0.85)
    shock = ch.condition(c.SEPTIC_SHOCK_DX, recorded=recorded, onset=t0 if with_onset else None)
    ch.send(ch.after(recorded, 0, 30), shock)
    zero = t0 if with_onset else recorded
    floor = ch.arrival + minutes(3)

    def when(table: Spread, base: datetime = zero) -> datetime | None:
        offset = spread(ch, table)
        return None if offset is None else _not_before(_at(base, offset), floor)

    lactate_test = c.LACTATE if ch.chance(0.8) else c.LACTATE_BLOOD
    first_lactate = when(SEPSIS_LACTATE)
    if first_lactate is not None:
        high = ch.chance(0.75)
        value = rng.uniform(2.1, 8.0) if high else rng.uniform(0.9, 2.0)
        issued = ch.after(first_lactate, 15, 50)
        lac = ch.lab(lactate_test, value, collected=first_lactate, issued=issued)
        ch.send(ch.after(issued, 0, 5), lac)
        if high:
            second = when(((0.75, 90, 300), (0.10, 300, 480), (0.15, None, None)), first_lactate)
            if second is not None:
                issued2 = ch.after(second, 15, 50)
                value2 = value * rng.uniform(0.4, 1.1)
                ch.send(
                    ch.after(issued2, 0, 5),
                    ch.lab(lactate_test, value2, collected=second, issued=issued2),
                )
    abx_at = when(SEPSIS_ANTIBIOTIC)
    assert abx_at is not None  # every septic-shock patient gets antibiotics at some point
    if hospital_onset or ch.encounter_class == "EMER":
        end = (
            _discharge_from(ch, t0 + timedelta(days=rng.uniform(4, 12)))
            if hospital_onset
            else ch.after(t0, 6 * HOUR, 20 * HOUR)
        )
    else:
        end = _inpatient_end(ch, 4, 20, t0 + timedelta(days=2))
    antibiotic_course(
        ch,
        abx_at,
        end,
        specimen=c.BLOOD_CULTURE,
        culture_spread=SEPSIS_CULTURE_VS_ANTIBIOTIC,
        drug=c.CEFTRIAXONE if ch.chance(0.5) else c.MEROPENEM,
    )
    if site != "unknown" and ch.chance(0.5):
        specimen = {"pneumonia": c.SPUTUM_CULTURE, "urine": c.URINE_CULTURE}.get(
            site, c.OTHER_CULTURE
        )
        culture(ch, specimen, ch.after(abx_at, 30, 600))
    fluid_at = when(SEPSIS_CRYSTALLOID)
    if fluid_at is not None:
        fluid = c.RINGER_LACTATE if ch.chance(0.5) else c.SALINE
        volume = 30 * rng.uniform(50, 80)
        stop = fluid_at + minutes(rng.uniform(60, 180))
        adm = ch.administration(fluid, at=fluid_at, end=stop, amount=round(volume, -1))
        ch.send(ch.after(stop, 5, 90), adm)
    pressor_at = when(SEPSIS_VASOPRESSOR)
    if pressor_at is not None and pressor_at < end:
        pressor = c.NOREPINEPHRINE if ch.chance(0.9) else c.DOPAMINE
        adm = ch.administration(pressor, at=pressor_at, running=True)
        charted = ch.after(pressor_at, 20, 240)
        ch.send(charted, adm)
        ch.maybe_duplicate(adm, charted)
        stop = min(end, ch.after(pressor_at, 6 * HOUR, 60 * HOUR))
        ch.send(ch.after(stop, 10, 240), ch.finished(adm, stop))
    if ch.chance(0.4):
        imaging(ch, c.CT_CHEST, ch.after(zero, 30, 300), critical_p=0.08, end=end)
    died = ch.chance(0.22)
    if ch.encounter_class == "IMP":
        inpatient_care(ch, end, iv_p=1.0, ae_p=0.06, vte_high_share=0.5)
    disposition = ("exp", "Expired") if died else ("home", "Home")
    if ch.encounter_class == "EMER" and not died:
        disposition = ("other-hcf", "Other healthcare facility")
    ch.discharge(end, disposition=disposition, died=died)


def cardiology(ch: Chart) -> None:
    dx = ch.rng.choice(c.CARDIOLOGY_DX)
    ch.admit(ch.admission_diagnosis(dx))
    pci_end = None
    if dx is c.NSTEMI_DX and ch.chance(0.5):
        # Early invasive strategy for NSTEMI: a PCI that is not primary PCI for STEMI.
        pci_end = _pci(ch, _daytime(ch, ch.rng.uniform(0.5, 3)))
    end = _inpatient_end(ch, 3, 8, pci_end or ch.arrival)
    inpatient_care(ch, end, iv_p=0.6)
    ch.discharge(end)


def neurology(ch: Chart) -> None:
    dx = ch.rng.choice(c.NEUROLOGY_DX)
    ch.admit(ch.admission_diagnosis(dx))
    end = _inpatient_end(ch, 5, 12, ch.arrival)
    imaging(ch, c.CT_HEAD, ch.after(ch.arrival, 20, 240), critical_p=0.05, end=end)
    inpatient_care(ch, end, iv_p=0.65)
    ch.discharge(end)


def icu(ch: Chart) -> None:
    dx = ch.rng.choice(c.ICU_DX)
    ch.admit(ch.admission_diagnosis(dx))
    end = _inpatient_end(ch, 3, 10, ch.arrival)
    if ch.chance(0.7):
        antibiotic_course(ch, ch.after(ch.arrival, 30, 360), end, specimen=c.SPUTUM_CULTURE)
    imaging(ch, c.CT_CHEST, ch.after(ch.arrival, 30, 360), critical_p=0.08, end=end)
    inpatient_care(ch, end, iv_p=1.0, ae_p=0.06, vte_high_share=0.5)
    ch.discharge(end, died=ch.chance(0.1), disposition=("home", "Home"))


def general_medicine(ch: Chart) -> None:
    dx = ch.rng.choice(c.GENERAL_MEDICINE_DX)
    ch.admit(ch.admission_diagnosis(dx))
    if ch.chance(0.05):
        end = ch.after(ch.arrival, 4 * HOUR, 20 * HOUR)  # discharged against advice
    else:
        end = _inpatient_end(ch, 4, 12, ch.arrival)
    if dx.cn in c.INFECTIOUS_GM_DX and ch.chance(0.85):
        specimen = c.URINE_CULTURE if dx.who == "N39.0" else c.SPUTUM_CULTURE
        antibiotic_course(ch, ch.after(ch.arrival, 60, 720), end, specimen=specimen)
    inpatient_care(ch, end, iv_p=0.7)
    ch.discharge(end)


def _surgery(
    ch: Chart, ops: tuple[c.Operation, ...], *, reop_p: float, follow_up: c.Imaging
) -> None:
    rng = ch.rng
    fitting = [op for op in ops if op.min_age <= ch.age()] or list(ops)
    op = rng.choice(fitting)
    ch.admit(ch.admission_diagnosis(op.dx))
    urgent = op.infected and ch.chance(0.6)
    if urgent:
        incision = ch.after(ch.arrival, 2 * HOUR, 10 * HOUR)
    else:
        incision = _daytime(ch, rng.uniform(0.6, 3.5), 8, 16)
    duration = rng.uniform(150, 360) if op.level4 else rng.uniform(45, 150)
    op_end = floor_minute(incision + minutes(duration))
    recovery = rng.uniform(4, 10) if op.level4 else rng.uniform(1.5, 6)
    end = _discharge_from(ch, op_end + timedelta(days=recovery))
    if op.level4:
        _preop_mdt(ch, incision)
    if op.infected:
        antibiotic_course(ch, ch.after(ch.arrival, 30, 240), end, specimen=c.OTHER_CULTURE)
    elif ch.chance(0.9):
        drug = c.CEFAZOLIN if ch.chance(0.7) else c.CEFUROXIME
        first = floor_minute(incision - minutes(rng.uniform(20, 60)))
        doses(
            ch,
            drug,
            first,
            every_hours=8,
            count=rng.randint(1, 3),
            end=end,
            prophylaxis=True,
            authored=first - minutes(rng.uniform(30, 600)),
        )
    category = {"coding": [c.coding(c.SNOMED, "387713003", "Surgical procedure")]}
    if op.level4:
        category["coding"].append(c.coding(c.QC, "surgery-level-4", "四级手术"))
    surgery = ch.procedure(
        c.concept(c.ICD9CM3_CN, op.code, op.name), start=incision, end=op_end, category=category
    )
    sent = ch.after(op_end, 30, 360)
    ch.send(sent, surgery)
    ch.maybe_duplicate(surgery, sent)
    if ch.chance(reop_p):
        reop_start = ch.after(op_end, 6 * HOUR, 3 * DAY)
        reop_end = ch.after(reop_start, 60, 180)
        reop_category = {
            "coding": [
                c.coding(c.SNOMED, "387713003", "Surgical procedure"),
                c.coding(c.QC, "unplanned-reoperation", "非计划再次手术"),
            ]
        }
        reop = ch.procedure(
            c.concept(c.ICD9CM3_CN, c.REOPERATION.code, c.REOPERATION.name),
            start=reop_start,
            end=reop_end,
            category=reop_category,
        )
        ch.send(ch.after(reop_end, 30, 360), reop)
        end = max(end, _discharge_from(ch, reop_end + timedelta(days=rng.uniform(3, 8))))
    if ch.chance(0.3):
        imaging(ch, follow_up, ch.after(op_end, 6 * HOUR, 2 * DAY), critical_p=0.05, end=end)
    inpatient_care(ch, end, iv_p=0.9, vte_high_share=0.45 if op.level4 else 0.25)
    ch.discharge(end)


def _preop_mdt(ch: Chart, incision: datetime) -> None:
    """NIT-2026-VII: the 术前多学科讨论 before a level-4 operation, late or missing in some."""
    roll = ch.rng.random()
    if roll < 0.80:
        earliest = ch.arrival + minutes(30)
        at = floor_minute(incision - minutes(ch.rng.uniform(60, 2 * DAY)))
        if at < earliest:
            at = floor_minute(earliest + (incision - earliest) * ch.rng.uniform(0.1, 0.8))
    elif roll < 0.87:
        at = ch.after(incision, 2 * HOUR, 2 * DAY)  # held after the fact, for the record
    else:
        return
    mdt = ch.procedure(c.concept(c.QC, "preop-mdt", "术前多学科讨论"), start=at)
    ch.send(ch.after(at, 30, 1440), mdt)


def general_surgery(ch: Chart) -> None:
    _surgery(ch, c.GENERAL_SURGERY_OPS, reop_p=0.05, follow_up=c.CT_ABDOMEN)


def orthopaedics(ch: Chart) -> None:
    _surgery(ch, c.ORTHOPAEDIC_OPS, reop_p=0.03, follow_up=c.XR_CHEST)


def psychiatry(ch: Chart) -> None:
    """PIT-2026-40: F20–F39 inpatients need a risk-behaviour assessment within 24 h."""
    in_scope = ch.chance(0.85)
    dx = ch.rng.choice(c.PSYCH_DX if in_scope else c.PSYCH_OTHER_DX)
    _psychiatric_stay(ch, dx)


def schizophrenia(ch: Chart) -> None:
    """PIT-2026-39: schizophrenia (F20) inpatients and the antipsychotics they go home on."""
    _psychiatric_stay(ch, ch.rng.choice(c.SCHIZOPHRENIA_DX))


#: Discharge regimens (出院带药) of a schizophrenia patient: monotherapy is the target.
SCHIZOPHRENIA_DISCHARGE: Final = (
    ("one", 0.45),
    ("one+lithium", 0.08),  # lithium is N05AN: not an antipsychotic, still monotherapy
    ("same twice", 0.10),  # morning and night tablets of one drug: one distinct code
    ("one+cancelled", 0.06),  # a second drug prescribed, then cancelled
    ("two", 0.28),
    ("none", 0.08),  # no antipsychotic to take home: not a case
)


def _discharge_prescriptions(
    ch: Chart, dx: c.Dx, inpatient_drug: c.Drug, end: datetime
) -> list[Resource]:
    """MedicationRequests with category ``discharge``, authored on the last day."""
    rng = ch.rng

    def rx(drug: c.Drug, status: str = "", dose: float | None = None) -> Resource:
        authored = _not_before(ch.after(end, -20 * HOUR, -10), ch.arrival)
        status = status or ("completed" if ch.chance(0.2) else "active")
        return ch.medication_request(
            drug, authored=authored, setting="discharge", status=status, dose=dose
        )

    if dx.who.startswith("F20"):
        plan = rng.choices(
            [p for p, _ in SCHIZOPHRENIA_DISCHARGE], weights=[w for _, w in SCHIZOPHRENIA_DISCHARGE]
        )[0]
        main = inpatient_drug if inpatient_drug in c.ANTIPSYCHOTICS else c.RISPERIDONE
        other = rng.choice([d for d in c.ANTIPSYCHOTICS if d is not main])
        if plan == "one":
            return [rx(main)]
        if plan == "one+lithium":
            return [rx(main), rx(c.LITHIUM)]
        if plan == "same twice":
            return [rx(main), rx(main, dose=main.dose / 2)]
        if plan == "one+cancelled":
            return [rx(main), rx(other, status="cancelled")]
        if plan == "two":
            return [rx(main), rx(other)]
        return [rx(c.LITHIUM)] if ch.chance(0.4) else []
    if dx.who.startswith("F31"):
        return [rx(c.LITHIUM)] + ([rx(c.QUETIAPINE)] if ch.chance(0.4) else [])
    return [rx(c.ESCITALOPRAM)]


def _psychiatric_stay(ch: Chart, dx: c.Dx) -> None:
    ch.admit(ch.admission_diagnosis(dx))
    if ch.chance(0.03):
        end = ch.after(ch.arrival, 3 * HOUR, 20 * HOUR)  # family took the patient home
    else:
        end = _inpatient_end(ch, 10, 35, ch.arrival)
    offset = spread(ch, PSYCH_ASSESSMENT)
    if offset is not None:
        at = _at(ch.arrival, offset)
        k = 0
        while at < end and k < 5:
            level: RiskLevel = ch.rng.choices(("low", "moderate", "high"), weights=(0.4, 0.4, 0.2))[
                0
            ]
            ra = ch.risk(
                "psych-risk", "危险行为风险评估", at=at, level=level, outcome="冲动伤人/自伤自杀"
            )
            ch.send(ch.after(at, 5, 240), ra)
            at = _at(at, ch.rng.uniform(5 * DAY, 8 * DAY))
            k += 1
    drug = {"F31": c.LITHIUM, "F32": c.ESCITALOPRAM, "F33": c.ESCITALOPRAM}.get(
        dx.who[:3], c.RISPERIDONE if ch.chance(0.6) else c.QUETIAPINE
    )
    doses(ch, drug, ch.after(ch.arrival, 120, 720), every_hours=24, count=5, end=end)
    labs(ch, ch.after(ch.arrival, 60, 1440), c.ADMISSION_LABS, abnormal=0.1, end=end)
    vte_care(ch, end, high_share=0.05)
    if ch.chance(0.1):
        iv_therapy(ch, ch.after(ch.arrival, 60, 600), end, 1.0)
    adverse_events(ch, end, 0.03)
    prescriptions = _discharge_prescriptions(ch, dx, drug, end)
    if prescriptions and ch.chance(0.5):  # prescribed the day before, sent on their own
        authored = max(datetime.fromisoformat(r["authoredOn"]) for r in prescriptions)
        ch.send(ch.after(authored, 1, 30), *prescriptions)
        prescriptions = []
    ch.discharge(end, *prescriptions)


# -- second wave: cardiac arrest, chest-wall surgery, dialysis ---------------------------

#: Of those who die: the disposition says ``exp``; the rest only through the master
#: index's time of death (离院方式 left as "other", or nothing at all in the ED).
DEATH_CODED_EXP: Final = 0.75


def _death(ch: Chart, end: datetime, *, in_ed: bool) -> None:
    """Discharge a patient who died: ``exp``, or only ``Patient.deceasedDateTime``."""
    died_at = end if ch.chance(0.5) else ch.after(end, -90, -5)
    if ch.chance(DEATH_CODED_EXP):
        ch.discharge(end, disposition=("exp", "Expired"), died=True, died_at=died_at)
    elif in_ed:
        ch.discharge(end, disposition=None, died=True, died_at=died_at)
    else:
        ch.discharge(end, disposition=("oth", "Other"), died=True, died_at=died_at)


def _resuscitation(ch: Chart, arrest: datetime) -> tuple[datetime, Resource | None]:
    """CPR from ``arrest`` (documented in most), adrenaline every 3–5 minutes, and a
    shock for a shockable rhythm. Returns the end of the attempt and the CPR record."""
    rng = ch.rng
    cpr_start = floor_minute(arrest + minutes(rng.uniform(0, 4)))
    cpr_end = ch.after(cpr_start, 6, 50)
    cpr: Resource | None = None
    if ch.chance(0.92):  # the rest: a do-not-resuscitate order, or CPR never charted
        code_cn, name = rng.choices(c.CPR_CODES, weights=(0.85, 0.15))[0]
        cpr = ch.procedure(ch.icd9((code_cn, name)), start=cpr_start, end=cpr_end)
        ch.send(ch.after(cpr_end, 10, 180), cpr)
    given: list[Resource] = []
    at = cpr_start + minutes(rng.uniform(1, 3))
    while at < cpr_end and len(given) < 8:
        given.append(ch.administration(c.EPINEPHRINE, at=floor_minute(at)))
        at += minutes(rng.uniform(3, 5))
    if given:
        ch.send(ch.after(cpr_end, 10, 120), *given)
    if ch.chance(0.4):
        shock = ch.procedure(ch.icd9(c.DEFIBRILLATION), start=ch.after(cpr_start, 1, 8))
        ch.send(ch.after(cpr_end, 10, 120), shock)
    return cpr_end, cpr


def cardiac_arrest(ch: Chart) -> None:
    """PIT-2026-11: cardiac arrest with CPR, and whether the patient leaves alive.

    Out-of-hospital arrests come through the ED: some die there, some are
    transferred out, some are admitted to the ICU (a chain); in-hospital arrests
    happen on the ward. About a third survive to discharge.
    """
    rng = ch.rng
    arrest_dx = rng.choice(c.CARDIAC_ARREST_DX)
    in_hospital = ch.encounter_class == "IMP" and not ch.chained
    if in_hospital:
        ch.admit(ch.admission_diagnosis(rng.choice(c.ARREST_CAUSE_DX)))
        arrest = _at(ch.arrival, rng.uniform(6 * HOUR, 4 * DAY))
    else:
        ch.admit(ch.admission_diagnosis(c.Dx("R99.x00", "呼吸心跳停止", "R99")))
        arrest = floor_minute(ch.arrival)  # arrived in arrest, or arrested at triage
    cpr_end, _ = _resuscitation(ch, arrest)
    recorded = ch.after(cpr_end, 5, 60)
    on_ward = ch.chained and ch.chance(0.5)  # the I46 coded only on the ICU admission
    if not on_ward:
        ch.send(ch.after(recorded, 0, 30), ch.condition(arrest_dx, recorded=recorded, onset=arrest))
    if not in_hospital:
        labs(ch, ch.after(ch.arrival, 5, 20), (c.LACTATE, c.TROPONIN_I), abnormal=0.8)
        if ch.chance(0.5 if ch.chained else 0.55):
            _death(ch, ch.after(cpr_end, 5, 60), in_ed=True)
            return
        if not ch.chained:
            ch.discharge(
                ch.after(cpr_end, 60, 360), disposition=("other-hcf", "Other healthcare facility")
            )
            return
        ch.transfer(ch.after(cpr_end, 20, 120), *((arrest_dx,) if on_ward else ()))
    died = ch.chance(0.5)
    end = _inpatient_end(ch, 2, 20, cpr_end) if not died else ch.after(cpr_end, 2 * HOUR, 6 * DAY)
    if ch.chance(0.2) and end > cpr_end + minutes(6 * HOUR):  # arrested again in the ICU
        again = ch.after(cpr_end, 3 * HOUR, (end - cpr_end).total_seconds() / 60 - 60)
        _resuscitation(ch, again)
    inpatient_care(ch, end, iv_p=1.0, ae_p=0.05, vte_high_share=0.5)
    if died:
        _death(ch, end, in_ed=False)
        return
    ch.discharge(end, disposition=rng.choice((("home", "Home"), ("rehab", "Rehabilitation"))))
    if ch.chance(0.1):  # died at home weeks later: not a death before discharge
        ch.dies_later(ch.after(end, 3 * DAY, 40 * DAY))


#: What follows a chest-wall repair, days after the index discharge.
PECTUS_AFTER: Final = (
    ("nothing", 0.58),
    ("unplanned", 0.22),  # EM or UR (or no priority) within 31 days: the numerator
    ("planned", 0.07),  # elective (EL) within 31 days: does not count
    ("late", 0.08),  # unplanned, but more than 31 days later
    ("died", 0.05),  # died in the index stay: not an index at all
)


def chest_wall(ch: Chart) -> None:
    """PIT-2026-47: chest-wall deformity repair (Nuss) and readmissions after it."""
    rng = ch.rng
    dx = c.PECTUS_DX[0] if ch.chance(0.8) else c.PECTUS_DX[1]
    ch.priority = ("EL", "elective") if ch.chance(0.7) else None
    ch.admit(ch.admission_diagnosis(dx))
    incision = _daytime(ch, rng.uniform(0.8, 2.5), 8, 15)
    op_end = floor_minute(incision + minutes(rng.uniform(60, 150)))
    end = _discharge_from(ch, op_end + timedelta(days=rng.uniform(4, 8)))
    first = floor_minute(incision - minutes(rng.uniform(20, 60)))
    doses(ch, c.CEFAZOLIN, first, every_hours=8, count=rng.randint(1, 3), end=end,
          prophylaxis=True, authored=first - minutes(rng.uniform(30, 600)))  # fmt: skip
    category = {"coding": [c.coding(c.SNOMED, "387713003", "Surgical procedure")]}
    repair = ch.procedure(ch.icd9(c.CHEST_WALL_REPAIR), start=incision, end=op_end,
                          category=category)  # fmt: skip
    sent = ch.after(op_end, 30, 360)
    ch.send(sent, repair)
    ch.maybe_duplicate(repair, sent)
    if ch.chance(0.5):
        imaging(ch, c.XR_CHEST, ch.after(op_end, 6 * HOUR, 2 * DAY), critical_p=0.05, end=end)
    inpatient_care(ch, end, iv_p=0.9, vte_high_share=0.1)
    after = rng.choices([a for a, _ in PECTUS_AFTER], weights=[w for _, w in PECTUS_AFTER])[0]
    if after == "died":
        _death(ch, end, in_ed=False)
        return
    ch.discharge(end)
    if after == "nothing":
        return
    thoracic = ch.cfg.department("thoracic_surgery")
    if after == "planned":
        back = _daytime(ch, (end - ch.arrival).total_seconds() / 86400 + rng.uniform(5, 29))
        ch.readmit(back, thoracic, "IMP", c.PECTUS_ELECTIVE_DX, priority=("EL", "elective"))
        ch.discharge(_discharge_from(ch, back + timedelta(days=rng.uniform(1, 3))))
        return
    days = rng.uniform(0.5, 30.5) if after == "unplanned" else rng.uniform(32, 75)
    back = floor_minute(end + timedelta(days=days))
    why = rng.choice(c.PECTUS_READMISSION_DX)
    priority = rng.choices((("EM", "emergency"), ("UR", "urgent"), None), weights=(0.5, 0.4, 0.1))[
        0
    ]
    if ch.chance(0.3):  # back through the ED, admitted from there (a chain)
        ch.readmit(back, ch.cfg.department("emergency"), "EMER", why)
        ch.ward = (thoracic, "IMP")
        ch.transfer(ch.after(back, 60, 300), why, priority=priority or ("EM", "emergency"))
    else:
        ch.readmit(back, thoracic, "IMP", why, priority=priority)
    stay_end = _inpatient_end(ch, 2, 7, ch.start)
    labs(ch, ch.after(ch.start, 20, 180), c.ADMISSION_LABS, end=stay_end)
    ch.discharge(stay_end)


#: The unit a haemoglobin result arrives in: (UCUM code, factor from g/L, decimals).
HB_UNITS: Final = (
    (("g/L", 1.0, 0), 0.70),
    (("g/dL", 0.1, 1), 0.14),
    (("mmol/L", 1 / 16.11, 2), 0.11),
    (("mg", 1.0, 0), 0.05),  # a mis-mapped LIS unit: matches nothing
)


def _month_start(day: date, months_later: int) -> date:
    k = day.year * 12 + day.month - 1 + months_later
    return date(k // 12, k % 12 + 1, 1)


def dialysis(ch: Chart) -> None:
    """PIT-2026-03: dialysis patients followed for months, with a haemoglobin most months.

    Haemodialysis patients are sampled at one or two sessions a month (the feed does
    not carry every session), peritoneal-dialysis patients at their monthly clinic
    visit; some months include a short nephrology admission. Results arrive in g/L,
    g/dL, mmol/L, and now and then in a unit nothing converts.
    """
    rng = ch.rng
    haemo = ch.chance(0.8)
    level = rng.uniform(92, 126)  # the patient's usual haemoglobin, g/L
    dx = rng.choice(c.ESRD_DX)
    nephrology = ch.cfg.department("nephrology")
    months = rng.randint(2, 5)
    first_day = local_date(ch.arrival)
    visits: list[tuple[datetime, bool]] = [(ch.arrival, False)]
    for m in range(months):
        month = _month_start(first_day, m)
        days = (_month_start(month, 1) - month).days
        count = (rng.randint(1, 2) if haemo else 1) - (1 if m == 0 else 0)
        for _ in range(count):
            day = month + timedelta(days=rng.randrange(days))
            hour = rng.choice((7, 7, 12, 17)) if haemo else rng.randint(8, 15)
            at = at_local(day, hour, rng.randrange(0, 30))
            if at > ch.arrival + timedelta(days=1):
                visits.append((at, ch.chance(0.08)))
    visits.sort(key=lambda v: v[0])
    hb_month: dict[tuple[int, int], int] = {}
    previous_end: datetime | None = None
    for at, admitted in visits:
        if previous_end is not None:
            if at <= previous_end + timedelta(hours=12):
                continue
            ch.readmit(at, nephrology, "IMP" if admitted else "AMB", dx)
        else:
            ch.admit(ch.admission_diagnosis(dx))
        start = ch.start
        session = ch.after(start, 10, 40) if not admitted else _daytime(ch, 1)
        length = rng.choice((240.0, 240.0, 210.0)) if haemo or admitted else 20.0
        if admitted:
            end = _inpatient_end(ch, 3, 7, session)
        else:
            end = ch.after(session, length + 10, length + 40)
        if ch.chance(0.96):  # the rest: the session charted without its procedure code
            if haemo or admitted:
                proc = ch.procedure(
                    ch.icd9(c.HAEMODIALYSIS), start=session, end=session + minutes(length)
                )
            else:
                proc = ch.procedure(ch.icd9(c.PERITONEAL_DIALYSIS), start=session)
            ch.send(ch.after(session, length + 10, length + 120), proc)
        key = (local_date(start).year, local_date(start).month)
        wanted = 0.85 if key not in hb_month else 0.15  # a recheck after an EPO change
        if ch.chance(wanted):
            hb_month[key] = hb_month.get(key, 0) + 1
            drawn = ch.after(session, -5, 5) if session > start + minutes(6) else session
            value = max(55.0, min(160.0, rng.gauss(level, 9)))
            (unit, factor, decimals) = rng.choices(
                [u for u, _ in HB_UNITS], weights=[w for _, w in HB_UNITS]
            )[0]
            issued = ch.after(drawn, 40, 150) + timedelta(seconds=rng.randrange(60))
            hb = ch.lab(c.HAEMOGLOBIN, value * factor, collected=drawn, issued=issued,
                        unit=unit, scale=factor, decimals=decimals)  # fmt: skip
            sent = ch.after(issued, 0, 10)
            ch.send(sent, hb)
            ch.maybe_withdraw(hb, sent)
            if value < 100 and ch.chance(0.6):
                epo_at = ch.after(session, 60, 200)
                ch.send(ch.after(epo_at, 5, 60), ch.administration(c.EPOETIN, at=epo_at))
        if admitted:
            inpatient_care(ch, end, iv_p=0.6, vte_high_share=0.2)
        ch.discharge(end)
        previous_end = end


@dataclass(frozen=True, slots=True)
class PathwaySpec:
    """Who walks this pathway: ages (min, mode, max), sex ratio, and where they are seen."""

    run: Callable[[Chart], None]
    ages: tuple[int, int, int]
    male_share: float
    settings: tuple[tuple[float, DepartmentRole, EncounterClass], ...]
    #: Share of the inpatient settings that come through the ED first: an EMER visit,
    #: then the ward stay ``partOf`` it (the pathway calls :meth:`Chart.transfer`).
    via_ed: float = 0.0


SPECS: Final[dict[Pathway, PathwaySpec]] = {
    "ed_minor": PathwaySpec(ed_minor, (1, 35, 90), 0.5, ((1.0, "emergency", "EMER"),)),
    "clinic": PathwaySpec(clinic, (18, 55, 88), 0.45, ((1.0, "general_medicine", "AMB"),)),
    "stemi": PathwaySpec(
        stemi,
        (38, 63, 92),
        0.75,
        ((0.65, "cardiology", "IMP"), (0.35, "emergency", "EMER")),
        via_ed=0.45,
    ),
    "stroke": PathwaySpec(
        stroke,
        (40, 68, 94),
        0.6,
        ((0.7, "neurology", "IMP"), (0.3, "emergency", "EMER")),
        via_ed=0.4,
    ),
    "septic_shock": PathwaySpec(
        septic_shock,
        (25, 70, 96),
        0.58,
        (
            (0.6, "icu", "IMP"),
            (0.2, "emergency", "EMER"),
            (0.12, "general_medicine", "IMP"),
            (0.08, "general_surgery", "IMP"),
        ),
    ),
    "cardiology": PathwaySpec(cardiology, (35, 68, 95), 0.55, ((1.0, "cardiology", "IMP"),)),
    "neurology": PathwaySpec(neurology, (18, 60, 92), 0.52, ((1.0, "neurology", "IMP"),)),
    "icu": PathwaySpec(icu, (20, 68, 95), 0.6, ((1.0, "icu", "IMP"),)),
    "general_medicine": PathwaySpec(
        general_medicine, (18, 70, 98), 0.5, ((1.0, "general_medicine", "IMP"),)
    ),
    "general_surgery": PathwaySpec(
        general_surgery, (6, 55, 90), 0.52, ((1.0, "general_surgery", "IMP"),)
    ),
    "orthopaedics": PathwaySpec(orthopaedics, (10, 62, 95), 0.45, ((1.0, "orthopaedics", "IMP"),)),
    "psychiatry": PathwaySpec(psychiatry, (15, 35, 75), 0.48, ((1.0, "psychiatry", "IMP"),)),
    "cardiac_arrest": PathwaySpec(
        cardiac_arrest,
        (25, 66, 95),
        0.65,
        ((0.55, "icu", "IMP"), (0.45, "emergency", "EMER")),
        via_ed=0.7,
    ),
    "schizophrenia": PathwaySpec(schizophrenia, (16, 36, 70), 0.52, ((1.0, "psychiatry", "IMP"),)),
    "chest_wall": PathwaySpec(chest_wall, (6, 15, 30), 0.8, ((1.0, "thoracic_surgery", "IMP"),)),
    "dialysis": PathwaySpec(dialysis, (30, 62, 88), 0.58, ((1.0, "nephrology", "AMB"),)),
}
