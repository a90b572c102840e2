"""What can be wrong with a v2 message, in the terms an ACK reports it.

Each problem is one :class:`V2Issue`: the ACK code it calls for (``AE`` for content
errors, ``AR`` for a message qcpulse will not take at all), the HL7 error code of
table 0357, the place (segment, its sequence among segments of that id, field,
component) and a reason in words. An ACK carries one ERR segment per issue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AckCode = Literal["AA", "AE", "AR"]

#: HL7 table 0357 (message error condition codes) that qcpulse answers with.
SEGMENT_SEQUENCE = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_PROCESSING_ID = 202
UNSUPPORTED_VERSION = 203
UNKNOWN_KEY = 204
APPLICATION_INTERNAL_ERROR = 207

ERROR_NAMES = {
    SEGMENT_SEQUENCE: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNSUPPORTED_VERSION: "Unsupported version id",
    UNKNOWN_KEY: "Unknown key identifier",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}


@dataclass(frozen=True, slots=True)
class V2Issue:
    ack: Literal["AE", "AR"]
    code: int
    text: str
    segment: str | None = None
    #: 1-based position among the message's segments with this id (the second OBX is 2).
    sequence: int | None = None
    field: int | None = None
    component: int | None = None

    @property
    def location(self) -> str:
        """``OBX[2]-5.1`` style, for logs and problem text."""
        if self.segment is None:
            return "message"
        out = self.segment + (f"[{self.sequence}]" if self.sequence and self.sequence > 1 else "")
        if self.field is not None:
            out += f"-{self.field}"
            if self.component is not None:
                out += f".{self.component}"
        return out


class V2Rejected(Exception):
    """A message that cannot be applied; nothing of it is stored as clinical data."""

    def __init__(self, issues: list[V2Issue] | tuple[V2Issue, ...]) -> None:
        if not issues:
            raise ValueError("V2Rejected needs at least one issue")
        self.issues = tuple(issues)
        super().__init__("; ".join(f"{i.location}: {i.text}" for i in self.issues))

    @property
    def ack(self) -> Literal["AE", "AR"]:
        return "AR" if any(i.ack == "AR" for i in self.issues) else "AE"
