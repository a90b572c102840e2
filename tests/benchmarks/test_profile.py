"""``python -m bench.profile`` splits py-spy's collapsed stacks by phase; the
"where the time goes" tables of PERFORMANCE.md are its output."""

from __future__ import annotations

from pathlib import Path

from bench.profile import OTHER, main, phases

LINES = [
    # A request thread in the write phase, waiting for PostgreSQL: 30 samples.
    "thread (1);run (anyio/_backends/_asyncio.py:967);post_bundle (services/ingest/router.py:200);"
    "process_bundle (services/ingest/bundles.py:330);flush (services/ingest/service.py:430);"
    "execute (sqlalchemy/engine/base.py:1400);wait (psycopg/connection.py:900) 30",
    # The same thread validating in the read phase: 10 samples, no driver.
    "thread (1);precheck (services/ingest/bundles.py:120);"
    "validate_resource (services/ingest/validation.py:40) 10",
    # The indicator consumer (it runs under shared/bus.py, but its phase is the engine).
    "thread (2);run_once (shared/bus.py:150);reevaluate (services/indicators/engine.py:300) 5",
    "thread (3);select (selectors.py:468);EpollSelector.select (selectors.py:468) 4",
    "thread (4);something (starlette/routing.py:70) 1",
]


def test_samples_are_split_by_phase_and_driver():
    total, driver = phases(LINES)
    assert total == {
        "write phase": 30,
        "read phase (precheck)": 10,
        "indicator re-evaluation": 5,
        "event loop idle": 4,
        OTHER: 1,
    }
    assert driver == {"write phase": 30}


def test_the_command_reports_each_recording(tmp_path: Path, capsys):
    (tmp_path / "01-postgresql-all-w1-1.txt").write_text("\n".join(LINES) + "\n")
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "01-postgresql-all-w1-1.txt: 50 samples" in out
    assert "write phase" in out and "60.0 %" in out
