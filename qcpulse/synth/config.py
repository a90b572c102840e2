"""Knobs of the synthetic hospital.

Everything that shapes the stream (size, case mix, how sloppy the integration
engine is) lives in one frozen value so that a run is reproducible from
``(config, start, days, seed)`` alone. The defaults model a mid-sized Chinese
tertiary hospital (三级医院) whose feed includes ED and inpatient episodes but only a
sample of the outpatient clinic (clinics produce few of the facts the catalogue
needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

DepartmentRole = Literal[
    "emergency",
    "cardiology",
    "neurology",
    "icu",
    "psychiatry",
    "general_surgery",
    "orthopaedics",
    "general_medicine",
    "radiology",
    "thoracic_surgery",
    "nephrology",
]
#: Roles a custom department list may leave out: their patients are seen by the
#: department named here instead (older configs predate them).
ROLE_FALLBACK: dict[DepartmentRole, DepartmentRole] = {
    "thoracic_surgery": "general_surgery",
    "nephrology": "general_medicine",
}

Pathway = Literal[
    "ed_minor",
    "clinic",
    "stemi",
    "stroke",
    "septic_shock",
    "cardiology",
    "neurology",
    "icu",
    "general_medicine",
    "general_surgery",
    "orthopaedics",
    "psychiatry",
    "cardiac_arrest",
    "schizophrenia",
    "chest_wall",
    "dialysis",
]
PATHWAYS: tuple[Pathway, ...] = get_args(Pathway)

#: Pathways that come through the door at any hour; the rest are booked admissions
#: and clinic visits that follow office hours and weekdays.
ACUTE_PATHWAYS: frozenset[Pathway] = frozenset(
    {"ed_minor", "stemi", "stroke", "septic_shock", "icu", "cardiac_arrest"}
)

SizeName = Literal["small", "medium", "large"]


@dataclass(frozen=True, slots=True)
class Department:
    """A 科室; ``code`` becomes the Organization id that Encounter.serviceProvider names."""

    code: str
    name: str
    name_en: str
    role: DepartmentRole


DEFAULT_DEPARTMENTS: tuple[Department, ...] = (
    Department("ED", "急诊科", "Emergency", "emergency"),
    Department("CARD", "心内科", "Cardiology", "cardiology"),
    Department("NEURO", "神经内科", "Neurology", "neurology"),
    Department("ICU", "重症医学科", "Intensive Care", "icu"),
    Department("PSY", "精神科", "Psychiatry", "psychiatry"),
    Department("GS", "普外科", "General Surgery", "general_surgery"),
    Department("ORTH", "骨科", "Orthopaedics", "orthopaedics"),
    Department("GM", "全科医学科", "General Medicine", "general_medicine"),
    Department("RAD", "放射科", "Radiology", "radiology"),
    Department("THOR", "胸外科", "Thoracic Surgery", "thoracic_surgery"),
    Department("NEPH", "肾内科", "Nephrology", "nephrology"),
)

#: Share of arrivals per pathway. Indicator populations are over-represented
#: relative to a real case mix (STEMI is ~1 % of ED visits in reality) so that a few
#: simulated days give every indicator enough cases to have a rate.
DEFAULT_MIX: tuple[tuple[Pathway, float], ...] = (
    ("ed_minor", 0.25),
    ("clinic", 0.06),
    ("stemi", 0.04),
    ("stroke", 0.05),
    ("septic_shock", 0.035),
    ("cardiology", 0.07),
    ("neurology", 0.04),
    ("icu", 0.02),
    ("general_medicine", 0.13),
    ("general_surgery", 0.12),
    ("orthopaedics", 0.09),
    ("psychiatry", 0.055),
    # Second-wave populations: a journey each, several Encounters for some (an ED
    # visit and the ward stay it became, a readmission, months of dialysis).
    ("cardiac_arrest", 0.012),
    ("schizophrenia", 0.02),
    ("chest_wall", 0.01),
    ("dialysis", 0.01),
)

_SIZES: dict[SizeName, float] = {"small": 40.0, "medium": 160.0, "large": 800.0}


@dataclass(frozen=True, slots=True)
class HospitalConfig:
    """One hospital (tenant) and the integration engine in front of it.

    Rates of engine behaviour are per opportunity: ``resend_rate`` per bundle,
    ``early_rate`` per episode, ``correction_rate`` and ``retraction_rate`` per
    correctable resource.
    """

    tenant: str = "H0001"
    name: str = "示例市第一人民医院"
    departments: tuple[Department, ...] = DEFAULT_DEPARTMENTS
    #: Mean episodes (Encounters) per day, before the hour-of-day and weekday profile.
    arrivals_per_day: float = 160.0
    #: When set, exactly this many episodes arrive over the generated span (their
    #: times still follow the hour-of-day profile) instead of a Poisson count.
    episodes: int | None = None
    mix: tuple[tuple[Pathway, float], ...] = DEFAULT_MIX
    #: Share of episodes whose patient already had an earlier episode in the feed.
    returning_patient_rate: float = 0.06
    #: Share of episodes coded in WHO ICD-10 instead of 国临版 (older interfaces).
    who_icd10_rate: float = 0.15
    resend_rate: float = 0.03
    early_rate: float = 0.05
    correction_rate: float = 0.04
    retraction_rate: float = 0.03
    #: Share of bundles sent as ``batch`` instead of ``transaction``.
    batch_rate: float = 0.04
    #: Share of bundles whose ``fullUrl`` is absolute rather than ``urn:uuid:``.
    absolute_fullurl_rate: float = 0.2
    #: Stop the stream at ``start + days`` (a snapshot of a live feed, episodes left
    #: open) instead of following every episode to discharge.
    truncate: bool = False
    #: Emit the department directory (Organization resources) as the first send.
    send_directory: bool = True
    #: Base of absolute ``fullUrl`` values and identifier systems; derived from the
    #: tenant when empty.
    base_url: str = ""

    def __post_init__(self) -> None:
        if self.arrivals_per_day <= 0:
            raise ValueError("arrivals_per_day must be positive")
        if self.episodes is not None and self.episodes < 0:
            raise ValueError("episodes must not be negative")
        if not self.tenant:
            raise ValueError("tenant must not be empty")
        roles = {d.role for d in self.departments}
        missing = set(get_args(DepartmentRole)) - roles - set(ROLE_FALLBACK)
        if missing:
            raise ValueError(f"departments lack roles: {sorted(missing)}")
        if not self.mix or any(w < 0 for _, w in self.mix) or sum(w for _, w in self.mix) <= 0:
            raise ValueError("mix needs non-negative weights with a positive sum")
        for _, rate in self.rates():
            if not 0.0 <= rate <= 1.0:
                raise ValueError("rates must lie in [0, 1]")

    def rates(self) -> tuple[tuple[str, float], ...]:
        return (
            ("returning_patient_rate", self.returning_patient_rate),
            ("who_icd10_rate", self.who_icd10_rate),
            ("resend_rate", self.resend_rate),
            ("early_rate", self.early_rate),
            ("correction_rate", self.correction_rate),
            ("retraction_rate", self.retraction_rate),
            ("batch_rate", self.batch_rate),
            ("absolute_fullurl_rate", self.absolute_fullurl_rate),
        )

    @property
    def fhir_base(self) -> str:
        """Base of absolute ``fullUrl`` values: the source HIS's own FHIR facade."""
        return self.base_url or f"https://his.{self.tenant.lower()}.example.cn/fhir"

    def department(self, role: DepartmentRole) -> Department:
        for d in self.departments:
            if d.role == role:
                return d
        if role in ROLE_FALLBACK:
            return self.department(ROLE_FALLBACK[role])
        raise KeyError(role)  # unreachable: __post_init__ checks every role

    @classmethod
    def from_size(cls, name: SizeName, *, tenant: str = "H0001") -> HospitalConfig:
        """``small`` ≈ 40, ``medium`` ≈ 160, ``large`` ≈ 800 episodes a day."""
        try:
            per_day = _SIZES[name]
        except KeyError:
            raise ValueError(f"unknown size {name!r}; use one of {sorted(_SIZES)}") from None
        return cls(tenant=tenant, arrivals_per_day=per_day)

    @classmethod
    def for_episodes(cls, episodes: int, days: float, *, tenant: str = "H0001") -> HospitalConfig:
        """A hospital in which exactly ``episodes`` episodes arrive over ``days`` days.

        Pass the same ``days`` to :func:`generate`; with another span the same number
        of episodes is spread over that span instead.
        """
        if episodes <= 0 or days <= 0:
            raise ValueError("episodes and days must be positive")
        return cls(tenant=tenant, arrivals_per_day=episodes / days, episodes=episodes)
