"""``qcpulse verify --at``: decide as of a given instant, such as the clinical clock a
``qcpulse demo`` ran on, so that a database decided ahead of the wall clock verifies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from qcpulse import cli
from services.indicators.worker import drain, run_timer_once
from services.ingest.service import IngestUnit
from tests.conftest import T0, TENANT
from tests.pipeline.test_chains_and_patients_properties import enc


@pytest.fixture
def cli_env(monkeypatch, settings):
    monkeypatch.setenv("QCPULSE_DATABASE_URL", settings.database_url)
    monkeypatch.delenv("QCPULSE_BOOTSTRAP_TENANT", raising=False)
    monkeypatch.delenv("QCPULSE_BOOTSTRAP_ADMIN_KEY", raising=False)


def test_verify_decides_as_of_the_given_instant(cli_env, runtime, capsys):
    # An inpatient with no VTE assessment: pending for 24 h, then decided by the timer.
    with runtime.write() as session:
        unit = IngestUnit(session, TENANT, runtime.tenant_zone(session, TENANT), T0)
        unit.put(enc("w1", "IMP", "cardiology", 0, None))
        unit.finish()
    drain(runtime)
    runtime.clock.advance(timedelta(hours=25))
    assert run_timer_once(runtime) >= 1  # the stored case is decided at T0 + 25 h

    assert cli.main(["verify", "--at", (T0 + timedelta(hours=25)).isoformat()]) == 0
    assert capsys.readouterr().out.strip().endswith(": OK")
    # An hour after arrival the case was still pending: the stored state is ahead.
    assert cli.main(["verify", "--at", (T0 + timedelta(hours=1)).isoformat()]) == 1
    assert "NIT-2026-III-A" in capsys.readouterr().out


def test_an_instant_without_an_offset_is_refused(cli_env):
    with pytest.raises(SystemExit):
        cli.main(["verify", "--at", "2026-03-02T10:00"])
