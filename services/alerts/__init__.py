"""Alerts: subscriptions, alert rules (case clocks, department rates), signed webhook
delivery with retries and a dead-letter state.

Other packages may import only what is listed here.
"""

from services.alerts.router import router
from services.alerts.sealing import ResealReport, reseal_all, seal_weak_secrets
from services.alerts.worker import handlers, loops, start_workers

__all__ = [
    "ResealReport",
    "handlers",
    "loops",
    "reseal_all",
    "router",
    "seal_weak_secrets",
    "start_workers",
]
