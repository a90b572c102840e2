"""v2 messages through ``POST /hl7v2`` and the service: ACK codes, what is stored, and
that a visit sent as v2 counts exactly as the same visit sent as FHIR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.hl7v2 import receive
from services.indicators.maintenance import verify
from services.indicators.worker import drain
from shared.auth import Role
from tests.conftest import OTHER_TENANT, make_key
from tests.hl7v2.helpers import PID, ack_code, logged, message, msh, pci_message, seg, stemi_adt

ER7 = {"Content-Type": "x-application/hl7-v2+er7"}
EXAMPLE = Path(__file__).parents[2] / "examples" / "stemi-visit.json"


@pytest.fixture
def source(app_client, admin_headers):
    r = app_client.post(
        "/api/v1/hl7/sources", json={"facility": "SHXH", "application": None}, headers=admin_headers
    )
    assert r.status_code == 201, r.text
    return r.json()


def post(client, headers, raw: bytes):
    r = client.post("/hl7v2", content=raw, headers={**headers, **ER7})
    assert r.status_code == 200, r.text
    return r.text


def value(client, headers, code="PIT-2026-23"):
    r = client.get(
        f"/api/v1/indicators/{code}/value",
        params={"from": "2026-03-01", "to": "2026-03-31"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return body["numerator"], body["denominator"], body["pending"]


def test_stemi_visit_as_v2_counts_as_the_fhir_visit(
    app_client, runtime, source, ingest_headers, reader_headers
):
    assert ack_code(post(app_client, ingest_headers, stemi_adt())) == "AA"
    drain(runtime)
    assert value(app_client, reader_headers) == (0, 0, 1)  # STEMI, PCI still to come
    assert ack_code(post(app_client, ingest_headers, pci_message())) == "AA"
    drain(runtime)
    v2 = value(app_client, reader_headers)
    # The same visit as FHIR, in the other tenant.
    other = {"Authorization": f"Bearer {make_key(runtime, Role.INGEST, OTHER_TENANT)}"}
    r = app_client.post("/fhir", json=json.loads(EXAMPLE.read_text()), headers=other)
    assert r.status_code == 200, r.text
    drain(runtime)
    other_reader = {"Authorization": f"Bearer {make_key(runtime, Role.READER, OTHER_TENANT)}"}
    assert v2 == value(app_client, other_reader) == (1, 1, 0)
    assert verify(runtime).ok
    cases = app_client.get(
        "/api/v1/indicators/PIT-2026-23/cases",
        params={"from": "2026-03-01", "to": "2026-03-31"},
        headers=reader_headers,
    ).json()["cases"]
    assert [(c["status"], c["elapsed_minutes"]) for c in cases] == [("numerator", 70.0)]


def test_identical_resend_answers_the_original_ack_and_applies_nothing(
    app_client, runtime, source, ingest_headers, admin_headers
):
    first = post(app_client, ingest_headers, stemi_adt())
    again = post(app_client, ingest_headers, stemi_adt())
    assert again == first and ack_code(first) == "AA"
    assert len(logged(runtime)) == 1
    r = app_client.get("/fhir/Encounter/enc-0001/_history", headers=admin_headers)
    assert r.json()["total"] == 1
    # The same content under a new control id: a new message, but no new version.
    assert ack_code(post(app_client, ingest_headers, stemi_adt("m1-bis"))) == "AA"
    r = app_client.get("/fhir/Encounter/enc-0001/_history", headers=admin_headers)
    assert r.json()["total"] == 1
    assert [m.written for m in logged(runtime)][1] == [
        "Patient/MRN0001/_history/1",
        "Encounter/enc-0001/_history/1",
        "Condition/cond-0001/_history/1",
    ]


def test_content_error_answers_ae_with_err_and_stores_no_clinical_data(
    app_client, runtime, source, ingest_headers, admin_headers
):
    raw = message(
        msh("ADT^A04^ADT_A01", "bad1"),
        PID,
        seg("PV1", "1", "E", *[""] * 16, "enc-9", *[""] * 24, "2026030210xx"),
        seg("DG1", "1", "", ""),
    )
    ack = post(app_client, ingest_headers, raw)
    assert ack_code(ack) == "AE"
    errs = [s for s in ack.split("\r") if s.startswith("ERR")]
    assert any("PV1^1^44" in e and "102" in e for e in errs), errs
    assert any("DG1^1^3" in e and "101" in e for e in errs), errs
    assert app_client.get("/fhir/Encounter/enc-9", headers=admin_headers).status_code == 404
    assert app_client.get("/fhir/Patient/MRN0001", headers=admin_headers).status_code == 404
    (row,) = logged(runtime)
    assert row.status == "AE" and row.written == [] and row.accepted_control_id is None
    # Corrected, the same control id is accepted: AE remembered nothing.
    fixed = raw.replace(b"2026030210xx", b"202603021000").replace(
        b"DG1|1||", b"DG1|1||I21.0^STEMI^I10"
    )
    assert ack_code(post(app_client, ingest_headers, fixed)) == "AA"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"message_type": "SIU^S12"}, "200"),
        ({"message_type": "ADT^A99"}, "201"),
        ({"processing": "T"}, "202"),
        ({"version": "2.7"}, "203"),
    ],
)
def test_unsupported_messages_answer_ar_and_apply_nothing(
    app_client, runtime, source, ingest_headers, admin_headers, change, code
):
    fields = {"message_type": "ADT^A04^ADT_A01", **change}
    raw = message(
        msh(fields.pop("message_type"), "x1", **fields), PID, seg("PV1", "1", "E", *[""] * 16, "e1")
    )
    ack = post(app_client, ingest_headers, raw)
    assert ack_code(ack) == "AR"
    assert f"^{code}&" in ack or f"|{code}^" in ack, ack
    assert app_client.get("/fhir/Patient/MRN0001", headers=admin_headers).status_code == 404
    assert [m.status for m in logged(runtime)] == ["AR"]


def test_unknown_source_answers_ar_and_is_stored_nowhere(
    app_client, runtime, source, ingest_headers
):
    raw = message(msh("ADT^A04^ADT_A01", "u1", facility="ELSEWHERE"), PID)
    ack = post(app_client, ingest_headers, raw)
    assert ack_code(ack) == "AR" and "204" in ack
    assert logged(runtime) == []
    # A source registered by another tenant is unknown to this tenant's key.
    other = {"Authorization": f"Bearer {make_key(runtime, Role.INGEST, OTHER_TENANT)}"}
    assert ack_code(post(app_client, other, stemi_adt())) == "AR"
    assert logged(runtime) == []


def test_source_networks_limit_the_peer(app_client, runtime, admin_headers):
    r = app_client.post(
        "/api/v1/hl7/sources",
        json={"facility": "SHXH", "application": "LIS", "networks": ["10.1.0.0/16"]},
        headers=admin_headers,
    )
    assert r.status_code == 201
    raw = message(msh("ADT^A04^ADT_A01", "n1", application="LIS"), PID)
    assert receive(runtime, raw, transport="mllp", peer="127.0.0.1").status == "AR"
    assert logged(runtime) == []
    dup = app_client.post(
        "/api/v1/hl7/sources",
        json={"facility": "SHXH", "application": "LIS"},
        headers=admin_headers,
    )
    assert dup.status_code == 409


def test_enhanced_mode_sends_the_commit_ack_only_when_asked(runtime, app_client, source):
    def send(control_id, accept, application=""):
        raw = message(
            msh("ADT^A04^ADT_A01", control_id, accept_ack=accept, application_ack=application),
            PID,
            seg("PV1", "1", "E", *[""] * 16, "e1"),
        )
        return receive(runtime, raw, transport="mllp", peer="127.0.0.1")

    always = send("c1", "AL")
    assert (always.status, always.send, ack_code(always.ack)) == ("AA", True, "CA")
    assert send("c2", "ER").send is False  # errors only, and this one succeeded
    # No commit acknowledgement, but the application acknowledgement is asked for.
    application = send("c3", "NE", "AL")
    assert (application.send, ack_code(application.ack)) == (True, "AA")
    assert send("c4", "NE", "NE").send is False


def test_gb18030_message_is_decoded_and_bad_utf8_is_ae(app_client, runtime, source, admin_headers):
    text = (
        "\r".join(
            [
                msh("ADT^A04^ADT_A01", "g1", charset="GB18030"),
                PID,
                seg("PV1", "1", "E", *[""] * 7, "cardio^心内科", *[""] * 8, "e-gb"),
            ]
        )
        + "\r"
    )
    answer = receive(runtime, text.encode("gb18030"), transport="mllp", peer="127.0.0.1")
    assert answer.status == "AA", answer.ack
    body = app_client.get("/fhir/Encounter/e-gb", headers=admin_headers).json()
    assert body["serviceProvider"] == {"reference": "Organization/cardio", "display": "心内科"}
    patient = app_client.get("/fhir/Patient/MRN0001", headers=admin_headers).json()
    assert patient["name"][0]["text"] == "王建国"
    # GB bytes under a UTF-8 MSH-18: AE at MSH-18, nothing stored.
    bad = text.replace("GB18030", "UNICODE UTF-8").replace("g1", "g2").encode("gb18030")
    answer = receive(runtime, bad, transport="mllp", peer="127.0.0.1")
    assert answer.status == "AE" and "MSH^1^18" in answer.ack


def test_late_admission_does_not_undo_the_discharge(app_client, runtime, source, admin_headers):
    def adt(control_id, event, time, end=""):
        pv1 = seg("PV1", "1", "I", *[""] * 7, "cardio^心内科", *[""] * 8, "e7", *[""] * 24)
        return message(
            msh(f"ADT^{event}^ADT_A01", control_id, time=time),
            seg("EVN", event, time),
            PID,
            pv1 + f"|20260302100000|{end}",
        )

    discharge = adt("d", "A03", "20260305090000", "20260305090000")
    admission = adt("a", "A01", "20260302100000")
    assert receive(runtime, discharge, transport="mllp", peer=None).status == "AA"
    late = receive(runtime, admission, transport="mllp", peer=None)
    assert late.status == "AA"
    body = app_client.get("/fhir/Encounter/e7", headers=admin_headers).json()
    assert body["status"] == "finished"
    assert body["period"] == {
        "start": "2026-03-02T10:00:00+08:00",
        "end": "2026-03-05T09:00:00+08:00",
    }
    assert logged(runtime)[1].stale == ["Patient/MRN0001", "Encounter/e7"]


def test_transfer_without_arrival_keeps_the_stored_arrival(
    app_client, runtime, source, admin_headers
):
    admit = message(
        msh("ADT^A01^ADT_A01", "t1", time="20260302100000"),
        PID,
        seg(
            "PV1",
            "1",
            "I",
            *[""] * 7,
            "cardio^心内科",
            *[""] * 8,
            "e8",
            *[""] * 24,
            "20260302093000",
        ),
    )
    transfer = message(
        msh("ADT^A02^ADT_A02", "t2", time="20260303100000"),
        seg("EVN", "A02", "20260303100000"),
        PID,
        seg("PV1", "1", "I", *[""] * 7, "icu^重症医学科", *[""] * 8, "e8"),
    )
    for raw in (admit, transfer):
        assert receive(runtime, raw, transport="mllp", peer=None).status == "AA"
    body = app_client.get("/fhir/Encounter/e8", headers=admin_headers).json()
    assert body["period"] == {"start": "2026-03-02T09:30:00+08:00"}
    assert body["serviceProvider"]["reference"] == "Organization/icu"


def test_cancel_admit_voids_the_episode(
    app_client, runtime, source, ingest_headers, reader_headers
):
    post(app_client, ingest_headers, stemi_adt())
    post(app_client, ingest_headers, pci_message())
    drain(runtime)
    assert value(app_client, reader_headers)[1] == 1
    cancel = stemi_adt("m9", event="A11", time="20260302130000")
    assert ack_code(post(app_client, ingest_headers, cancel)) == "AA"
    drain(runtime)
    assert value(app_client, reader_headers) == (0, 0, 0)
    assert verify(runtime).ok


def test_merge_moves_the_visits_to_the_surviving_patient(
    app_client, runtime, source, admin_headers
):
    other_pid = PID.replace("MRN0001", "MRN0002")
    first = message(
        msh("ADT^A04^ADT_A01", "p1"), other_pid, seg("PV1", "1", "O", *[""] * 16, "e-old")
    )
    assert receive(runtime, first, transport="mllp", peer=None).status == "AA"
    merge = message(
        msh("ADT^A40^ADT_A39", "p2", time="20260302110000"),
        seg("EVN", "A40", "20260302110000"),
        PID,
        seg("MRG", "MRN0002^^^SHXH^MR"),
    )
    answer = receive(runtime, merge, transport="mllp", peer=None)
    assert answer.status == "AA", answer.ack
    old = app_client.get("/fhir/Patient/MRN0002", headers=admin_headers).json()
    assert old["active"] is False
    assert old["link"] == [{"other": {"reference": "Patient/MRN0001"}, "type": "replaced-by"}]
    enc = app_client.get("/fhir/Encounter/e-old", headers=admin_headers).json()
    assert enc["subject"] == {"reference": "Patient/MRN0001"}


def critical_oru(control_id="r1", *, status="F", report="F", flag="HH", time="20260302101500"):
    return message(
        msh("ORU^R01^ORU_R01", control_id, time=time, application="RIS"),
        PID,
        seg("PV1", "1", "E", *[""] * 16, "enc-0001"),
        seg("ORC", "RE", "P100", "F100"),
        seg(
            "OBR",
            "1",
            "P100",
            "F100",
            "CT-HEAD^头颅CT^L",
            "",
            "",
            "20260302100000",
            *[""] * 14,
            "20260302101000+0800",
            "",
            "CT",
            report,
        ),
        seg("OBX", "1", "ST", "CT-FINDING^影像所见^L", "", "脑出血", "", "", flag, "", "", status),
        seg("NTE", "1", "", "已电话通知"),
    )


def test_radiology_critical_result_counts_in_pit_31(
    app_client, runtime, source, ingest_headers, reader_headers, admin_headers
):
    assert ack_code(post(app_client, ingest_headers, stemi_adt())) == "AA"
    assert ack_code(post(app_client, ingest_headers, critical_oru())) == "AA"
    drain(runtime)
    obs = app_client.get("/fhir/Observation/F100-1", headers=admin_headers).json()
    assert obs["issued"] == "2026-03-02T10:10:00+08:00"
    assert obs["interpretation"][0]["coding"][0]["code"] == "HH"
    assert obs["note"] == [{"text": "已电话通知"}]
    report = app_client.get("/fhir/DiagnosticReport/F100", headers=admin_headers).json()
    assert report["result"] == [{"reference": "Observation/F100-1"}]
    assert value(app_client, reader_headers, "PIT-2026-31") == (0, 0, 1)  # 10 minutes to notify
    # The result is struck out (OBX-11 W): the case leaves the count.
    struck = critical_oru("r2", status="W", report="C", time="20260302103000")
    assert ack_code(post(app_client, ingest_headers, struck)) == "AA"
    drain(runtime)
    assert value(app_client, reader_headers, "PIT-2026-31") == (0, 0, 0)
    assert verify(runtime).ok


def test_message_log_is_admin_only_and_filters_by_status(
    app_client, runtime, source, ingest_headers, admin_headers, reader_headers
):
    post(app_client, ingest_headers, stemi_adt())
    post(app_client, ingest_headers, message(msh("ADT^A04^ADT_A01", "e"), PID))
    assert app_client.get("/api/v1/hl7/messages", headers=reader_headers).status_code == 403
    page = app_client.get(
        "/api/v1/hl7/messages", params={"status": "AE"}, headers=admin_headers
    ).json()
    assert [m["control_id"] for m in page["messages"]] == ["e"]
    assert page["messages"][0]["raw"].startswith("MSH|")


def test_wrong_media_type_is_415(app_client, source, ingest_headers):
    r = app_client.post(
        "/hl7v2",
        content=stemi_adt(),
        headers={**ingest_headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 415


def test_replay_applies_logged_messages_again_in_order(
    app_client, runtime, source, ingest_headers, admin_headers
):
    from services.hl7v2 import replay

    post(app_client, ingest_headers, stemi_adt())
    post(app_client, ingest_headers, message(msh("ADT^A04^ADT_A01", "e"), PID))  # AE
    post(app_client, ingest_headers, pci_message())
    done = list(replay(runtime))
    assert [(r.before, r.after) for r in done] == [("AA", "AA"), ("AE", "AE"), ("AA", "AA")]
    assert all(m.replayed_at is not None for m in logged(runtime))
    # Identical content: replaying wrote no new version.
    r = app_client.get("/fhir/Encounter/enc-0001/_history", headers=admin_headers)
    assert r.json()["total"] == 1
    assert [r.id for r in replay(runtime, status="AE")] == [logged(runtime)[1].id]


def test_readme_example_file_after_the_fhir_bundle_keeps_the_value(
    app_client, runtime, source, ingest_headers, reader_headers
):
    """The README tour: examples/stemi-visit.json, then examples/stemi-visit.hl7."""
    r = app_client.post("/fhir", json=json.loads(EXAMPLE.read_text()), headers=ingest_headers)
    assert r.status_code == 200
    drain(runtime)
    assert value(app_client, reader_headers) == (1, 1, 0)
    text = (EXAMPLE.parent / "stemi-visit.hl7").read_bytes()
    for chunk in text.split(b"MSH|")[1:]:
        raw = (b"MSH|" + chunk).replace(b"\n", b"\r")
        assert ack_code(post(app_client, ingest_headers, raw)) == "AA"
    drain(runtime)
    assert value(app_client, reader_headers) == (1, 1, 0)
    assert verify(runtime).ok
