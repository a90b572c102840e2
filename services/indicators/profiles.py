"""Target profiles: named sets of targets a tenant may select (national, a region's plan).

One YAML file per profile in ``services/indicators/profiles/``, named after it
(``tianjin-2025.yaml``)::

    name: tianjin-2025
    title: 天津市落实全面提升医疗质量行动计划（2023—2025年）工作方案
    source: ../seeds/004 … (where the numbers come from)
    targets:
      NIT-2026-IX: {target: 1.8, direction: lower_is_better}
      PIT-2026-34: {previous_year: true, direction: higher_is_better}

An entry's ``target`` is in the indicator's unit (a fraction for ``percent``).
``previous_year: true`` ("逐步升高/逐步降低") makes the target the indicator's own rate
in the same dates of the previous year; ``target``, when also given, is the fallback
when there is no rate last year. ``direction``, when given, must be the indicator's.

Resolution (``queries.resolve_target``): the tenant's own target, else its profile's
entry, else the definition's target. A profile entry for a code the catalogue does
not have is a load *warning* (the definition may come in a later catalogue wave), as
is a direction that differs from the definition's (the definition's is used); a
malformed file, or a percent target above 1, is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.indicators.definitions import IndicatorDefinition
from services.indicators.evaluator import Catalogue

log = structlog.get_logger(__name__)

PROFILES_DIR = Path(__file__).parent / "profiles"
#: The profile a tenant without a choice is shown under (each definition's own target).
DEFAULT_PROFILE = "national-2026"


class ProfileError(ValueError):
    """A profile file that cannot be loaded."""


class TargetEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: float | None = Field(default=None, ge=0)
    direction: Literal["higher_is_better", "lower_is_better"] | None = None
    previous_year: bool = False
    #: The wording of the item in the source text, for readers.
    item: str | None = None

    @model_validator(mode="after")
    def _has_target(self) -> TargetEntry:
        if self.target is None and not self.previous_year:
            raise ValueError("an entry needs a target or previous_year: true")
        return self


class ProfileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(min_length=1)
    source: str = Field(min_length=1)
    description: str = ""
    targets: dict[str, TargetEntry] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Profile:
    spec: ProfileSpec
    #: Entries that apply (unknown codes left out, directions taken from the definition).
    entries: Mapping[str, TargetEntry]
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class ProfileSet:
    profiles: Mapping[str, Profile] = field(default_factory=dict)

    def get(self, name: str | None) -> Profile | None:
        return None if name is None else self.profiles.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.profiles

    def warnings(self) -> list[str]:
        return [w for p in self.profiles.values() for w in p.warnings]


def _read(path: Path) -> ProfileSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = ProfileSpec.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path.name}: invalid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ProfileError(f"{path.name}: {problems}") from None
    if spec.name != path.stem:
        raise ProfileError(f"{path.name}: name '{spec.name}' differs from the file name")
    return spec


def load_profiles(
    definitions: Iterable[IndicatorDefinition], directory: Path = PROFILES_DIR
) -> ProfileSet:
    """Every ``*.yaml`` of ``directory``, checked against the catalogue's definitions."""
    by_code = {d.code: d for d in definitions}
    profiles: dict[str, Profile] = {}
    for path in sorted(directory.glob("*.yaml")):
        spec = _read(path)
        entries: dict[str, TargetEntry] = {}
        warnings: list[str] = []
        for code, entry in spec.targets.items():
            defn = by_code.get(code)
            if defn is None:
                warnings.append(f"{path.name}: {code}: no such indicator in the catalogue")
                continue
            if defn.unit == "percent" and entry.target is not None and entry.target > 1:
                raise ProfileError(
                    f"{path.name}: {code}: a percent target is a fraction (0.85 for 85 %)"
                )
            if entry.direction is not None and entry.direction != defn.direction:
                warnings.append(
                    f"{path.name}: {code}: direction {entry.direction} differs from the"
                    f" definition's ({defn.direction}); the definition's is used"
                )
            entries[code] = entry
        profiles[spec.name] = Profile(spec, entries, tuple(warnings))
    return ProfileSet(profiles)


@lru_cache(maxsize=8)
def profiles_for(catalogue: Catalogue) -> ProfileSet:
    """The shipped profiles checked against a catalogue, loaded once per catalogue; its
    warnings are logged then (and listed by ``GET /api/v1/target-profiles``)."""
    loaded = load_profiles(catalogue.definitions(), PROFILES_DIR)
    for warning in loaded.warnings():
        log.warning("target profile", detail=warning)
    return loaded


def profile_json(profile: Profile) -> dict[str, object]:
    spec = profile.spec
    return {
        "name": spec.name,
        "title": spec.title,
        "source": spec.source,
        "description": spec.description,
        "targets": {
            code: entry.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
            | {"applies": code in profile.entries}
            for code, entry in spec.targets.items()
        },
        "warnings": list(profile.warnings),
    }
