"""Raw v2 bytes → :class:`Envelope` and :class:`ParsedMessage`; v2 times → FHIR times.

Three stages, each refusing what the next cannot use (docs/HL7V2.md):
:func:`read_envelope` reads only the MSH (enough to find the source and answer an
ACK), :func:`check_supported` refuses types, events, versions and processing ids
qcpulse does not take (``AR``), :func:`parse_message` decodes the whole message per
MSH-18 and splits it with python-hl7 (content errors are ``AE``).

python-hl7 has no type hints and its tree mixes strings and containers depending on
which separators a field happens to contain; :func:`segments` turns it into plain
typed :class:`Segment` values once, so the mapping never touches python-hl7.
"""

from __future__ import annotations

import codecs
import re
import string
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import hl7

from services.hl7v2.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE,
    TABLE_VALUE_NOT_FOUND,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION,
    V2Issue,
    V2Rejected,
)
from services.hl7v2.message import SUPPORTED_EVENTS, SUPPORTED_VERSIONS, Envelope, ParsedMessage

# -- character sets --------------------------------------------------------------------

#: MSH-18 (upper-cased, spaces kept) → Python codec. GB 18030 is a superset of GBK and
#: GB 2312, so every GB value decodes with it.
CHARSETS: dict[str, str] = {
    "": "utf-8",
    "ASCII": "ascii",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "GB 18030-2000": "gb18030",
    "GB18030": "gb18030",
    "GBK": "gb18030",
    "GB2312": "gb18030",
    "8859/1": "latin-1",
}


def codec_for(charset: str | None) -> str | None:
    """The Python codec for an MSH-18 value, or None when qcpulse does not accept it."""
    return CHARSETS.get((charset or "").strip().upper())


# -- segments ----------------------------------------------------------------------------

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")

#: Segment ids defined by v2.3 … v2.5.1. Any other id that is not a Z-segment is a
#: content error: an unknown segment usually means a sender's misconfiguration, and
#: silently skipping it could drop clinical data.
STANDARD_SEGMENTS = frozenset(
    [
        "ABS",
        "ACC",
        "ADD",
        "AFF",
        "AIG",
        "AIL",
        "AIP",
        "AIS",
        "AL1",
        "APR",
        "ARQ",
        "AUT",
        "BHS",
        "BLC",
        "BLG",
        "BPO",
        "BPX",
        "BTS",
        "BTX",
        "CDM",
        "CER",
        "CM0",
        "CM1",
        "CM2",
        "CNS",
        "CON",
        "CSP",
        "CSR",
        "CSS",
        "CTD",
        "CTI",
        "DB1",
        "DG1",
        "DRG",
        "DSC",
        "DSP",
        "ECD",
        "ECR",
        "EDU",
        "EQL",
        "EQP",
        "EQU",
        "ERQ",
        "ERR",
        "EVN",
        "FAC",
        "FHS",
        "FT1",
        "FTS",
        "GOL",
        "GP1",
        "GP2",
        "GT1",
        "IAM",
        "IIM",
        "IN1",
        "IN2",
        "IN3",
        "INV",
        "IPC",
        "ISD",
        "LAN",
        "LCC",
        "LCH",
        "LDP",
        "LOC",
        "LRL",
        "MFA",
        "MFE",
        "MFI",
        "MRG",
        "MSA",
        "MSH",
        "NCK",
        "NDS",
        "NK1",
        "NPU",
        "NSC",
        "NST",
        "NTE",
        "OBR",
        "OBX",
        "ODS",
        "ODT",
        "OM1",
        "OM2",
        "OM3",
        "OM4",
        "OM5",
        "OM6",
        "OM7",
        "ORC",
        "ORG",
        "OVR",
        "PCR",
        "PD1",
        "PDA",
        "PDC",
        "PEO",
        "PES",
        "PID",
        "PR1",
        "PRA",
        "PRB",
        "PRC",
        "PRD",
        "PSH",
        "PTH",
        "PV1",
        "PV2",
        "QAK",
        "QID",
        "QPD",
        "QRD",
        "QRF",
        "QRI",
        "RCP",
        "RDF",
        "RDT",
        "RF1",
        "RGS",
        "RMI",
        "ROL",
        "RQ1",
        "RQD",
        "RXA",
        "RXC",
        "RXD",
        "RXE",
        "RXG",
        "RXO",
        "RXR",
        "SAC",
        "SCH",
        "SFT",
        "SID",
        "SPM",
        "SPR",
        "STF",
        "TCC",
        "TCD",
        "TQ1",
        "TQ2",
        "TXA",
        "UB1",
        "UB2",
        "URD",
        "URS",
        "VAR",
        "VTQ",
    ]
)

