"""One process of a deployment runs the background work.

``qcpulse serve --workers N`` starts N API processes on one database. The outbox
consumers, the deadline timer, webhook delivery and the MLLP listener must run once per
deployment, not once per process: the timer would decide every due case N times, N
listeners cannot share a port. The processes elect one of them with a lock that the
operating system or the database releases when its holder dies, so a ``kill -9`` of
the holder hands the work to another process within one poll interval, and there is
never a lease that expires under a live holder:

- SQLite: an exclusive ``flock`` on a file beside the database (``<db>.<name>.lock``);
  the kernel drops it with the process.
- PostgreSQL: a session-level ``pg_try_advisory_lock`` held on a connection of its
  own; the server drops it with the connection.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from typing import IO, Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

log = structlog.get_logger(__name__)


def _lock_id(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


class Election:
    """Try to become the process that runs ``name``; :meth:`held` says whether it
    still is (a PostgreSQL connection can drop)."""

    def __init__(self, engine: Engine, name: str = "background") -> None:
        self.engine = engine
        self.name = name
        self._file: IO[Any] | None = None
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self.held():
            return True
        if self.engine.dialect.name == "postgresql":
            return self._try_postgres()
        return self._try_file()

    def _try_file(self) -> bool:
        database = self.engine.url.database
        if not database or database == ":memory:":
            return True  # a private database: this process is the deployment
        handle = open(f"{database}.{self.name}.lock", "a+")  # noqa: SIM115 - held open
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def _try_postgres(self) -> bool:
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = bool(
                conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _lock_id(self.name)}
                ).scalar_one()
            )
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def held(self) -> bool:
        if self._file is not None:
            return True
        if self._conn is None:
            return False
        try:
            self._conn.execute(sa.text("SELECT 1"))
            return True
        except Exception as exc:  # the connection, and with it the lock, is gone
            log.error("lost the background election: its connection dropped", error=str(exc))
            self._drop_connection()
            return False

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:  # already broken
                pass

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._conn is not None:
            try:
                self._conn.execute(
                    sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_id(self.name)}
                )
            finally:
                self._drop_connection()
