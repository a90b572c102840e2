"""UCUM conversions for value thresholds (shared/units.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.units import _DIMENSIONS, _MOLAR, QUANTITIES, canonical_unit, convert, is_known_unit

approx = pytest.approx


class TestIdentity:
    @pytest.mark.parametrize("unit", ["g/L", "mmol/L", "10*9/L", "%", "mL/min/{1.73_m2}"])
    def test_a_known_unit_to_itself(self, unit):
        assert convert(7.5, unit, unit) == 7.5

    def test_whitespace_is_trimmed(self):
        assert convert(7.5, " g/L ", "g/L") == 7.5
        assert convert(7.5, "10*9 /L", "10*9/L") == 7.5

    def test_an_unknown_code_still_equals_itself(self):
        assert convert(3.0, "{copies}/mL", "{copies}/mL") == 3.0
        assert not is_known_unit("{copies}/mL")

    def test_an_int_comes_back_a_float(self):
        result = convert(7, "g/L", "g/L")
        assert result == 7.0 and isinstance(result, float)


class TestCaseAndSpelling:
    @pytest.mark.parametrize(
        ("sent", "code"),
        [
            ("g/l", "g/L"),
            ("G/L", "g/L"),
            ("mmol/l", "mmol/L"),
            ("MMOL/L", "mmol/L"),
            ("mg/dl", "mg/dL"),
            ("µmol/L", "umol/L"),
            ("μmol/L", "umol/L"),
            ("mcg/mL", "ug/mL"),
            ("10^9/L", "10*9/L"),
            ("x10^9/L", "10*9/L"),
            ("×10^9/L", "10*9/L"),
            ("mmHg", "mm[Hg]"),
            ("IU/L", "[IU]/L"),
            ("℃", "Cel"),
            ("mL/min/1.73m2", "mL/min/{1.73_m2}"),
        ],
    )
    def test_variants_read_as_the_ucum_code(self, sent, code):
        assert canonical_unit(sent) == code
        assert is_known_unit(sent)
        assert convert(2.0, sent, code) == 2.0

    @pytest.mark.parametrize("unit", [None, "", "  ", "mg%", "g%", "furlong/L", "cells"])
    def test_unknown(self, unit):
        assert not is_known_unit(unit)

    def test_no_two_units_fold_to_one_case_variant(self):
        codes = [code for units in _DIMENSIONS.values() for code in units]
        assert len(codes) == len(set(codes)), "a code in two dimensions"
        assert len({c.casefold() for c in codes}) == len(codes)


class TestPrefixes:
    @pytest.mark.parametrize(
        ("value", "unit", "to_unit", "expected"),
        [
            (12, "g/dL", "g/L", 120),
            (120, "g/L", "g/dL", 12),
            (90, "mg/dL", "mg/L", 900),
            (1, "ug/mL", "mg/L", 1),
            (14, "ng/L", "ng/mL", 0.014),
            (88, "umol/L", "mmol/L", 0.088),
            (88, "µmol/L", "nmol/L", 88000),
            (5, "10*9/L", "10*3/uL", 5),
            (5000, "/uL", "10*9/L", 5),
            (250, "10*3/mm3", "10*9/L", 250),
            (45, "%", "1", 0.45),
            (0.45, "L/L", "%", 45),
            (90, "min", "h", 1.5),
            (2, "d", "h", 48),
            (1, "wk", "d", 7),
            (1, "a", "d", 365.25),
            (750, "ms", "s", 0.75),
            (60, "/min", "/s", 1),
            (7.5, "kPa", "mm[Hg]", 7500 / 133.322),
            (72, "kg", "g", 72000),
            (40, "U/L", "mU/mL", 40),
        ],
    )
    def test_converts(self, value, unit, to_unit, expected):
        assert convert(value, unit, to_unit) == approx(expected, rel=1e-6)

    def test_exact_decimal_scalings_stay_exact(self):
        assert convert(12, "g/dL", "g/L") == 120.0
        assert convert(3, "mmol/L", "umol/L") == 3000.0

    @pytest.mark.parametrize(
        ("unit", "to_unit"),
        [
            ("g/L", "s"),
            ("mmol/L", "g/L"),  # molar ↔ mass needs a quantity
            ("mmol/mol", "%"),  # HbA1c IFCC ↔ NGSP is a regression
            ("meq/L", "mmol/L"),  # valence
            ("[IU]/L", "U/L"),
            ("Cel", "K"),
            ("{score}", "1"),
        ],
    )
    def test_does_not_convert(self, unit, to_unit):
        assert convert(1.0, unit, to_unit) is None

    def test_missing_unit_converts_to_nothing(self):
        assert convert(1.0, None, "g/L") is None
        assert convert(1.0, "", "g/L") is None


class TestMolar:
    def test_haemoglobin_uses_the_design_factor(self):
        assert convert(1, "mmol/L", "g/L", "haemoglobin") == approx(16.11, rel=1e-12)
        assert convert(7.45, "mmol/L", "g/dL", "haemoglobin") == approx(12.00195, rel=1e-9)
        assert convert(110, "g/L", "mmol/L", "haemoglobin") == approx(110 / 16.11, rel=1e-12)
        assert convert(1, "mmol/L", "g/L", "Hemoglobin") == approx(16.11, rel=1e-12)

    def test_glucose(self):
        assert convert(1, "mmol/L", "g/L", "glucose") == approx(0.18016, rel=1e-12)
        assert convert(5.5, "mmol/L", "mg/dL", "glucose") == approx(99.088, rel=1e-12)
        assert convert(126, "mg/dL", "mmol/L", "glucose") == approx(126 / 18.016, rel=1e-12)

    def test_creatinine(self):
        assert convert(1, "mg/dL", "umol/L", "creatinine") == approx(10000 / 113.12, rel=1e-12)
        # Serum phosphorus: 3.1 mg/dL is 1.00 mmol/L.
        assert convert(3.1, "mg/dL", "mmol/L", "phosphate") == approx(31 / 30.97, rel=1e-12)
        assert convert(88.4, "umol/L", "mg/dL", "creatinine") == approx(1.0, rel=1e-4)

    def test_same_dimension_needs_no_molar_mass(self):
        assert convert(5.5, "mmol/L", "umol/L", "glucose") == 5500.0

    def test_a_quantity_does_not_bridge_other_dimensions(self):
        assert convert(1, "mmol/L", "s", "glucose") is None
        assert convert(1, "mmol/L", "10*9/L", "glucose") is None

    def test_an_unknown_quantity_is_an_error(self):
        with pytest.raises(ValueError, match="unknown quantity 'lactate'"):
            convert(1, "mmol/L", "g/L", "lactate")
        with pytest.raises(ValueError, match="unknown quantity"):
            is_known_unit("mmol/L", "lactate")

    def test_known_for_a_quantity(self):
        assert is_known_unit("mmol/L", "haemoglobin")
        assert is_known_unit("g/dL", "haemoglobin")
        assert is_known_unit("mg/dL", "glucose")
        assert not is_known_unit("%", "glucose")
        assert not is_known_unit("mg%", "glucose")
        assert not is_known_unit(None, "glucose")

    def test_every_quantity_has_a_molar_mass(self):
        assert QUANTITIES == {
            "haemoglobin": 16110.0,
            "hemoglobin": 16110.0,
            "glucose": 180.16,
            "creatinine": 113.12,
            "phosphate": 30.97,
        }


# -- properties ------------------------------------------------------------------

_CONVERTIBLE = [(dim, sorted(units)) for dim, units in _DIMENSIONS.items() if len(units) > 1]
_values = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def same_dimension(draw):
    _, units = draw(st.sampled_from(_CONVERTIBLE))
    return draw(st.sampled_from(units)), draw(st.sampled_from(units))


@st.composite
def molar_pair(draw):
    quantity = draw(st.sampled_from(sorted(QUANTITIES)))
    from_dim, to_dim = draw(st.sampled_from(sorted(_MOLAR)))
    unit = draw(st.sampled_from(sorted(_DIMENSIONS[from_dim])))
    to_unit = draw(st.sampled_from(sorted(_DIMENSIONS[to_dim])))
    return unit, to_unit, quantity


@given(same_dimension(), _values)
def test_round_trip_within_a_dimension(pair, value):
    unit, to_unit = pair
    there = convert(value, unit, to_unit)
    assert there is not None
    assert convert(there, to_unit, unit) == approx(value, rel=1e-12)


@given(molar_pair(), _values)
def test_round_trip_through_the_molar_mass(case, value):
    unit, to_unit, quantity = case
    there = convert(value, unit, to_unit, quantity)
    assert there is not None
    assert convert(there, to_unit, unit, quantity) == approx(value, rel=1e-12)


@st.composite
def three_of_a_dimension(draw):
    _, units = draw(st.sampled_from(_CONVERTIBLE))
    return tuple(draw(st.sampled_from(units)) for _ in range(3))


@given(three_of_a_dimension(), _values)
def test_conversion_composes(units, value):
    """a→b→c equals a→c."""
    unit, middle, to_unit = units
    halfway = convert(value, unit, middle)
    assert halfway is not None
    assert convert(halfway, middle, to_unit) == approx(convert(value, unit, to_unit), rel=1e-12)


@given(st.sampled_from(sorted(c for units in _DIMENSIONS.values() for c in units)), _values)
def test_case_variants_read_like_the_code(code, value):
    for variant in (code.lower(), code.upper(), f" {code}\t"):
        assert convert(value, variant, code) == value
        assert is_known_unit(variant)
