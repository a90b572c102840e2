"""Indicators: definitions as data, the evaluator, exact incremental counters, the read API.

Other services may import only what is listed here.
"""

from services.indicators.definitions import IndicatorDefinition
from services.indicators.evaluator import Catalogue
from services.indicators.maintenance import VerifyReport, recompute, verify
from services.indicators.profiles import profiles_for
from services.indicators.rates import RateStatus, month_status
from services.indicators.router import router
from services.indicators.worker import catalogue_for, handlers, reported_codes, timers

__all__ = [
    "Catalogue",
    "IndicatorDefinition",
    "RateStatus",
    "VerifyReport",
    "catalogue_for",
    "handlers",
    "month_status",
    "profiles_for",
    "recompute",
    "reported_codes",
    "router",
    "timers",
    "verify",
]
