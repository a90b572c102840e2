"""Sealing subscription secrets at rest, and re-sealing them under a new key.

Migration 0009 only widens ``alert_subscriptions.secret``: a migration has no key
(``alembic`` runs without the settings' secrets, and a key in a migration's
environment would be one more place it leaks), so rows written before it stay clear,
and clear rows are read as they are. Two steps seal them:

* on every start (:func:`seal_weak_secrets`, from ``prepare``), when a real key is
  configured, rows in clear or under the public development key are sealed with it.
  Rows under an older real key are left alone: during a rolling key change, processes
  that do not have the new key yet must still open them.
* ``qcpulse rotate-secrets`` (:func:`reseal_all`) re-seals every row that is not under
  the current key, once every process has it; after that the previous key can go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

from services.alerts.models import Subscription
from services.alerts.service import secret_context
from shared.db import is_postgres
from shared.runtime import Runtime
from shared.secretbox import SecretBox, SecretKeyError, key_id_of, secret_box

log = structlog.get_logger(__name__)


@dataclass
class ResealReport:
    rows: int = 0
    resealed: int = 0
    #: Subscription ids whose secret would not open (its key is not configured).
    failed: list[str] = field(default_factory=list)
    #: Rows left under another real key (only :func:`seal_weak_secrets` leaves any).
    older_key: int = 0


def _reseal(runtime: Runtime, box: SecretBox, wanted: Callable[[str], bool]) -> ResealReport:
    def work(session: Session) -> ResealReport:
        report = ResealReport()
        query = sa.select(Subscription).order_by(Subscription.id)
        if is_postgres(session):
            query = query.with_for_update()
        for row in session.scalars(query):
            report.rows += 1
            if box.is_current(row.secret):
                continue
            if not wanted(row.secret):
                report.older_key += 1
                continue
            context = secret_context(row.id)
            try:
                clear = box.open(row.secret, context)
            except SecretKeyError:
                report.failed.append(row.id)
                continue
            row.secret = box.seal(clear, context)
            report.resealed += 1
        return report

    return runtime.write_tx(work)


def seal_weak_secrets(runtime: Runtime) -> ResealReport:
    """Seal clear and development-key rows with the configured key (start-up step).
    Does nothing under the development key: sealing with it would protect nothing."""
    box = secret_box(runtime.settings)
    if box.is_dev:
        return ResealReport()
    report = _reseal(runtime, box, lambda stored: not box.truly_sealed(stored))
    if report.resealed:
        log.info("webhook secrets sealed", rows=report.resealed, key_id=box.current_id)
    if report.older_key:
        log.warning(
            "webhook secrets under an older key: run `qcpulse rotate-secrets`",
            rows=report.older_key,
        )
    return report


def reseal_all(runtime: Runtime) -> ResealReport:
    """Re-seal every subscription secret not under the current key (``rotate-secrets``)."""
    box = secret_box(runtime.settings)
    return _reseal(runtime, box, lambda stored: True)


def key_ids_in_use(session: Session) -> dict[str | None, int]:
    """How many rows each key id seals (None: clear)."""
    out: dict[str | None, int] = {}
    for stored in session.scalars(sa.select(Subscription.secret)):
        kid = key_id_of(stored)
        out[kid] = out.get(kid, 0) + 1
    return out
