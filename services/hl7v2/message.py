"""The plain values that cross the v2 adapter's stages.

``parse.read_envelope`` reads the MSH of raw bytes into an :class:`Envelope` (enough to
find the source and answer an ACK even when the rest is unreadable);
``parse.parse_message`` decodes and splits the whole message; ``mapping.to_transaction``
turns it into a :class:`Mapped` — the entries of one FHIR transaction Bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import hl7

#: v2 versions accepted (MSH-12.1).
SUPPORTED_VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1"})

#: Message code (MSH-9.1) → trigger events (MSH-9.2) accepted.
SUPPORTED_EVENTS: dict[str, frozenset[str]] = {
    "ADT": frozenset(
        {"A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13", "A40"}
    ),
    "ORU": frozenset({"R01"}),
    "ORM": frozenset({"O01"}),
    "OMG": frozenset({"O19"}),
    "RDE": frozenset({"O11"}),
    "RAS": frozenset({"O17"}),
}


@dataclass(frozen=True, slots=True)
class Envelope:
    """MSH, read before anything else. Text fields are unescaped; empty means None."""

    field_separator: str
    encoding_characters: str
    sending_application: str | None  # MSH-3.1
    sending_facility: str | None  # MSH-4.1
    receiving_application: str | None  # MSH-5.1
    receiving_facility: str | None  # MSH-6.1
    message_time: str | None  # MSH-7, as sent (parsed later, in the tenant's zone)
    message_code: str | None  # MSH-9.1, e.g. ADT
    trigger: str | None  # MSH-9.2, e.g. A01
    structure: str | None  # MSH-9.3, e.g. ADT_A01
    control_id: str | None  # MSH-10
    processing_id: str | None  # MSH-11.1
    version: str | None  # MSH-12.1
    accept_ack: str | None  # MSH-15
    application_ack: str | None  # MSH-16
    charset: str | None  # MSH-18, first repetition

    @property
    def message_type(self) -> str:
        """``ADT^A01`` (what the message log and ACK show)."""
        return "^".join(p for p in (self.message_code, self.trigger) if p)

    @property
    def enhanced(self) -> bool:
        """Enhanced acknowledgement mode: the sender filled MSH-15 or MSH-16."""
        return bool(self.accept_ack or self.application_ack)


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    envelope: Envelope
    #: The message as python-hl7 splits it (segments ended by ``\r`` only).
    message: hl7.Message
    #: The decoded text, segments ended by ``\r``.
    text: str


@dataclass(frozen=True, slots=True)
class Mapped:
    """One message as one FHIR transaction: every entry is a PUT with an id derived
    from the message's own identifiers, so a re-send lands on the same resources."""

    entries: list[dict[str, Any]]
    #: MSH-7 as an aware UTC datetime: orders writes to the same resource (see
    #: docs/HL7V2.md, "Order").
    message_time: datetime
    #: The Encounter id the message is about, if any.
    visit_id: str | None = None
    #: A40: (merged-away patient id, surviving patient id).
    merge: tuple[str, str] | None = None
    #: Elements (dotted paths) a resource keeps from its stored version when the
    #: message does not carry them: a transfer without PV1-44 keeps the arrival.
    inherit: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    #: What the mapping noticed but did not refuse (unmapped segments, ignored fields).
    notes: list[str] = field(default_factory=list)
