"""What every scenario is given: the size of the run and where PostgreSQL is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Context:
    quick: bool
    repeats: int
    clients: int
    pg_admin_url: str
    databases: list[str]
    #: Figures earlier scenarios measured that later ones use (the maximum ingest rate).
    shared: dict[str, Any] = field(default_factory=dict)

    def size(self, quick: int, full: int) -> int:
        return quick if self.quick else full
