"""Code systems, prefix/exact matching and tenant code maps."""

from __future__ import annotations

import pytest

from services.indicators.valuesets import CODE_SYSTEMS, QC_SYSTEM, CodeMap, ValueSet, ValueSetError
from shared.clinical import Coding

STEMI = ValueSet.compile(
    "stemi", {"icd10": ["I21.0", "I21.1", "I21.2", "I21.3"], "snomed": ["401303003"]}
)
PCI = ValueSet.compile("pci", {"icd9cm3": ["00.66", "36.06", "36.07"]})
ANTIBACTERIAL = ValueSet.compile("abx", {"atc": ["J01"]})
MICRO = ValueSet.compile("micro", {"loinc": ["600-7", "630-4"]})
QC_VS = ValueSet.compile("mdt", {"qc": ["preop-mdt"]})


class TestAliases:
    def test_table_of_indicators_md(self) -> None:
        assert CODE_SYSTEMS["icd10"].uris == (
            "http://hl7.org/fhir/sid/icd-10",
            "http://hl7.org/fhir/sid/icd-10-cm",
            "urn:oid:2.16.156.10011.2.3.3.11",
        )
        assert CODE_SYSTEMS["icd9cm3"].uris == (
            "http://hl7.org/fhir/sid/icd-9-cm",
            "urn:oid:2.16.156.10011.2.3.3.12",
        )
        assert CODE_SYSTEMS["atc"].uris == ("http://www.whocc.no/atc",)
        assert CODE_SYSTEMS["snomed"].uris == ("http://snomed.info/sct",)
        assert CODE_SYSTEMS["loinc"].uris == ("http://loinc.org",)
        assert (
            CODE_SYSTEMS["qc"].uris == (QC_SYSTEM,) == ("https://qcpulse.org/fhir/CodeSystem/qc",)
        )
        rules = {alias: cs.rule.value for alias, cs in CODE_SYSTEMS.items()}
        assert rules["icd10"] == rules["icd9cm3"] == rules["atc"] == "prefix"
        assert rules["snomed"] == rules["loinc"] == rules["qc"] == "exact"

    @pytest.mark.parametrize("uri", CODE_SYSTEMS["icd10"].uris)
    def test_every_icd10_uri_matches(self, uri: str) -> None:
        assert STEMI.matches(Coding(uri, "I21.000x001"))

    @pytest.mark.parametrize("uri", CODE_SYSTEMS["icd9cm3"].uris)
    def test_every_icd9_uri_matches(self, uri: str) -> None:
        assert PCI.matches(Coding(uri, "00.6600"))


class TestPrefixMatching:
    @pytest.mark.parametrize(
        "code", ["I21.0", "I21.000", "I21.000x001", "I210", "i21.3", " I21.1 ", "I21.29"]
    )
    def test_icd10_prefix_ignores_dots_and_case(self, code: str) -> None:
        assert STEMI.matches(Coding("http://hl7.org/fhir/sid/icd-10", code))

    @pytest.mark.parametrize("code", ["I21", "I21.4", "I22.0", "I2", ""])
    def test_icd10_non_members(self, code: str) -> None:
        assert not STEMI.matches(Coding("http://hl7.org/fhir/sid/icd-10", code))

    def test_icd9_prefix(self) -> None:
        assert PCI.matches(Coding("http://hl7.org/fhir/sid/icd-9-cm", "36.0700x001"))
        assert not PCI.matches(Coding("http://hl7.org/fhir/sid/icd-9-cm", "36.1"))

    def test_atc_prefix(self) -> None:
        assert ANTIBACTERIAL.matches(Coding("http://www.whocc.no/atc", "J01DD04"))
        assert not ANTIBACTERIAL.matches(Coding("http://www.whocc.no/atc", "J02AC01"))

    def test_prefix_does_not_leak_across_systems(self) -> None:
        assert not STEMI.matches(Coding("http://snomed.info/sct", "I21.0"))
        assert not ANTIBACTERIAL.matches(Coding("http://hl7.org/fhir/sid/icd-10", "J01"))


