"""One v2 message in, one ACK out: source → envelope → parse → map → one FHIR
transaction through ingest's write path → the message log → commit → ACK.

The ACK is built after the commit, so ``AA`` means durable. Every message from a
registered source is logged in the same transaction as its clinical effects; a
message from no registered source belongs to no tenant and is stored nowhere.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import structlog
from sqlalchemy.orm import Session

import services.ingest as ingest
from services.hl7v2 import parse, repository
from services.hl7v2.ack import ack_code, build_ack, http_ack_code
from services.hl7v2.errors import (
    APPLICATION_INTERNAL_ERROR,
    UNKNOWN_KEY,
    AckCode,
    V2Issue,
    V2Rejected,
)
from services.hl7v2.mapping import entry, to_transaction
from services.hl7v2.message import Envelope, Mapped
from services.hl7v2.models import HL7Message, HL7Source
from shared.errors import AppError
from shared.metrics import HL7_MESSAGES
from shared.runtime import Runtime

log = structlog.get_logger(__name__)

Transport = Literal["mllp", "http"]
JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """What to answer a message with."""

    status: AckCode
    #: The ACK (ER7, ``\\r`` segment ends): always built, for HTTP and the log.
    ack: str
    #: Whether MLLP sends it: enhanced mode may ask for no acknowledgement.
    send: bool
    #: Python codec of the message's MSH-18, for the ACK's bytes.
    codec: str
    message_id: int | None = None
    repeated: bool = False

    @property
    def ack_bytes(self) -> bytes:
        return self.ack.encode(self.codec, errors="replace")


def _answer(
    envelope: Envelope | None,
    status: AckCode,
    issues: Sequence[V2Issue],
    now: datetime,
    *,
    message_id: int | None = None,
) -> Answer:
    return Answer(
        status=status,
        ack=build_ack(envelope, http_ack_code(envelope, status), issues, now=now),
        send=ack_code(envelope, status) is not None,
        codec=_codec(envelope),
        message_id=message_id,
    )


def _codec(envelope: Envelope | None) -> str:
    return parse.codec_for(envelope.charset if envelope else None) or "utf-8"


def _allowed(source: HL7Source, peer: str | None) -> bool:
    if not source.networks:
        return True
    if peer is None:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in source.networks)


def find_source(
    session: Session, envelope: Envelope, peer: str | None, tenant_id: str | None
) -> HL7Source | None:
    """The registered source a message comes from: its MSH-4 and MSH-3 where the
    source names one (preferred over a source that accepts any application), from an
    allowed network; over HTTP also registered by the key's tenant."""
    if not envelope.sending_facility:
        return None
    candidates = [
        s
        for s in repository.sources_for_facility(session, envelope.sending_facility)
        if tenant_id is None or s.tenant_id == tenant_id
    ]
    exact = [
        s for s in candidates if s.application and s.application == envelope.sending_application
    ]
    chosen = exact or [s for s in candidates if not s.application]
    if not chosen or not _allowed(chosen[0], peer):
        return None
    return chosen[0]


def _keys(entries: Sequence[JSON]) -> list[tuple[str, str]]:
    return [(e["resource"]["resourceType"], e["resource"]["id"]) for e in entries]


def _merge_entries(session: Session, tenant_id: str, old: str, new: str) -> list[JSON]:
    """A40: the merged-away Patient points to the survivor and each of its Encounters
    names the survivor as subject (docs/HL7V2.md, A40)."""
    link = [{"other": {"reference": f"Patient/{new}"}, "type": "replaced-by"}]
    body = ingest.current_resource(session, tenant_id, "Patient", old) or {
        "resourceType": "Patient",
        "id": old,
    }
    out = [entry({**body, "active": False, "link": link})]
    for encounter_id in ingest.patient_encounter_ids(session, tenant_id, old):
        encounter = ingest.current_resource(session, tenant_id, "Encounter", encounter_id)
        if encounter is not None:
            out.append(entry({**encounter, "subject": {"reference": f"Patient/{new}"}}))
    return out


def _inherit(
    session: Session, tenant_id: str, e: JSON, inherit: dict[tuple[str, str], tuple[str, ...]]
) -> JSON:
    """Fill the elements the message did not carry from the stored version."""
    resource = e["resource"]
    paths = inherit.get((resource["resourceType"], resource["id"]))
    if not paths:
        return e
    stored = ingest.current_resource(session, tenant_id, resource["resourceType"], resource["id"])
    if stored is None:
        return e
    resource = dict(resource)
    for path in paths:
        *parents, leaf = path.split(".")
        source: Any = stored
        for name in [*parents, leaf]:
            source = source.get(name) if isinstance(source, dict) else None
        if source is None:
            continue
        target = resource
        for name in parents:
            target[name] = dict(target.get(name) or {})
            target = target[name]
        target[leaf] = source
    return entry(resource)


