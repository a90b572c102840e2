"""``qcpulse serve`` with the MLLP listener on, driven by python-hl7's own MLLP client
(code no one here wrote) and by raw sockets for what no client would send. Runs on
the suite's database: SQLite, and PostgreSQL in CI's second pass."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hl7.client import MLLPClient

from shared.secretbox import new_key as new_secret_key
from tests.conftest import _empty
from tests.hl7v2.helpers import PID, ack_code, message, msh, pci_message, read_frame, seg, stemi_adt
from tests.hl7v2.test_service import critical_oru

ADMIN = "hl7-server-admin-key"
TENANT = "H0001"
VT, FS_CR = b"\x0b", b"\x1c\r"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    http: httpx.Client
    mllp_port: int
    proc: subprocess.Popen[str]
    args: list[str]
    env: dict[str, str]
    log: Path

    def start(self) -> None:
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=out, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.http.get("/health").status_code == 200:
                    with socket.create_connection(("127.0.0.1", self.mllp_port), timeout=1):
                        return
            except (httpx.TransportError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError("server did not start: " + self.log.read_text()[-3000:])

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.http.get(path, params=params)


@pytest.fixture
def server(engine, tmp_path) -> Iterator[Server]:
    http_port, mllp_port = free_port(), free_port()
    env = {
        **os.environ,
        "QCPULSE_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "QCPULSE_BOOTSTRAP_TENANT": TENANT,
        "QCPULSE_BOOTSTRAP_ADMIN_KEY": ADMIN,
        "QCPULSE_MLLP_PORT": str(mllp_port),
        "QCPULSE_MLLP_MAX_MESSAGE_BYTES": "65536",
        "QCPULSE_MLLP_IDLE_TIMEOUT": "PT60S",
        "QCPULSE_SECRET_KEY": new_secret_key(),  # serve requires one
    }
    args = [sys.executable, "-m", "qcpulse", "serve", "--port", str(http_port), "--workers", "1"]
    http = httpx.Client(
        base_url=f"http://127.0.0.1:{http_port}",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=30,
    )
    srv = Server(http, mllp_port, None, args, env, tmp_path / "server.log")  # type: ignore[arg-type]
    srv.start()
    r = http.post("/api/v1/hl7/sources", json={"facility": "SHXH", "application": None})
    assert r.status_code == 201, r.text
    try:
        yield srv
    finally:
        if srv.proc.poll() is None:
            srv.proc.send_signal(signal.SIGINT)
            try:
                srv.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                srv.proc.kill()
        http.close()
        _empty(engine)


def send_raw(port: int, payload: bytes, *, timeout: float = 10) -> bytes:
    """Send bytes as they are; read until the peer answers one frame or closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return read_frame(sock)


def messages(server: Server, status: str | None = None) -> list[dict]:
    params = {"limit": "200", **({"status": status} if status else {})}
    r = server.get("/api/v1/hl7/messages", **params)
    assert r.status_code == 200, r.text
    return r.json()["messages"]


def value(server: Server, code: str, expected: tuple[int, int, int]) -> tuple[int, int, int]:
    """The indicator's (numerator, denominator, pending) once it reads ``expected``, or
    what it reads after 30 s: the evaluator runs behind the ACK."""
    deadline = time.monotonic() + 30
    got = (-1, -1, -1)
    while time.monotonic() < deadline and got != expected:
        body = server.get(
            f"/api/v1/indicators/{code}/value", **{"from": "2026-03-01", "to": "2026-03-31"}
        ).json()
        got = (body["numerator"], body["denominator"], body["pending"])
        time.sleep(0.2)
    return got


def test_stemi_visit_over_mllp_with_python_hl7_client(server):
    with MLLPClient("127.0.0.1", server.mllp_port) as client:
        for raw in (stemi_adt(), pci_message(), critical_oru()):
            assert ack_code(client.send_message(raw).strip(b"\x0b\x1c\r")) == "AA"
    assert value(server, "PIT-2026-23", (1, 1, 0)) == (1, 1, 0)
    # The critical CT was issued on 2 March with no notification: decided, not met.
    assert value(server, "PIT-2026-31", (0, 1, 0)) == (0, 1, 0)
    assert [m["status"] for m in messages(server)] == ["AA", "AA", "AA"]


def test_mllp_send_command_line_tool(server, tmp_path):
    """python-hl7's own ``mllp_send`` command, as an engineer would try the listener."""
    path = tmp_path / "adt.hl7"
    # A file of messages as an engineer keeps them: one segment per line.
    path.write_bytes((stemi_adt() + pci_message()).replace(b"\r", b"\n"))
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("mllp_send")),
            "--loose",
            "--port",
            str(server.mllp_port),
            "--file",
            str(path),
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "MSA|AA|m1" in out.stdout and "MSA|AA|m3" in out.stdout, out
    assert value(server, "PIT-2026-23", (1, 1, 0)) == (1, 1, 0)