#: A repetition: components, each a tuple of subcomponents (all unescaped).
Repetition = tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment as plain values. ``fields[n]`` is field *n* (``fields[0]`` is the id),
    each a tuple of repetitions. Absent parts read as ``""``; nothing here raises
    IndexError."""

    id: str
    #: 1-based position among the message's segments with this id.
    sequence: int
    fields: tuple[tuple[Repetition, ...], ...]
    #: The message's component and subcomponent separators (MSH-2.1, MSH-2.4).
    separators: str = "^&"

    def reps(self, field: int) -> tuple[Repetition, ...]:
        """The repetitions of a field that carry anything."""
        if field >= len(self.fields):
            return ()
        return tuple(r for r in self.fields[field] if any(any(c) for c in r))

    def get(self, field: int, component: int = 1, subcomponent: int = 1, rep: int = 1) -> str:
        reps = self.fields[field] if field < len(self.fields) else ()
        return part(reps[rep - 1], component, subcomponent) if rep <= len(reps) else ""

    def text(self, field: int, rep: int = 1) -> str:
        """A whole repetition with its separators put back: free text (ST, TX, FT) that
        python-hl7 split only because it contained an unescaped separator."""
        reps = self.fields[field] if field < len(self.fields) else ()
        if rep > len(reps):
            return ""
        comp, sub = self.separators[0], self.separators[1]
        parts = list(reps[rep - 1])
        # Drop trailing empty components by structure: a text that ends in an escaped
        # separator ("0\\S\\", read as "0^") keeps it.
        while parts and not any(parts[-1]):
            parts.pop()
        return comp.join(sub.join(c) for c in parts)


def part(rep: Repetition, component: int = 1, subcomponent: int = 1) -> str:
    """Component (and subcomponent) of one repetition, ``""`` when absent."""
    if component > len(rep):
        return ""
    comp = rep[component - 1]
    return comp[subcomponent - 1] if subcomponent <= len(comp) else ""


def _leaves(node: Any) -> list[Any]:
    """python-hl7 stores a part without inner separators as a bare string and one with
    them as a container: make both a list."""
    return [node] if isinstance(node, str) else list(node)


def _segment(message: Any, raw: Any, sequence: int) -> Segment:
    seg_id = str(raw[0][0])
    fields: list[tuple[Repetition, ...]] = [(((seg_id,),),)]
    for index, field in enumerate(raw[1:], start=1):
        if seg_id == "MSH" and index in (1, 2):
            # MSH-1 and MSH-2 are the delimiters themselves, never escaped.
            fields.append((((str(field[0]),),),))
            continue
        reps: list[Repetition] = []
        for rep in _leaves(field):
            comps: list[tuple[str, ...]] = []
            for comp in _leaves(rep):
                comps.append(tuple(str(message.unescape(str(s))) for s in _leaves(comp)))
            reps.append(tuple(comps))
        fields.append(tuple(reps))
    # python-hl7's separators: segment, field, repetition, component, subcomponent.
    return Segment(seg_id, sequence, tuple(fields), message.separators[3:5])


def segments(parsed: ParsedMessage) -> list[Segment]:
    """Every segment of the message in order, as plain values."""
    counts: dict[str, int] = {}
    out: list[Segment] = []
    for raw in parsed.message:
        seg_id = str(raw[0][0])
        counts[seg_id] = counts.get(seg_id, 0) + 1
        out.append(_segment(parsed.message, raw, counts[seg_id]))
    return out


# -- envelope ----------------------------------------------------------------------------


def _msh_reject(text: str) -> V2Rejected:
    return V2Rejected([V2Issue("AR", SEGMENT_SEQUENCE, text, "MSH")])


def _first_segment(data: bytes) -> bytes:
    ends = [i for i in (data.find(b"\r"), data.find(b"\n")) if i >= 0]
    return data[: min(ends)] if ends else data


#: Delimiters must be ASCII punctuation: the MSH is split before the character set is
#: known, and a non-ASCII byte could be part of a multi-byte character.
_DELIMITER_CHARS = frozenset(string.punctuation)


def _check_delimiters(line: str) -> tuple[str, str]:
    sep = line[3:4]
    if sep not in _DELIMITER_CHARS:
        raise _msh_reject(f"MSH-1 (field separator) must be one punctuation character, not {sep!r}")
    end = line.find(sep, 4)
    enc = line[4:] if end < 0 else line[4:end]
    if len(enc) not in (4, 5):
        raise _msh_reject(f"MSH-2 (encoding characters) must be 4 or 5 characters, not {enc!r}")
    if any(c not in _DELIMITER_CHARS for c in enc) or sep in enc or len(set(enc)) != len(enc):
        raise _msh_reject(
            f"MSH-2 (encoding characters) {enc!r} must be distinct punctuation characters, "
            f"none of them the field separator {sep!r}"
        )
    return sep, enc


def _envelope_from_text(line: str) -> Envelope:
    msh = _segment_of(line)

    def first(field: int, component: int = 1) -> str | None:
        return msh.get(field, component) or None

    return Envelope(
        field_separator=msh.get(1),
        encoding_characters=msh.get(2),
        sending_application=first(3),
        sending_facility=first(4),
        receiving_application=first(5),
        receiving_facility=first(6),
        message_time=first(7),
        message_code=first(9, 1),
        trigger=first(9, 2),
        structure=first(9, 3),
        control_id=first(10),
        processing_id=first(11),
        version=first(12),
        accept_ack=first(15),
        application_ack=first(16),
        charset=first(18),
    )


def _segment_of(line: str) -> Segment:
    message = _hl7_parse(line)
    return _segment(message, message[0], 1)


def _hl7_parse(text: str) -> Any:
    """The one call into python-hl7's parser; its result is untyped."""
    return hl7.parse(text)


