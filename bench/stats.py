"""Figures: a value measured over repeated runs, reported as median, min and max."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Figure:
    scenario: str
    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.runs) if self.runs else None,
            "max": max(self.runs) if self.runs else None,
            "runs": self.runs,
            "note": self.note,
        }


class Results:
    """What a scenario found: figures, and why something was skipped."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.figures: dict[str, Figure] = {}
        self.skipped: list[str] = []
        self.notes: list[str] = []

    def add(self, name: str, unit: str, value: float, note: str = "") -> None:
        figure = self.figures.setdefault(name, Figure(self.scenario, name, unit))
        figure.runs.append(value)
        if note:
            figure.note = note

    def skip(self, why: str) -> None:
        self.skipped.append(f"skipped: {why}")

    def get(self, name: str) -> Figure | None:
        return self.figures.get(name)