@dataclass(frozen=True, slots=True)
class _Applied:
    written: list[str]
    stale: list[str]


def _apply(
    runtime: Runtime, session: Session, tenant_id: str, mapped: Mapped, message_id: int
) -> _Applied:
    """Write the message's resources that no newer message has written, as one
    transaction, and record this message as their last writer."""
    # Everything read to decide what to write (stored arrivals, the merged patient's
    # visits, the message times) is read under the resources' locks, so a concurrent
    # message for the same resources decides after this one committed.
    keys = _keys(mapped.entries)
    if mapped.merge is not None:
        keys.append(("Patient", mapped.merge[0]))
    ingest.lock_resources(session, tenant_id, keys)
    entries = [_inherit(session, tenant_id, e, mapped.inherit) for e in mapped.entries]
    if mapped.merge is not None:
        merged = _merge_entries(session, tenant_id, *mapped.merge)
        # The merged-away patient's visits, known only now (the lock is re-entrant).
        ingest.lock_resources(session, tenant_id, _keys(merged))
        entries += merged
    keys = _keys(entries)
    known = repository.clock_times(session, tenant_id, keys)
    fresh: list[tuple[tuple[str, str], JSON]] = []
    stale: list[str] = []
    for key, e in zip(keys, entries, strict=True):
        if key in known and known[key] > mapped.message_time:
            stale.append(f"{key[0]}/{key[1]}")
        else:
            fresh.append((key, e))
    if not fresh:
        return _Applied([], stale)
    response = ingest.apply_transaction(
        session,
        tenant_id,
        runtime.tenant_zone(session, tenant_id),
        runtime.clock.now(),
        [e for _, e in fresh],
        max_entries=runtime.settings.max_bundle_entries,
    )
    repository.set_clock(
        session, tenant_id, [k for k, _ in fresh], known, mapped.message_time, message_id
    )
    return _Applied([e["response"]["location"] for e in response["entry"]], stale)


def _map(
    runtime: Runtime, session: Session, tenant_id: str, raw: bytes, envelope: Envelope
) -> Mapped:
    parsed = parse.parse_message(raw, envelope)
    return to_transaction(parsed, runtime.tenant_zone(session, tenant_id))


def _describe(issues: Sequence[V2Issue]) -> str:
    return "; ".join(f"{i.location}: {i.text}" for i in issues)


def _process(
    runtime: Runtime, session: Session, row: HL7Message, raw: bytes, envelope: Envelope
) -> tuple[AckCode, list[V2Issue]]:
    """Map and apply one logged message inside the caller's transaction; the row
    records the outcome. Content errors roll back to a savepoint: the log row stays,
    no clinical data does."""
    try:
        with session.begin_nested():
            mapped = _map(runtime, session, row.tenant_id, raw, envelope)
            applied = _apply(runtime, session, row.tenant_id, mapped, row.id)
    except V2Rejected as exc:
        issues = list(exc.issues)
    except AppError as exc:
        # The message parsed but maps to FHIR that ingest refuses (a value that is no
        # valid FHIR code, say): a content error of this message, reported in words.
        text = "; ".join(i.diagnostics for i in exc.issues) or exc.detail
        issues = [V2Issue("AE", APPLICATION_INTERNAL_ERROR, f"not valid as FHIR: {text}")]
    else:
        row.status, row.error = "AA", None
        row.written, row.stale = applied.written, applied.stale
        return "AA", []
    status: AckCode = "AR" if any(i.ack == "AR" for i in issues) else "AE"
    row.status, row.error, row.written, row.stale = status, _describe(issues), [], []
    return status, issues