def read_envelope(raw: bytes) -> Envelope:
    """The MSH of a message, or ``AR`` when there is no readable MSH."""
    data = raw.lstrip()
    if not data.startswith(b"MSH"):
        raise _msh_reject("the message does not start with an MSH segment")
    line_bytes = _first_segment(data)
    # latin-1 maps every byte to one character, so the split cannot fail; the fields
    # qcpulse routes by (MSH-3, MSH-4, MSH-9 …) are ASCII in practice.
    line = line_bytes.decode("latin-1")
    _check_delimiters(line)
    envelope = _envelope_from_text(line)
    codec = codec_for(envelope.charset)
    if codec is not None and codec != "latin-1":
        # Read the text fields in the declared character set where the MSH allows it
        # (a facility named in Chinese); GB 18030 trail bytes can even equal a
        # delimiter, so splitting the decoded text is the right split.
        try:
            decoded = line_bytes.decode(codec)
        except UnicodeDecodeError:
            return envelope
        if decoded != line:
            _check_delimiters(decoded)
            return _envelope_from_text(decoded)
    return envelope


def check_supported(env: Envelope, processing_ids: frozenset[str]) -> None:
    """``AR`` for what qcpulse does not take: every problem of the MSH at once."""
    issues: list[V2Issue] = []

    def reject(code: int, text: str, field: int, component: int | None = None) -> None:
        issues.append(V2Issue("AR", code, text, "MSH", 1, field, component))

    events = SUPPORTED_EVENTS.get(env.message_code or "")
    if events is None:
        reject(
            UNSUPPORTED_MESSAGE_TYPE,
            f"message type {env.message_code!r} is not supported"
            if env.message_code
            else "MSH-9 (message type) is missing",
            9,
            1,
        )
    elif env.trigger not in events:
        reject(
            UNSUPPORTED_EVENT_CODE,
            f"event {env.trigger!r} is not supported for {env.message_code}",
            9,
            2,
        )
    if env.version not in SUPPORTED_VERSIONS:
        reject(
            UNSUPPORTED_VERSION,
            f"version {env.version!r} is not supported "
            f"(only {', '.join(sorted(SUPPORTED_VERSIONS))})",
            12,
        )
    if env.processing_id not in processing_ids:
        reject(
            UNSUPPORTED_PROCESSING_ID,
            f"processing id {env.processing_id!r} is not accepted "
            f"(only {', '.join(sorted(processing_ids))})",
            11,
        )
    if not env.control_id:
        reject(REQUIRED_FIELD_MISSING, "MSH-10 (message control id) is missing", 10)
    if not env.message_time:
        reject(REQUIRED_FIELD_MISSING, "MSH-7 (date/time of message) is missing", 7)
    if issues:
        raise V2Rejected(issues)


