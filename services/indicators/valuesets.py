"""Code systems, compiled value sets and tenant code maps.

A definition names code systems by alias (``icd10``, ``atc`` …). Each alias stands for
one or more system URIs and a matching rule (docs/INDICATORS.md, "Code systems and
matching"):

* **prefix** systems (ICD-10, ICD-9-CM-3, ATC) match a code that starts with a listed
  code, ignoring dots and case: ``I21.0`` matches ``I21.000x001``; ``J01`` matches
  ``J01DD04``. A range such as I21.0–I21.3 is written as its members (``I21.0``,
  ``I21.1`` …).
* **exact** systems (SNOMED CT, LOINC, the project's ``qc`` system and the HL7
  terminology systems FHIR itself uses for categories and interpretations) match the
  code as sent, surrounding white space ignored.

A :class:`ValueSet` is compiled once (a frozenset per system URI for exact systems, a
tuple of normalised prefixes for prefix systems) and memoises its answers per
:class:`~shared.clinical.Coding`, because the evaluator asks about the same handful of
codes on every episode.

A :class:`CodeMap` is one tenant's table of local codes: (source system URI, source
code) → standard codings. A value set treats a mapped coding as if it had been sent in
the target system.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from shared.clinical import Coding

QC_SYSTEM = "https://qcpulse.org/fhir/CodeSystem/qc"


class MatchRule(enum.StrEnum):
    EXACT = "exact"
    PREFIX = "prefix"


@dataclass(frozen=True, slots=True)
class CodeSystem:
    alias: str
    #: The first URI is canonical: it is the one a :class:`CodeMap` target alias maps to.
    uris: tuple[str, ...]
    rule: MatchRule


CODE_SYSTEMS: Mapping[str, CodeSystem] = {
    cs.alias: cs
    for cs in (
        CodeSystem(
            "icd10",
            (
                "http://hl7.org/fhir/sid/icd-10",
                "http://hl7.org/fhir/sid/icd-10-cm",
                # 疾病分类与代码国家临床版 (国临版)
                "urn:oid:2.16.156.10011.2.3.3.11",
            ),
            MatchRule.PREFIX,
        ),
        CodeSystem(
            "icd9cm3",
            ("http://hl7.org/fhir/sid/icd-9-cm", "urn:oid:2.16.156.10011.2.3.3.12"),
            MatchRule.PREFIX,
        ),
        CodeSystem("atc", ("http://www.whocc.no/atc",), MatchRule.PREFIX),
        CodeSystem("snomed", ("http://snomed.info/sct",), MatchRule.EXACT),
        CodeSystem("loinc", ("http://loinc.org",), MatchRule.EXACT),
        CodeSystem("qc", (QC_SYSTEM,), MatchRule.EXACT),
        # HL7 terminology used by FHIR R4 elements the catalogue filters on; not in the
        # INDICATORS.md table because they carry no clinical codes of their own.
        CodeSystem(
            "observation-category",
            ("http://terminology.hl7.org/CodeSystem/observation-category",),
            MatchRule.EXACT,
        ),
        CodeSystem(
            "observation-interpretation",
            ("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",),
            MatchRule.EXACT,
        ),
        CodeSystem(
            "risk-probability",
            ("http://terminology.hl7.org/CodeSystem/risk-probability",),
            MatchRule.EXACT,
        ),
        # Encounter.hospitalization.dischargeDisposition (``exp``: expired).
        CodeSystem(
            "discharge-disposition",
            ("http://terminology.hl7.org/CodeSystem/discharge-disposition",),
            MatchRule.EXACT,
        ),
        CodeSystem(
            "medicationrequest-category",
            ("http://terminology.hl7.org/CodeSystem/medicationrequest-category",),
            MatchRule.EXACT,
        ),
        CodeSystem(
            "act-priority",
            ("http://terminology.hl7.org/CodeSystem/v3-ActPriority",),
            MatchRule.EXACT,
        ),
    )
}

_SYSTEM_BY_URI: Mapping[str, CodeSystem] = {
    uri: cs for cs in CODE_SYSTEMS.values() for uri in cs.uris
}


def system_for_uri(uri: str) -> CodeSystem | None:
    """The code system a URI belongs to, or None for a URI no value set can name."""
    return _SYSTEM_BY_URI.get(uri)


@functools.lru_cache(maxsize=65536)
def _normalise_prefix_code(code: str) -> str:
    return code.strip().replace(".", "").upper()


def normalise_code(rule: MatchRule, code: str) -> str:
    """The form a code is compared in: dots and case ignored for prefix systems."""
    if rule is MatchRule.PREFIX:
        return _normalise_prefix_code(code)
    return code.strip()


class ValueSetError(ValueError):
    """A value set that cannot be compiled; ``field`` is the alias (and index) at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


