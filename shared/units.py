"""UCUM units of ``Observation.valueQuantity``, converted for value thresholds.

A small explicit table, not a UCUM parser: each known unit belongs to one dimension
and has an exact factor to that dimension's base unit (g/L, mol/L, /L, s …). Two units
of one dimension convert by the ratio of their factors; a mass concentration and a
substance concentration (and a mass and an amount of substance) convert through the
molar mass of a named ``quantity`` (:data:`QUANTITIES`).

Feeds do not always send UCUM: codes are trimmed, inner spaces dropped, ``µ``/``μ``
read as ``u``, ``mcg`` as ``ug``, ``10^9`` as ``10*9``, and a code that matches a
known unit but for case (``g/l``, ``G/L``, ``MMOL/L``) is read as that unit. An exact
string always converts to itself, known or not.

Deliberately not convertible:

- ``mmol/mol`` (HbA1c, IFCC) and ``%`` (HbA1c, NGSP) are related by a regression,
  not by a factor; ``mmol/mol`` is kept apart from the dimensionless ``1``/``%``.
- ``[IU]`` is defined per substance; ``U`` (enzyme unit) is not an ``[IU]``.
- ``meq`` depends on the ion's valence: ``meq/L`` is not ``mmol/L``.
- ``Cel`` converts to nothing but itself (°F would need an offset).
- Annotations (``{score}``) are each a unit of their own.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

__all__ = ["QUANTITIES", "canonical_unit", "convert", "is_known_unit"]

F = Fraction

#: Quantities a threshold may name: molar mass (g/mol), and the unit their values are
#: read in when checking that a unit fits them. Haemoglobin is counted per monomer
#: (the design's 1 mmol/L = 16.11 g/L).
_QUANTITY: dict[str, tuple[Fraction, str]] = {
    "haemoglobin": (F("16110"), "g/L"),
    "hemoglobin": (F("16110"), "g/L"),
    "glucose": (F("180.16"), "mmol/L"),
    "creatinine": (F("113.12"), "umol/L"),
    # Inorganic phosphorus: results in mg/dL (LOINC 2777-1) convert to mmol/L.
    "phosphate": (F("30.97"), "mmol/L"),
}
#: Quantity name → molar mass in g/mol.
QUANTITIES: dict[str, float] = {name: float(mass) for name, (mass, _) in _QUANTITY.items()}

_MASS = {"kg": F(1000), "g": F(1), "mg": F(1, 10**3), "ug": F(1, 10**6), "ng": F(1, 10**9)}
_MASS_SMALL = {"pg": F(1, 10**12)}
_SUBSTANCE = {
    "mol": F(1),
    "mmol": F(1, 10**3),
    "umol": F(1, 10**6),
    "nmol": F(1, 10**9),
    "pmol": F(1, 10**12),
}
_VOLUME = {"L": F(1), "dL": F(1, 10), "mL": F(1, 10**3), "uL": F(1, 10**6)}
_COUNT = {"": F(1), "10*3": F(10**3), "10*6": F(10**6), "10*9": F(10**9), "10*12": F(10**12)}


def _per_volume(numerators: dict[str, Fraction]) -> dict[str, Fraction]:
    return {f"{n}/{v}": fn / fv for n, fn in numerators.items() for v, fv in _VOLUME.items()}


#: dimension → {UCUM code: factor to the dimension's base unit}
_DIMENSIONS: dict[str, dict[str, Fraction]] = {
    "mass/volume": {
        **_per_volume(_MASS),
        **_per_volume(_MASS_SMALL),
        "ug/dL": F(1, 10**5),
        "g/dL": F(10),
    },
    "substance/volume": _per_volume(_SUBSTANCE),
    "count/volume": {
        **_per_volume(_COUNT),
        "/mm3": F(10**6),
        "10*3/mm3": F(10**9),
        "{cells}/uL": F(10**6),
    },
    "mass": {**_MASS, **_MASS_SMALL},
    "substance": dict(_SUBSTANCE),
    "volume": {**_VOLUME, "fL": F(1, 10**15), "mm3": F(1, 10**6)},
    "length": {"m": F(1), "cm": F(1, 100), "mm": F(1, 1000)},
    "time": {
        "ms": F(1, 1000),
        "s": F(1),
        "min": F(60),
        "h": F(3600),
        "d": F(86400),
        "wk": F(604800),
        "mo": F(2629800),  # UCUM: mean Julian month, 30.4375 d
        "a": F(31557600),  # UCUM: mean Julian year, 365.25 d
    },
    "dimensionless": {"1": F(1), "{#}": F(1), "%": F(1, 100), "L/L": F(1)},
    "frequency": {"/s": F(1), "/min": F(1, 60), "{beats}/min": F(1, 60), "/h": F(1, 3600)},
    "pressure": {
        "Pa": F(1),
        "kPa": F(1000),
        "mm[Hg]": F("133.322"),
        "cm[H2O]": F("98.0665"),
    },
    "catalytic/volume": {"U/L": F(1), "mU/mL": F(1), "kU/L": F(1000), "U/mL": F(1000)},
    "iu/volume": {"[IU]/L": F(1), "m[IU]/L": F(1, 1000), "[IU]/mL": F(1000)},
    "mass/area": {"kg/m2": F(1)},
    "flow": {"mL/min": F(1), "L/min": F(1000)},
    "egfr": {"mL/min/{1.73_m2}": F(1)},
    "rate/time": {"mm/h": F(1)},
    "substance/substance": {"mmol/mol": F(1)},
    "equivalents/volume": {"meq/L": F(1), "mmol{eq}/L": F(1)},
    "temperature": {"Cel": F(1)},
    "score": {"{score}": F(1)},
}

#: (from dimension, to dimension) → power of the molar mass to multiply by.
_MOLAR = {
    ("substance/volume", "mass/volume"): 1,
    ("mass/volume", "substance/volume"): -1,
    ("substance", "mass"): 1,
    ("mass", "substance"): -1,
}

_UNITS: dict[str, tuple[str, Fraction]] = {
    code: (dim, factor) for dim, codes in _DIMENSIONS.items() for code, factor in codes.items()
}


def _case_variants() -> dict[str, str]:
    """Case-folded code → the one known code it folds to; codes two units fold to
    (none today) are left out: they stay ambiguous, hence unknown."""
    folded: dict[str, set[str]] = {}
    for code in _UNITS:
        folded.setdefault(code.casefold(), set()).add(code)
    return {key: next(iter(codes)) for key, codes in folded.items() if len(codes) == 1}


_FOLDED = _case_variants()
#: Common non-UCUM spellings, replaced before the lookup.
_SPELLINGS = (("µ", "u"), ("μ", "u"), ("mcg", "ug"), ("10^", "10*"), ("×10*", "10*"))
#: Whole codes feeds send for a known unit (keys case-folded).
_ALIASES = {
    "mmhg": "mm[Hg]",
    "cmh2o": "cm[H2O]",
    "iu/l": "[IU]/L",
    "miu/l": "m[IU]/L",
    "iu/ml": "[IU]/mL",
    "beats/min": "{beats}/min",
    "bpm": "{beats}/min",
    "cells/ul": "{cells}/uL",
    "ml/min/1.73m2": "mL/min/{1.73_m2}",
    "°c": "Cel",
    "℃": "Cel",
}


def canonical_unit(unit: str | None) -> str | None:
    """The known UCUM code ``unit`` stands for, or None when it is not known."""
    if not isinstance(unit, str):
        return None
    code = "".join(unit.split())
    if code in _UNITS:
        return code
    for old, new in _SPELLINGS:
        code = code.replace(old, new)
    if code[:4].casefold() == "x10*":
        code = code[1:]
    if code in _UNITS:
        return code
    folded = code.casefold()
    return _FOLDED.get(folded) or _ALIASES.get(folded)


def _quantity(quantity: str | None) -> tuple[Fraction, str] | None:
    if quantity is None:
        return None
    try:
        return _QUANTITY[quantity.casefold()]
    except KeyError:
        known = ", ".join(sorted(_QUANTITY))
        raise ValueError(f"unknown quantity {quantity!r}; known: {known}") from None


@lru_cache(maxsize=4096)
def _ratio(unit: str, to_unit: str, quantity: str | None) -> Fraction | None:
    named = _quantity(quantity)
    source, target = canonical_unit(unit), canonical_unit(to_unit)
    if source is None or target is None:
        return None
    (from_dim, from_factor), (to_dim, to_factor) = _UNITS[source], _UNITS[target]
    ratio = from_factor / to_factor
    if from_dim == to_dim:
        return ratio
    power = _MOLAR.get((from_dim, to_dim))
    if power is None or named is None:
        return None
    return ratio * named[0] ** power


def convert(
    value: float, unit: str | None, to_unit: str, quantity: str | None = None
) -> float | None:
    """``value`` in ``unit`` expressed in ``to_unit``; None when ``unit`` is missing or
    unknown, or the two units do not convert (another dimension, or molar ↔ mass
    without a ``quantity``). ``quantity`` names a :data:`QUANTITIES` entry (case
    ignored); an unknown name is a ``ValueError``: a definition's mistake, not data's."""
    if unit is None or not unit.strip():
        _quantity(quantity)
        return None
    if "".join(unit.split()) == "".join(to_unit.split()):
        _quantity(quantity)
        return float(value)
    ratio = _ratio(unit, to_unit, quantity)
    if ratio is None:
        return None
    return float(value) if ratio == 1 else float(value) * float(ratio)


def is_known_unit(unit: str | None, quantity: str | None = None) -> bool:
    """Whether values in ``unit`` can be read at all: ``unit`` is in the table (case
    and spelling variants included). With a ``quantity``, whether they can be read as
    that quantity: converted to its concentration (molar or mass, whichever)."""
    named = _quantity(quantity)
    if named is None:
        return canonical_unit(unit) is not None
    return unit is not None and convert(1.0, unit, named[1], quantity) is not None