# -- whole message -----------------------------------------------------------------------


def _decode(raw: bytes, env: Envelope) -> str:
    codec = codec_for(env.charset)
    if codec is None:
        raise V2Rejected(
            [
                V2Issue(
                    "AE",
                    TABLE_VALUE_NOT_FOUND,
                    f"character set {env.charset!r} is not supported",
                    "MSH",
                    1,
                    18,
                )
            ]
        )
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        name = codecs.lookup(codec).name
        raise V2Rejected(
            [
                V2Issue(
                    "AE",
                    DATA_TYPE_ERROR,
                    f"byte 0x{raw[exc.start]:02X} at offset {exc.start} is not valid {name}",
                    "MSH",
                    1,
                    18,
                )
            ]
        ) from None


def parse_message(raw: bytes, env: Envelope) -> ParsedMessage:
    """Decode per MSH-18 and split; ``AE`` for undecodable bytes and unknown segments."""
    text = _decode(raw, env).replace("\r\n", "\r").replace("\n", "\r").lstrip()
    # A blank line carries nothing; senders add them at the end (and between segments
    # when they write \r\n twice).
    lines = [line for line in text.split("\r") if line.strip()]
    issues: list[V2Issue] = []
    counts: dict[str, int] = {}
    sep = env.field_separator
    for index, line in enumerate(lines):
        seg_id = line[:3]
        if not _SEGMENT_ID.fullmatch(seg_id) or (len(line) > 3 and line[3] != sep):
            issues.append(
                V2Issue(
                    "AE",
                    SEGMENT_SEQUENCE,
                    f"segment {index + 1} does not start with a segment id: {line[:10]!r}",
                )
            )
            continue
        counts[seg_id] = counts.get(seg_id, 0) + 1
        if seg_id == "MSH" and index > 0:
            issues.append(
                V2Issue(
                    "AE",
                    SEGMENT_SEQUENCE,
                    "a second MSH: one message at a time",
                    "MSH",
                    counts[seg_id],
                )
            )
        elif seg_id not in STANDARD_SEGMENTS and not seg_id.startswith("Z"):
            issues.append(
                V2Issue(
                    "AE",
                    SEGMENT_SEQUENCE,
                    f"segment {seg_id} is not a v2.3–2.5.1 segment",
                    seg_id,
                    counts[seg_id],
                )
            )
    if issues:
        raise V2Rejected(issues)
    joined = "\r".join(lines)
    return ParsedMessage(envelope=env, message=_hl7_parse(joined), text=joined + "\r")


