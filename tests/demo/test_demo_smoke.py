"""`qcpulse demo` as a newcomer runs it: a live hospital, indicators, alerts, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

# The demo is the embedded mode (SQLite) by design; it runs in the SQLite pass of CI.
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("QCPULSE_TEST_DATABASE_URL")),
    reason="the demo always runs on embedded SQLite; covered by the SQLite pass",
)

ADMIN = "demo-smoke-admin-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_shows_indicators_and_alerts_within_a_minute(tmp_path):
    port = free_port()
    env = {**os.environ, "QCPULSE_BOOTSTRAP_TENANT": "H0042", "QCPULSE_BOOTSTRAP_ADMIN_KEY": ADMIN}
    env.pop("QCPULSE_DATABASE_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qcpulse",
            "demo",
            "--port",
            str(port),
            "--speed",
            "120",
            "--db",
            str(tmp_path / "demo.db"),
            "--mllp-port",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    )
    with_data: set[str] = set()
    alerts: list[dict] = []
    v2: list[dict] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (len(with_data) < 3 or not alerts or not v2):
            time.sleep(2)
            try:
                codes = [i["code"] for i in client.get("/api/v1/indicators").json()]
                for code in codes:
                    value = client.get(
                        f"/api/v1/indicators/{code}/value",
                        params={"from": "2020-01-01", "to": "2030-12-31"},
                    ).json()
                    if value["denominator"] > 0:
                        with_data.add(code)
                alerts = client.get("/api/v1/alerts").json()["alerts"]
                v2 = client.get("/api/v1/hl7/messages", params={"status": "AA"}).json()["messages"]
            except httpx.TransportError:
                assert proc.poll() is None, "the demo exited early"
        assert len(with_data) >= 3, f"indicators with data: {sorted(with_data)}"
        assert alerts, "no alert within 90 seconds"
        assert v2, "no HL7 v2 message accepted within 90 seconds"
        assert not client.get("/api/v1/hl7/messages", params={"status": "AE"}).json()["messages"]
        # The bootstrap admin key sees the simulated hospital: it is that tenant.
        assert {a["tenant"] for a in alerts} == {"H0042"}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        client.close()
    assert proc.returncode == 0, output[-2000:]
    assert "reader key" in output and "curl" in output and "MLLP on 127.0.0.1:" in output
    assert "⚑" in output  # at least one alert was received by the built-in sink and shown
    assert "demo stopped" in output
