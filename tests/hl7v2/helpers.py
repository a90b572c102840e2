"""Building v2 messages in tests: segments as lists of fields, joined the ER7 way."""

from __future__ import annotations

import socket
from collections.abc import Sequence

import sqlalchemy as sa

from services.hl7v2.models import HL7Message
from shared.runtime import Runtime

Segment = Sequence[str]


def msh(
    message_type: str,
    control_id: str,
    *,
    time: str = "20260302100000",
    facility: str = "SHXH",
    application: str = "HIS",
    version: str = "2.5",
    processing: str = "P",
    charset: str = "UNICODE UTF-8",
    accept_ack: str = "",
    application_ack: str = "",
) -> str:
    fields = [
        "MSH",
        "^~\\&",
        application,
        facility,
        "QCPULSE",
        "QCPULSE",
        time,
        "",
        message_type,
        control_id,
        processing,
        version,
        "",
        "",
        accept_ack,
        application_ack,
        "",
        charset,
    ]
    return "|".join(fields)


def seg(*fields: str) -> str:
    return "|".join(fields)


def message(*segments: str) -> bytes:
    return ("\r".join(segments) + "\r").encode("utf-8")


def read_frame(sock: socket.socket) -> bytes:
    """Bytes up to the end of one MLLP frame, or what came before the peer closed."""
    data = b""
    while not data.endswith(b"\x1c\r"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def ack_code(ack: str | bytes) -> str:
    text = ack.decode() if isinstance(ack, bytes) else ack
    msa = next(s for s in text.split("\r") if s.startswith("MSA"))
    return msa.split("|")[1]


def logged(runtime: Runtime) -> list[HL7Message]:
    with runtime.read() as session:
        rows = list(session.scalars(sa.select(HL7Message).order_by(HL7Message.id)))
        session.expunge_all()
    return rows


#: The emergency visit of examples/stemi-visit.json: department, visit number, arrival.
STEMI_PV1 = seg(
    "PV1",
    "1",
    "E",
    *[""] * 7,
    "emergency^急诊科",
    *[""] * 8,
    "enc-0001",
    *[""] * 24,
    "20260302100000",
)
PID = seg("PID", "1", "", "MRN0001^^^SHXH^MR", "", "王^建国", "", "19610412", "M")


def stemi_adt(control_id: str = "m1", *, event: str = "A04", time: str = "20260302100500") -> bytes:
    """The STEMI visit of examples/stemi-visit.json as one ADT message."""
    return message(
        msh(f"ADT^{event}^ADT_A01", control_id, time=time),
        seg("EVN", event, time),
        PID,
        STEMI_PV1,
        seg(
            "DG1",
            "1",
            "",
            "I21.000x001^急性前壁ST段抬高型心肌梗死^2.16.156.10011.2.3.3.11",
            "",
            "20260302084000",
            "F",
            *[""] * 12,
            "20260302100500",
            "cond-0001",
        ),
    )


def pci_message(
    control_id: str = "m3",
    *,
    start: str = "20260302111000",
    minutes: str = "45",
    time: str = "20260302120000",
) -> bytes:
    """The primary PCI as an A08 of the same visit (PR1 in an ADT)."""
    return message(
        msh("ADT^A08^ADT_A01", control_id, time=time),
        seg("EVN", "A08", time),
        PID,
        STEMI_PV1,
        seg(
            "PR1",
            "1",
            "",
            "00.6600^经皮冠状动脉腔内血管成形术[PTCA]^2.16.156.10011.2.3.3.12",
            "",
            start,
            "",
            minutes,
            *[""] * 11,
            "pr-0001",
        ),
    )
