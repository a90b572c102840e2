"""The mapping on its own: pure, no database."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from services.hl7v2 import mapping, parse
from services.hl7v2.errors import V2Rejected

SHANGHAI = ZoneInfo("Asia/Shanghai")


def mapped(raw: bytes):
    env = parse.read_envelope(raw)
    return mapping.to_transaction(parse.parse_message(raw, env), SHANGHAI)


def test_empty_leading_repetitions_are_skipped_not_read_as_missing():
    raw = (
        b"MSH|^~\\&|RIS|SHXH|Q|Q|20260302101500||ORU^R01|x|P|2.5\r"
        b"PID|1||~P1^^^^MR\r"
        b"OBR|1||F1|CT^x^L|||||||||||||||||||CT|F\r"
        b"OBX|1|ST|C^x^L||t|||~HH|||F\r"
        b"NTE|1||~second line\r"
    )
    obs = mapped(raw).entries[-1]["resource"]
    assert obs["subject"] == {"reference": "Patient/P1"}
    assert [i["coding"][0]["code"] for i in obs["interpretation"]] == ["HH"]
    assert obs["note"] == [{"text": "second line"}]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("A-1.2", "A-1.2"), ("住院号/1", None), ("x" * 65, None)],
)
def test_ids_are_kept_when_valid_else_hashed(value, expected):
    got = mapping.fhir_id(value)
    if expected is not None:
        assert got == expected
    else:
        assert got.startswith("h") and len(got) == 41 and got == mapping.fhir_id(value)


def test_coding_systems():
    assert mapping.system_uri("I10") == "http://hl7.org/fhir/sid/icd-10"
    assert mapping.system_uri("2.16.156.10011.2.3.3.11") == "urn:oid:2.16.156.10011.2.3.3.11"
    assert mapping.system_uri("HL70078") == "http://terminology.hl7.org/CodeSystem/v2-0078"
    assert mapping.system_uri("") == "https://qcpulse.org/fhir/CodeSystem/hl7v2/L"


def test_every_problem_is_named_at_once():
    raw = (
        b"MSH|^~\\&|RIS|SHXH|Q|Q|20260302101500||ORU^R01|x|P|2.5\r"
        b"PID|1||P1^^^^MR\r"
        b"OBR|1||F1|CT^x^L|||2026xx\r"
        b"OBX|1|NM|C^x^L||abc||||||Q\r"
    )
    with pytest.raises(V2Rejected) as exc:
        mapped(raw)
    assert {(i.segment, i.field, i.code) for i in exc.value.issues} == {
        ("OBR", 7, 102),
        ("OBX", 5, 102),
        ("OBX", 11, 103),
    }