def receive(
    runtime: Runtime,
    raw: bytes,
    *,
    transport: Transport,
    peer: str | None,
    tenant_id: str | None = None,
) -> Answer:
    """Apply one message and say what to answer. ``tenant_id``: the HTTP key's tenant
    (MLLP finds the tenant from the source alone). Never raises for bad input."""
    now = runtime.clock.now()
    try:
        envelope = parse.read_envelope(raw)
    except V2Rejected as exc:
        HL7_MESSAGES.labels(transport, "AR").inc()
        return _answer(None, "AR", exc.issues, now)
    with runtime.read() as session:
        source = find_source(session, envelope, peer, tenant_id)
        source_id, source_tenant = (source.id, source.tenant_id) if source else (None, None)
    if source_id is None or source_tenant is None:
        # Stored nowhere: an unregistered source belongs to no tenant.
        log.info("hl7 message from an unregistered source", transport=transport, peer=peer)
        HL7_MESSAGES.labels(transport, "AR").inc()
        issue = V2Issue(
            "AR",
            UNKNOWN_KEY,
            "sending facility/application is not a registered source",
            "MSH",
            1,
            4,
        )
        return _answer(envelope, "AR", [issue], now)

    def work(session: Session) -> Answer:
        control_id = envelope.control_id
        if control_id:
            earlier = repository.accepted_message(session, source_tenant, source_id, control_id)
            if earlier is not None and earlier.ack is not None:
                return Answer(
                    status="AA",
                    ack=earlier.ack,
                    send=ack_code(envelope, "AA") is not None,
                    codec=_codec(envelope),
                    message_id=earlier.id,
                    repeated=True,
                )
        row = HL7Message(
            tenant_id=source_tenant,
            source_id=source_id,
            control_id=control_id,
            message_type=envelope.message_type[:32],
            version=(envelope.version or "")[:16] or None,
            transport=transport,
            peer=peer,
            received_at=now,
            status="AR",
            raw=raw,
            written=[],
            stale=[],
        )
        session.add(row)
        session.flush()
        try:
            parse.check_supported(envelope, runtime.settings.accepted_processing_ids)
        except V2Rejected as exc:
            status: AckCode = exc.ack
            issues = list(exc.issues)
            row.status, row.error = status, _describe(issues)
        else:
            status, issues = _process(runtime, session, row, raw, envelope)
        answer = _answer(envelope, status, issues, now, message_id=row.id)
        row.ack = answer.ack
        if status == "AA":
            row.accepted_control_id = control_id
        session.flush()
        return answer

    try:
        answer = runtime.write_tx(work)
    except Exception:
        # Nothing was stored (the transaction rolled back): AR tells the sender the
        # reason is ours, not the message's, and it should send it again.
        log.exception("hl7 message could not be processed", transport=transport)
        HL7_MESSAGES.labels(transport, "AR").inc()
        issue = V2Issue("AR", APPLICATION_INTERNAL_ERROR, "internal error; send the message again")
        return _answer(envelope, "AR", [issue], now)
    HL7_MESSAGES.labels(transport, answer.status).inc()
    log.info(
        "hl7 message",
        transport=transport,
        tenant=source_tenant,
        type=envelope.message_type,
        control_id=envelope.control_id,
        status=answer.status,
        repeated=answer.repeated,
    )
    return answer


@dataclass(frozen=True, slots=True)
class Replayed:
    id: int
    before: str
    after: str


def replay(
    runtime: Runtime,
    *,
    tenant_id: str | None = None,
    status: str | None = None,
    ids: Sequence[int] | None = None,
    batch: int = 100,
) -> Iterator[Replayed]:
    """Apply stored messages again through the current mapping, in the order they were
    received, one transaction each, recording each new outcome on its row."""
    after = 0
    while True:
        with runtime.read() as session:
            todo = [
                m.id
                for m in repository.messages_to_replay(
                    session, tenant_id, status, ids, after, batch
                )
            ]
        if not todo:
            return
        for message_id in todo:
            yield runtime.write_tx(_replay_one(runtime, message_id))
            after = message_id


def _replay_one(runtime: Runtime, message_id: int) -> Callable[[Session], Replayed]:
    def work(session: Session) -> Replayed:
        row = session.get(HL7Message, message_id)
        assert row is not None
        before = row.status
        try:
            envelope = parse.read_envelope(row.raw)
            parse.check_supported(envelope, runtime.settings.accepted_processing_ids)
        except V2Rejected as exc:
            row.status, row.error = exc.ack, _describe(exc.issues)
        else:
            outcome, _ = _process(runtime, session, row, row.raw, envelope)
            control_id = envelope.control_id
            if outcome == "AA" and row.accepted_control_id is None and control_id:
                # Accepted now: it answers repeats from here on, unless a corrected
                # message under the same control id was accepted meanwhile.
                earlier = repository.accepted_message(
                    session, row.tenant_id, row.source_id, control_id
                )
                if earlier is None:
                    row.accepted_control_id = control_id
        row.replayed_at = runtime.clock.now()
        session.flush()
        return Replayed(message_id, before, row.status)

    return work