#: Bound on each value set's per-coding memo; local code vocabularies are finite but a
#: misbehaving feed must not grow memory without limit.
_MEMO_LIMIT = 50_000


class ValueSet:
    """A compiled value set: which codings it contains, across all aliases' URIs."""

    __slots__ = ("_exact", "_memo", "_prefix", "name")

    def __init__(
        self,
        name: str,
        exact: Mapping[str, frozenset[str]],
        prefix: Mapping[str, tuple[str, ...]],
    ) -> None:
        self.name = name
        self._exact = dict(exact)
        self._prefix = dict(prefix)
        self._memo: dict[Coding, bool] = {}

    @classmethod
    def compile(cls, name: str, codes_by_alias: Mapping[str, Sequence[str]]) -> ValueSet:
        """Compile ``{alias: [code, …]}``; raise :class:`ValueSetError` on a bad entry."""
        exact: dict[str, frozenset[str]] = {}
        prefix: dict[str, tuple[str, ...]] = {}
        for alias, codes in codes_by_alias.items():
            cs = CODE_SYSTEMS.get(alias)
            if cs is None:
                known = ", ".join(sorted(CODE_SYSTEMS))
                raise ValueSetError(alias, f"unknown code system alias {alias!r} (known: {known})")
            seen: dict[str, str] = {}
            for i, code in enumerate(codes):
                norm = normalise_code(cs.rule, code)
                if not norm:
                    raise ValueSetError(f"{alias}.{i}", "empty code")
                if norm in seen:
                    raise ValueSetError(
                        f"{alias}.{i}", f"duplicate code {code!r} (same as {seen[norm]!r})"
                    )
                seen[norm] = code
            for uri in cs.uris:
                if cs.rule is MatchRule.PREFIX:
                    # Longest first is not needed for correctness; sorted keeps it stable.
                    prefix[uri] = tuple(sorted(set(prefix.get(uri, ())) | set(seen)))
                else:
                    exact[uri] = exact.get(uri, frozenset()) | frozenset(seen)
        return cls(name, exact, prefix)

    @property
    def is_empty(self) -> bool:
        return not any(self._exact.values()) and not any(self._prefix.values())

    def _contains(self, coding: Coding) -> bool:
        codes = self._exact.get(coding.system)
        if codes is not None and coding.code.strip() in codes:
            return True
        prefixes = self._prefix.get(coding.system)
        if not prefixes:
            return False
        return _normalise_prefix_code(coding.code).startswith(prefixes)

    def contains(self, coding: Coding) -> bool:
        """Whether the coding, exactly as sent, is in the value set (no code map)."""
        hit = self._memo.get(coding)
        if hit is None:
            hit = self._contains(coding)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[coding] = hit
        return hit

    def matches(self, coding: Coding, code_map: CodeMap | None = None) -> bool:
        """Whether the coding, or a standard coding the tenant maps it to, is in the set."""
        if self.contains(coding):
            return True
        if code_map is not None:
            return any(self.contains(t) for t in code_map.targets(coding))
        return False

    def matches_any(self, codings: Iterable[Coding], code_map: CodeMap | None = None) -> bool:
        return any(self.matches(c, code_map) for c in codings)

    def __repr__(self) -> str:
        return f"ValueSet({self.name!r})"


class CodeMap:
    """A tenant's local-to-standard code table (a ConceptMap reduced to what matching needs).

    Targets must be in a system a value set can name; an alias (``icd10``) stands for its
    canonical URI.
    """

    __slots__ = ("_targets",)

    def __init__(self, entries: Iterable[tuple[str, str, Coding | tuple[str, str]]] = ()) -> None:
        self._targets: dict[tuple[str, str], tuple[Coding, ...]] = {}
        for source_system, source_code, target in entries:
            self.add(source_system, source_code, target)

    def add(self, source_system: str, source_code: str, target: Coding | tuple[str, str]) -> None:
        """Map one local code to one more standard coding (duplicates are ignored)."""
        system, code = (target.system, target.code) if isinstance(target, Coding) else target
        cs = CODE_SYSTEMS.get(system)
        if cs is not None:
            system = cs.uris[0]
        elif system_for_uri(system) is None:
            raise ValueError(f"code map target system {system!r} is not a known code system")
        if not code.strip():
            raise ValueError("code map target code is empty")
        key = (source_system, source_code.strip())
        mapped = Coding(system, code.strip())
        existing = self._targets.get(key, ())
        if mapped not in existing:
            self._targets[key] = (*existing, mapped)

    def targets(self, coding: Coding) -> tuple[Coding, ...]:
        """The standard codings a sent coding maps to (empty when unmapped)."""
        return self._targets.get((coding.system, coding.code.strip()), ())

    def __len__(self) -> int:
        return len(self._targets)