class TestExactMatching:
    def test_snomed_is_exact(self) -> None:
        assert STEMI.matches(Coding("http://snomed.info/sct", "401303003"))
        assert not STEMI.matches(Coding("http://snomed.info/sct", "4013030031"))
        assert not STEMI.matches(Coding("http://snomed.info/sct", "40130300"))

    def test_loinc_and_qc_are_exact(self) -> None:
        assert MICRO.matches(Coding("http://loinc.org", "600-7"))
        assert not MICRO.matches(Coding("http://loinc.org", "600"))
        assert QC_VS.matches(Coding(QC_SYSTEM, "preop-mdt"))
        assert not QC_VS.matches(Coding(QC_SYSTEM, "preop-mdt-2"))
        assert not QC_VS.matches(Coding(QC_SYSTEM, "PREOP-MDT"))

    def test_unknown_system_never_matches(self) -> None:
        assert not MICRO.matches(Coding("http://loinc.org/", "600-7"))
        assert not MICRO.matches_any([])


class TestCompileErrors:
    def test_unknown_alias(self) -> None:
        with pytest.raises(ValueSetError, match="unknown code system alias 'icd11'") as exc:
            ValueSet.compile("x", {"icd11": ["A00"]})
        assert exc.value.field == "icd11"

    def test_duplicate_after_normalisation(self) -> None:
        with pytest.raises(ValueSetError, match="duplicate code 'I210'") as exc:
            ValueSet.compile("x", {"icd10": ["I21.0", "I210"]})
        assert exc.value.field == "icd10.1"

    def test_duplicate_exact(self) -> None:
        with pytest.raises(ValueSetError, match="duplicate"):
            ValueSet.compile("x", {"loinc": ["600-7", "600-7"]})

    def test_empty_value_set_is_allowed_and_matches_nothing(self) -> None:
        vs = ValueSet.compile("x", {})
        assert vs.is_empty
        assert not vs.matches(Coding(QC_SYSTEM, "anything"))


class TestCodeMap:
    LOCAL = "urn:oid:1.2.156.112604.1.2.3"

    def test_mapped_code_matches_as_if_sent_in_target_system(self) -> None:
        cm = CodeMap([(self.LOCAL, "XB001", Coding("urn:oid:2.16.156.10011.2.3.3.11", "I21.100"))])
        local = Coding(self.LOCAL, "XB001")
        assert not STEMI.matches(local)
        assert STEMI.matches(local, cm)
        assert not STEMI.matches(Coding(self.LOCAL, "XB002"), cm)

    def test_target_may_be_an_alias_and_one_code_may_map_to_several(self) -> None:
        cm = CodeMap()
        cm.add(self.LOCAL, "K1", ("snomed", "401303003"))
        cm.add(self.LOCAL, "K1", ("loinc", "600-7"))
        cm.add(self.LOCAL, "K1", ("loinc", "600-7"))
        assert cm.targets(Coding(self.LOCAL, "K1")) == (
            Coding("http://snomed.info/sct", "401303003"),
            Coding("http://loinc.org", "600-7"),
        )
        assert STEMI.matches(Coding(self.LOCAL, "K1"), cm)
        assert MICRO.matches(Coding(self.LOCAL, "K1"), cm)
        assert len(cm) == 1

    def test_unknown_target_system_is_refused(self) -> None:
        with pytest.raises(ValueError, match="not a known code system"):
            CodeMap([(self.LOCAL, "K1", ("http://example.org/other", "X"))])

    def test_mapping_is_not_transitive(self) -> None:
        cm = CodeMap(
            [
                (self.LOCAL, "A", ("qc", "B")),
                (QC_SYSTEM, "B", ("snomed", "401303003")),
            ]
        )
        assert not STEMI.matches(Coding(self.LOCAL, "A"), cm)

    def test_memo_does_not_leak_code_map_answers(self) -> None:
        cm = CodeMap([(self.LOCAL, "Z", ("atc", "J01CA04"))])
        local = Coding(self.LOCAL, "Z")
        assert ANTIBACTERIAL.matches(local, cm)
        assert not ANTIBACTERIAL.matches(local)
