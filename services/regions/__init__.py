"""Regions (quality-control centres, 质控中心): members, region keys, fair league tables.

Other packages may import only what is listed here.
"""

from services.regions.league import (
    LeagueRow,
    LeagueTable,
    league_json,
    league_table,
    member_counts,
    series,
)
from services.regions.router import router

__all__ = [
    "LeagueRow",
    "LeagueTable",
    "league_json",
    "league_table",
    "member_counts",
    "router",
    "series",
]
