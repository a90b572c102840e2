"""End to end with the real threads and the real clock: how late a breach reaches the
receiver after its deadline. The one test here that waits on the wall clock, because
lateness *is* wall-clock behaviour; every other clock test uses the FrozenClock."""

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from qcpulse.app import create_app
from shared.clock import SystemClock
from shared.runtime import Runtime
from tests.alerts.conftest import subscribe
from tests.fhir_factories import condition, encounter, patient, transaction


def test_breach_arrives_within_about_a_second_of_the_deadline(
    engine, settings, runtime, admin_headers, ingest_headers, receiver
):
    grace = timedelta(seconds=2)
    live_settings = settings.model_copy(update={"alert_grace": grace})
    live = Runtime(settings=live_settings, engine=engine, clock=SystemClock())
    app = create_app(runtime=live, run_workers=True)
    with TestClient(app) as client:
        subscribe(client, admin_headers, receiver, events=["case.breached"])
        deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        arrival = (deadline - timedelta(minutes=90)).astimezone().isoformat()
        bundle = transaction(patient(), encounter(start=arrival), condition(onset=arrival))
        assert client.post("/fhir", json=bundle, headers=ingest_headers).status_code == 200
        [got] = receiver.wait_for(1, timeout=10)
    lateness = got.at - (deadline + grace).timestamp()
    print(f"\nbreach delivered {lateness:.3f} s after the deadline and its grace")
    assert got.json["type"] == "case.breached"
    assert got.verified
    assert 0 <= lateness < 1.5