# -- times -------------------------------------------------------------------------------

_DTM = re.compile(
    r"(?P<y>\d{4})(?:(?P<mo>\d{2})(?:(?P<d>\d{2})(?:(?P<h>\d{2})(?:(?P<mi>\d{2})"
    r"(?:(?P<s>\d{2})(?:\.(?P<f>\d{1,4}))?)?)?)?)?)?(?P<tz>[+-]\d{4})?"
)


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A v2 DTM/TS value read: a date (with its precision) or an aware datetime."""

    day: date
    #: 1 year, 2 month, 3 day; None when a time is given.
    date_precision: int | None
    moment: datetime | None
    fraction_digits: int

    def fhir(self) -> str:
        """FHIR date or dateTime."""
        if self.moment is None:
            return self.day.isoformat()[: {1: 4, 2: 7, 3: 10}[self.date_precision or 3]]
        spec = (
            "seconds"
            if not self.fraction_digits
            else ("milliseconds" if self.fraction_digits <= 3 else "microseconds")
        )
        return self.moment.isoformat(timespec=spec)


def read_ts(value: str, tz: ZoneInfo) -> Timestamp | None:
    """``YYYY[MM[DD[HH[MM[SS[.S…]]]]]][±ZZZZ]``; None when empty, ValueError when not a
    time. Without an offset the time is in ``tz``."""
    value = value.strip()
    if not value:
        return None
    m = _DTM.fullmatch(value)
    if m is None:
        raise ValueError(f"{value!r} is not a v2 date/time (YYYYMMDDHHMMSS[.S][+ZZZZ])")
    g = m.groupdict()
    day = date(int(g["y"]), int(g["mo"] or 1), int(g["d"] or 1))
    if g["h"] is None:
        precision = 3 if g["d"] else 2 if g["mo"] else 1
        return Timestamp(day, precision, None, 0)
    fraction = g["f"] or ""
    offset: timezone | ZoneInfo = tz
    if g["tz"]:
        hours, minutes = int(g["tz"][1:3]), int(g["tz"][3:5])
        if hours > 14 or minutes > 59:
            raise ValueError(f"{value!r} has an impossible offset {g['tz']}")
        delta = timedelta(hours=hours, minutes=minutes)
        offset = timezone(-delta if g["tz"][0] == "-" else delta)
    moment = datetime(
        day.year,
        day.month,
        day.day,
        int(g["h"]),
        int(g["mi"] or 0),
        int(g["s"] or 0),
        int(fraction.ljust(6, "0")) if fraction else 0,
        tzinfo=offset,
    )
    return Timestamp(day, None, moment, len(fraction))


def parse_ts(value: str, tz: ZoneInfo) -> str | None:
    """A v2 time as a FHIR date (``2026``, ``2026-03``, ``2026-03-02``) or dateTime
    (``2026-03-02T10:05:00+08:00``)."""
    ts = read_ts(value, tz)
    return ts.fhir() if ts is not None else None


def parse_ts_datetime(value: str, tz: ZoneInfo) -> datetime | None:
    """A v2 time as an aware UTC datetime; a date alone means its midnight in ``tz``."""
    ts = read_ts(value, tz)
    if ts is None:
        return None
    if ts.moment is None:
        return datetime(ts.day.year, ts.day.month, ts.day.day, tzinfo=tz).astimezone(UTC)
    return ts.moment.astimezone(UTC)


def parse_instant(value: str, tz: ZoneInfo) -> str | None:
    """A v2 time as a FHIR instant (seconds and offset), None when it has no time of
    day: an instant cannot be a date."""
    ts = read_ts(value, tz)
    return ts.fhir() if ts is not None and ts.moment is not None else None
