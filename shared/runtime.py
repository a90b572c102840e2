"""What a running process holds: settings, engine, session factories, clock, bus.

Built once in the app's lifespan (or by a CLI command), never at import. Endpoints
reach it through ``request.app.state.runtime``; workers get it passed in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.bus import Notifier, bind_notifier
from shared.clock import Clock, SystemClock
from shared.db import create_engine_for, make_session_factory, transaction
from shared.models import Tenant
from shared.ratelimit import RateLimiter
from shared.settings import Settings

T = TypeVar("T")

#: PostgreSQL error codes worth retrying: unique violation from a concurrent insert,
#: serialization failure, deadlock.
_RETRYABLE_PG_CODES = frozenset({"23505", "40001", "40P01"})


def _retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    if code in _RETRYABLE_PG_CODES:
        return True
    return isinstance(exc, OperationalError) and "locked" in str(exc.orig)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    clock: Clock = field(default_factory=SystemClock)
    notifier: Notifier = field(default_factory=Notifier)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.write_factory: sessionmaker[Session] = make_session_factory(self.engine)
        self.read_factory: sessionmaker[Session] = make_session_factory(self.engine, readonly=True)
        bind_notifier(self.write_factory, self.notifier)
        self._zones: dict[str, ZoneInfo] = {}
        #: Per-key request rate limits (``shared/ratelimit.py``): this process's buckets.
        self.rate_limiter = RateLimiter(
            self.settings.rate_limit_per_minute, self.settings.rate_limit_burst
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> Runtime:
        return cls(
            settings=settings,
            engine=create_engine_for(settings.database_url),
            clock=clock or SystemClock(),
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        with transaction(self.read_factory) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with transaction(self.write_factory) as session:
            yield session

    def write_tx(self, work: Callable[[Session], T], *, attempts: int = 5) -> T:
        """Run ``work`` in one transaction; retry it whole on a conflict with a
        concurrent writer (PostgreSQL) or a busy database (SQLite)."""
        for attempt in range(attempts):
            try:
                with transaction(self.write_factory) as session:
                    return work(session)
            except (IntegrityError, OperationalError) as exc:
                if attempt == attempts - 1 or not _retryable(exc):
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    def tenant_zone(self, session: Session, tenant_id: str) -> ZoneInfo:
        zone = self._zones.get(tenant_id)
        if zone is None:
            tenant = session.get(Tenant, tenant_id)
            zone = ZoneInfo(tenant.timezone if tenant else self.settings.default_timezone)
            self._zones[tenant_id] = zone
        return zone

    def close(self) -> None:
        self.stop.set()
        self.engine.dispose()
