"""Acknowledgement messages (ACK) in ER7.

Original mode answers ``AA``/``AE``/``AR``; enhanced mode (MSH-15 or MSH-16 filled)
answers at most one acknowledgement, chosen by :func:`ack_code` (docs/HL7V2.md,
"Acknowledgements"). Each issue becomes one ERR segment, written in the 2.3/2.4 form
(ERR-1) and the 2.5 form (ERR-2 … ERR-8) at once, so receivers of every version read it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from services.hl7v2.errors import ERROR_NAMES, AckCode, V2Issue
from services.hl7v2.message import Envelope

_DEFAULT_FIELD = "|"
_DEFAULT_ENCODING = "^~\\&"
#: What qcpulse names itself in MSH-3 of its ACKs.
APPLICATION = "QCPULSE"


def _condition_holds(condition: str | None, success: bool) -> bool:
    match condition:
        case "AL":
            return True
        case "ER":
            return not success
        case "SU":
            return success
        case _:  # NE, or empty in enhanced mode: never
            return False


def ack_code(envelope: Envelope | None, outcome: AckCode) -> str | None:
    """The MSA-1 to send for an application outcome, or None when the sender asked
    for no acknowledgement of this outcome (enhanced mode only)."""
    if envelope is None or not envelope.enhanced:
        return outcome
    success = outcome == "AA"
    if _condition_holds(envelope.accept_ack, success):
        return "C" + outcome[1]
    if _condition_holds(envelope.application_ack, success):
        return outcome
    return None


def http_ack_code(envelope: Envelope | None, outcome: AckCode) -> str:
    """Over HTTP there is always an answer: the chosen code, else the commit form."""
    code = ack_code(envelope, outcome)
    if code is not None:
        return code
    return "C" + outcome[1]


class _Escaper:
    def __init__(self, field_sep: str, encoding: str) -> None:
        chars = (encoding + "^~\\&")[:4]
        component, repetition, escape, subcomponent = chars[0], chars[1], chars[2], chars[3]
        self._pairs = [
            (escape, f"{escape}E{escape}"),
            (field_sep, f"{escape}F{escape}"),
            (component, f"{escape}S{escape}"),
            (repetition, f"{escape}R{escape}"),
            (subcomponent, f"{escape}T{escape}"),
        ]
        self.component = component
        self.subcomponent = subcomponent

    def __call__(self, text: str | None) -> str:
        out = (text or "").replace("\r", " ").replace("\n", " ")
        for char, replacement in self._pairs:  # the escape character first
            out = out.replace(char, replacement)
        return out


def _ts(now: datetime) -> str:
    return now.strftime("%Y%m%d%H%M%S") + now.strftime("%z")


def _err_segment(issue: V2Issue, fs: str, esc: _Escaper) -> str:
    c, s = esc.component, esc.subcomponent
    name = ERROR_NAMES.get(issue.code, "Error")
    where = [
        esc(issue.segment),
        str(issue.sequence or 1) if issue.segment else "",
        str(issue.field) if issue.field is not None else "",
    ]
    location_25 = c.join([*where, "1" if issue.field is not None else ""]) + (
        c + str(issue.component) if issue.component is not None else ""
    )
    err1 = c.join([*where, f"{issue.code}{s}{esc(name)}{s}HL70357"]) if issue.segment else ""
    err3 = c.join([str(issue.code), esc(name), "HL70357"])
    location = location_25 if issue.segment else ""
    # ERR-1 (2.3/2.4) | ERR-2 location | ERR-3 code | ERR-4 severity | 5-7 | ERR-8 text
    return fs.join(["ERR", err1, location, err3, "E", "", "", "", esc(issue.text)])


def build_ack(
    envelope: Envelope | None,
    code: str,
    issues: Sequence[V2Issue] = (),
    *,
    now: datetime,
    text: str | None = None,
) -> str:
    """An ACK answering ``envelope`` (None when even MSH was unreadable), segments
    ended by ``\\r``, in the message's own delimiters and character set."""
    fs = envelope.field_separator if envelope else _DEFAULT_FIELD
    enc = envelope.encoding_characters if envelope else _DEFAULT_ENCODING
    esc = _Escaper(fs, enc)
    c = esc.component
    trigger = envelope.trigger if envelope and envelope.trigger else ""
    msh = fs.join(
        [
            "MSH",
            enc,
            APPLICATION,
            esc(envelope.receiving_facility) if envelope else "",
            esc(envelope.sending_application) if envelope else "",
            esc(envelope.sending_facility) if envelope else "",
            _ts(now),
            "",
            c.join(["ACK", esc(trigger), "ACK"]) if trigger else "ACK",
            "Q" + secrets.token_hex(9),
            esc(envelope.processing_id) if envelope and envelope.processing_id else "P",
            esc(envelope.version) if envelope and envelope.version else "2.5.1",
            "",
            "",
            "",
            "",
            "",
            esc(envelope.charset) if envelope and envelope.charset else "",
        ]
    ).rstrip(fs)
    if text is None and issues:
        text = issues[0].text
    msa = fs.join(["MSA", code, esc(envelope.control_id) if envelope else "", esc(text)]).rstrip(fs)
    segments = [msh, msa, *(_err_segment(i, fs, esc) for i in issues)]
    return "\r".join(segments) + "\r"
