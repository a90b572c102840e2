"""Property: a generated v2 feed, delivered in any order with duplicates and
corrections, gives the counters its FHIR equivalent gives, and equals a recomputation.

Each drawn visit is a little story told as v2 messages with increasing MSH-7: the
emergency registration with its STEMI diagnosis (A04 + DG1), the PCI (A08 + PR1),
perhaps a corrected PCI time, perhaps a discharge (A03) or a cancelled visit (A11),
and perhaps a critical CT result (ORU) that may be struck out. The FHIR equivalent
is written by hand from the same story — the state its *last* messages describe —
and posted to a second tenant. Hypothesis shuffles and duplicates the v2 messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.hl7v2 import receive
from services.hl7v2.models import HL7Source
from services.indicators.maintenance import verify
from services.indicators.worker import drain
from services.ingest.bundles import apply_transaction
from tests.conftest import OTHER_TENANT, T0, TENANT, _empty
from tests.fhir_factories import ACT, ICD9CM3_CN, ICD10_CN
from tests.hl7v2.helpers import message, msh, seg

SHANGHAI = ZoneInfo("Asia/Shanghai")
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
LOCAL = "https://qcpulse.org/fhir/CodeSystem/hl7v2/L"


def v2_time(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).astimezone(SHANGHAI).strftime("%Y%m%d%H%M%S")


def fhir_time(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).astimezone(SHANGHAI).isoformat()


@dataclass(frozen=True)
class Visit:
    n: int
    pci_at: int | None  # minutes after arrival
    corrected_pci_at: int | None
    discharged: bool
    cancelled: bool
    critical: bool
    struck: bool

    @property
    def vid(self) -> str:
        return f"v{self.n}"

    @property
    def pid(self) -> str:
        return f"P{self.n}"

    def messages(self) -> list[bytes]:
        """The story, oldest first; MSH-7 grows by a minute per message."""
        base = self.n * 100
        out: list[bytes] = []

        def adt(event: str, *extra: str, end: str = "") -> None:
            t = base + len(out) + 1
            pv1 = seg("PV1", "1", "E", *[""] * 7, "emergency^急诊科", *[""] * 8, self.vid)
            pv1 += "|" * 25 + v2_time(base) + (f"|{end}" if end else "")
            out.append(
                message(
                    msh(f"ADT^{event}^ADT_A01", f"{self.vid}-{len(out)}", time=v2_time(t)),
                    seg("EVN", event, v2_time(t)),
                    seg("PID", "1", "", f"{self.pid}^^^H^MR"),
                    pv1,
                    *extra,
                )
            )

        adt(
            "A04",
            seg(
                "DG1", "1", "", "I21.0^STEMI^2.16.156.10011.2.3.3.11", *[""] * 16, f"{self.vid}-dx"
            ),
        )
        for pci in (self.pci_at, self.corrected_pci_at):
            if pci is not None:
                pr1 = seg(
                    "PR1", "1", "", "00.66^PCI^2.16.156.10011.2.3.3.12", "", v2_time(base + pci)
                )
                adt("A08", pr1 + "|" * 14 + f"{self.vid}-pci")
        if self.critical:
            for status in ("F", "W") if self.struck else ("F",):
                t = base + len(out) + 1
                out.append(
                    message(
                        msh("ORU^R01^ORU_R01", f"{self.vid}-{len(out)}", time=v2_time(t)),
                        seg("PID", "1", "", f"{self.pid}^^^H^MR"),
                        seg("PV1", "1", "E", *[""] * 16, self.vid),
                        seg(
                            "OBR",
                            "1",
                            "",
                            f"{self.vid}-ct",
                            "CT^头颅CT^L",
                            *[""] * 17,
                            v2_time(base + 5),
                            "",
                            "CT",
                            "F" if status == "F" else "C",
                        ),
                        seg(
                            "OBX", "1", "ST", "CT1^所见^L", "", "出血", "", "", "HH", "", "", status
                        ),
                    )
                )
        if self.discharged:
            adt("A03", end=v2_time(base + 600))
        if self.cancelled:
            adt("A11")
        return out

    def fhir(self) -> list[dict]:
        """What the last messages describe, written as FHIR by hand."""
        base = self.n * 100
        period = {"start": fhir_time(base)}
        status = "in-progress"
        if self.discharged:
            status, period["end"] = "finished", fhir_time(base + 600)
        if self.cancelled:
            status = "cancelled"
        subject = {"reference": f"Patient/{self.pid}"}
        encounter = {"reference": f"Encounter/{self.vid}"}
        out = [
            {"resourceType": "Patient", "id": self.pid},
            {
                "resourceType": "Encounter",
                "id": self.vid,
                "status": status,
                "class": {"system": ACT, "code": "EMER"},
                "subject": subject,
                "period": period,
                "serviceProvider": {"reference": "Organization/emergency", "display": "急诊科"},
            },
            {
                "resourceType": "Condition",
                "id": f"{self.vid}-dx",
                "code": {"coding": [{"system": ICD10_CN, "code": "I21.0"}]},
                "subject": subject,
                "encounter": encounter,
                "recordedDate": fhir_time(base + 1),
            },
        ]
        pci = self.corrected_pci_at if self.corrected_pci_at is not None else self.pci_at
        if pci is not None:
            out.append(
                {
                    "resourceType": "Procedure",
                    "id": f"{self.vid}-pci",
                    "status": "completed",
                    "code": {"coding": [{"system": ICD9CM3_CN, "code": "00.66"}]},
                    "subject": subject,
                    "encounter": encounter,
                    "performedDateTime": fhir_time(base + pci),
                }
            )
        if self.critical:
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"{self.vid}-ct-1",
                    "status": "entered-in-error" if self.struck else "final",
                    "category": [{"coding": [{"system": OBS_CAT, "code": "imaging"}]}],
                    "code": {"coding": [{"system": LOCAL, "code": "CT1"}]},
                    "subject": subject,
                    "encounter": encounter,
                    "issued": fhir_time(base + 5),
                    "interpretation": [{"coding": [{"system": INTERP, "code": "HH"}]}],
                }
            )
        return out


minutes = st.integers(min_value=20, max_value=200)
visits = st.lists(
    st.builds(
        Visit,
        n=st.just(0),
        pci_at=st.none() | minutes,
        corrected_pci_at=st.none() | minutes,
        discharged=st.booleans(),
        cancelled=st.booleans(),
        critical=st.booleans(),
        struck=st.booleans(),
    ),
    min_size=1,
    max_size=3,
).map(lambda vs: [Visit(**{**v.__dict__, "n": i}) for i, v in enumerate(vs)])


def counters(runtime, tenant: str) -> list[tuple]:
    import sqlalchemy as sa

    from services.indicators.models import CounterRow

    with runtime.read() as session:
        rows = session.execute(
            sa.select(
                CounterRow.indicator,
                CounterRow.department,
                CounterRow.day,
                CounterRow.numerator,
                CounterRow.denominator,
                CounterRow.pending,
                CounterRow.excluded,
            )
            .where(CounterRow.tenant_id == tenant)
            .order_by(CounterRow.indicator, CounterRow.department, CounterRow.day)
        ).all()
    return [tuple(r) for r in rows if any(r[3:])]


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(visits=visits, data=st.data())
def test_any_delivery_order_counts_as_the_fhir_equivalent(runtime, engine, visits, data):
    try:
        with runtime.write() as session:
            session.add(
                HL7Source(id="src", tenant_id=TENANT, facility="SHXH", application="", networks=[])
            )
        feed = [m for v in visits for m in v.messages()]
        order = data.draw(st.permutations(feed))
        dups = data.draw(st.lists(st.sampled_from(feed), max_size=4))
        for raw in [*order, *dups]:
            answer = receive(runtime, raw, transport="mllp", peer=None)
            assert answer.status == "AA", answer.ack
            if data.draw(st.booleans()):
                drain(runtime)
        for v in visits:
            entries = [
                {
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in v.fhir()
            ]
            with runtime.write() as session:
                apply_transaction(
                    session, OTHER_TENANT, SHANGHAI, runtime.clock.now(), entries, max_entries=100
                )
        drain(runtime)
        assert counters(runtime, TENANT) == counters(runtime, OTHER_TENANT)
        if any(
            not v.cancelled and (v.pci_at is not None or (v.critical and not v.struck))
            for v in visits
        ):
            assert counters(runtime, TENANT), "a visit with a PCI or a standing CT counts somewhere"
        assert verify(runtime).ok
    finally:
        _empty(engine)
        from shared.auth import ensure_tenant

        with runtime.write() as session:
            ensure_tenant(session, TENANT, name="示例医院", timezone="Asia/Shanghai")
            ensure_tenant(session, OTHER_TENANT, name="Other hospital", timezone="Asia/Shanghai")
