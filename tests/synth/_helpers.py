"""Shared fixtures-as-functions for the synth tests: cached samples and a tiny replay.

The replay applies PUT/DELETE in order to get each resource's final version, the
way a FHIR server would, so the tests can reason about what the stream *means*
(door-to-PCI times, notification delays) and not only about what it contains.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from qcpulse.synth import HospitalConfig, Send, generate
from qcpulse.synth.codes import ICD9CM3_CN, ICD10_CN, ICD10_WHO

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, 08:00 in Shanghai
ICD9_WHO = "http://hl7.org/fhir/sid/icd-9-cm"

Resource = dict[str, Any]


@cache
def sample(size: str = "medium", days: float = 4.0, seed: int = 7) -> tuple[Send, ...]:
    config = HospitalConfig.from_size(size)  # type: ignore[arg-type]
    return tuple(generate(config, start=START, days=days, seed=seed))


def final_state(sends: Iterable[Send]) -> dict[str, Resource]:
    """``Type/id`` → the last version PUT, without those later DELETEd."""
    state: dict[str, Resource] = {}
    for send in sends:
        for entry in send.bundle["entry"]:
            url = entry["request"]["url"]
            if entry["request"]["method"] == "DELETE":
                state.pop(url, None)
            else:
                state[url] = entry["resource"]
    return state


def live(resource: Resource) -> bool:
    if resource.get("status") in ("entered-in-error", "not-done"):
        return False
    verification = resource.get("verificationStatus", {}).get("coding", [{}])[0]
    return verification.get("code") != "entered-in-error"


def episode_of(resource: Resource) -> str | None:
    ref = resource.get("encounter") or resource.get("context")
    if ref is None:
        return None
    return str(ref["reference"]).removeprefix("Encounter/")


def by_episode(state: dict[str, Resource]) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = defaultdict(list)
    for resource in state.values():
        if not live(resource):
            continue
        if resource["resourceType"] == "Encounter":
            out[resource["id"]].append(resource)
            continue
        ep = episode_of(resource)
        if ep is not None:
            out[ep].append(resource)
    return out


def codings(concept: Resource | None) -> list[tuple[str, str]]:
    if not concept:
        return []
    return [(c.get("system", ""), c.get("code", "")) for c in concept.get("coding", [])]


def code_of(resource: Resource) -> list[tuple[str, str]]:
    if "medicationCodeableConcept" in resource:
        return codings(resource["medicationCodeableConcept"])
    return codings(resource.get("code"))


def icd10(resource: Resource, *prefixes: str) -> bool:
    return any(
        system in (ICD10_CN, ICD10_WHO) and code.replace(".", "").startswith(prefixes)
        for system, code in code_of(resource)
    )


def icd9(resource: Resource, *prefixes: str) -> bool:
    return any(
        system in (ICD9CM3_CN, ICD9_WHO) and code.startswith(prefixes)
        for system, code in code_of(resource)
    )


def has(resource: Resource, system: str, code: str) -> bool:
    return (system, code) in code_of(resource)


def t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def start_of(resource: Resource) -> datetime | None:
    for key in ("performedDateTime", "effectiveDateTime", "occurrenceDateTime", "sent", "date"):
        if key in resource:
            return t(resource[key])
    for key in ("performedPeriod", "effectivePeriod"):
        if key in resource:
            return t(resource[key]["start"])
    return None


def minutes_between(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 60