BAD_INPUT = {
    # name: (bytes on the wire, expected MSA-1 or None for a closed connection)
    "garbage outside a frame": (b"GET / HTTP/1.1\r\n\r\n", None),
    "missing MSH": (VT + b"PID|1||X^^^^MR\r" + FS_CR, "AR"),
    "wrong delimiters": (VT + b"MSH|^~|HIS|SHXH|Q|Q|20260302||ADT^A04|w1|P|2.5\r" + FS_CR, "AR"),
    "invalid date": (
        VT + message(msh("ADT^A04^ADT_A01", "d1", time="2026-03-02"), PID) + FS_CR,
        "AE",
    ),
    "invalid date in a field": (
        VT
        + message(
            msh("ADT^A04^ADT_A01", "d2"),
            PID,
            seg("PV1", "1", "E", *[""] * 16, "e1", *[""] * 24, "20261302"),
        )
        + FS_CR,
        "AE",
    ),
    "unknown segment": (
        VT + message(msh("ADT^A04^ADT_A01", "u1"), PID, "XYZ|1", seg("PV1", "1", "E")) + FS_CR,
        "AE",
    ),
    "non-UTF-8 under UTF-8": (
        VT
        + "\r".join(
            [msh("ADT^A04^ADT_A01", "c1"), PID, seg("PV1", "1", "E", *[""] * 16, "e1")]
        ).encode("gb18030")
        + FS_CR,
        "AE",
    ),
    "oversized": (
        VT + message(msh("ADT^A04^ADT_A01", "big"), PID) + b"NTE|1||" + b"x" * 70000,
        "AR",
    ),
}


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_answers_and_stores_nothing(server, name):
    payload, expected = BAD_INPUT[name]
    answer = send_raw(server.mllp_port, payload)
    if expected is None:
        assert answer == b""
    else:
        assert answer.startswith(VT) and answer.endswith(FS_CR), answer
        assert ack_code(answer[1:-2]) == expected, answer
    assert server.get("/fhir/Patient/MRN0001").status_code == 404
    assert server.get("/fhir/Encounter/e1").status_code == 404
    # The listener still serves the next sender.
    with MLLPClient("127.0.0.1", server.mllp_port) as client:
        assert ack_code(client.send_message(stemi_adt()).strip(b"\x0b\x1c\r")) == "AA"


def test_truncated_frame_stores_nothing(server):
    raw = stemi_adt()
    with socket.create_connection(("127.0.0.1", server.mllp_port)) as sock:
        sock.sendall(VT + raw[: len(raw) // 2])
    time.sleep(0.5)
    assert messages(server) == []
    assert server.get("/fhir/Patient/MRN0001").status_code == 404


def test_500_idle_connections_do_not_stall_a_sender(server):
    idle = [socket.create_connection(("127.0.0.1", server.mllp_port)) for _ in range(500)]
    try:
        for sock in idle[:250]:
            sock.sendall(VT + b"MSH|^~\\&|HIS|SHXH")  # half a frame, then nothing
        started = time.monotonic()
        with MLLPClient("127.0.0.1", server.mllp_port) as client:
            assert ack_code(client.send_message(stemi_adt()).strip(b"\x0b\x1c\r")) == "AA"
        assert time.monotonic() - started < 30
    finally:
        for sock in idle:
            sock.close()


def test_kill_9_loses_no_acknowledged_message(server):
    acknowledged: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        try:
            with MLLPClient("127.0.0.1", server.mllp_port) as client:
                for n in range(100000):
                    if stop.is_set():
                        return
                    visit = f"k{n}"
                    raw = message(
                        msh("ADT^A04^ADT_A01", f"k{n}"),
                        PID,
                        seg("PV1", "1", "E", *[""] * 7, "emergency^急诊科", *[""] * 8, visit),
                    )
                    answer = client.send_message(raw)
                    if ack_code(answer.strip(b"\x0b\x1c\r")) == "AA":
                        acknowledged.append(visit)
        except (OSError, StopIteration, IndexError):
            return  # the server died under us

    thread = threading.Thread(target=stream)
    thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    stop.set()
    thread.join(timeout=30)
    assert len(acknowledged) >= 20
    server.start()
    missing = [v for v in acknowledged if server.get(f"/fhir/Encounter/{v}").status_code != 200]
    assert missing == []
