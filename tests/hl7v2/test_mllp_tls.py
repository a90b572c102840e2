"""The listener over TLS, in process, on the suite's database: a client that trusts the
certificate gets its ACK; with a CA configured, a client without a certificate is
refused at the handshake."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from services.hl7v2 import MllpListener
from services.hl7v2.models import HL7Source
from tests.conftest import TENANT
from tests.hl7v2.helpers import ack_code, read_frame, stemi_adt

VT, FS_CR = b"\x0b", b"\x1c\r"


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def serve(runtime, context: ssl.SSLContext) -> Iterator[int]:
    loop = asyncio.new_event_loop()
    listener = MllpListener(
        runtime,
        host="127.0.0.1",
        port=0,
        max_message_bytes=65536,
        idle_timeout=timedelta(seconds=30),
        max_connections=10,
        ssl_context=context,
    )
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(listener.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield listener.port
    finally:
        asyncio.run_coroutine_threadsafe(listener.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture
def certs(tmp_path):
    return make_cert(tmp_path, "server"), make_cert(tmp_path, "client")


@pytest.fixture
def registered(runtime):
    with runtime.write() as session:
        session.add(
            HL7Source(id="tls", tenant_id=TENANT, facility="SHXH", application="", networks=[])
        )


def exchange(port: int, context: ssl.SSLContext, raw: bytes) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as plain,
        context.wrap_socket(plain, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(VT + raw + FS_CR)
        return read_frame(sock)


def test_tls_listener_acknowledges_a_trusting_client(runtime, registered, certs):
    (server_cert, server_key), _ = certs
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_cert, server_key)
    for port in serve(runtime, context):
        client = ssl.create_default_context(cafile=str(server_cert))
        assert ack_code(exchange(port, client, stemi_adt())[1:-2]) == "AA"


def test_client_certificate_required_when_a_ca_is_set(runtime, registered, certs):
    (server_cert, server_key), (client_cert, client_key) = certs
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_cert, server_key)
    context.load_verify_locations(client_cert)
    context.verify_mode = ssl.CERT_REQUIRED
    for port in serve(runtime, context):
        anonymous = ssl.create_default_context(cafile=str(server_cert))
        # TLS 1.3 reports a missing client certificate after the client's handshake:
        # either the exchange fails, or the server closes without an answer.
        try:
            answer = exchange(port, anonymous, stemi_adt("anon"))
        except (ssl.SSLError, ConnectionError):
            answer = b""
        assert answer == b""
        known = ssl.create_default_context(cafile=str(server_cert))
        known.load_cert_chain(client_cert, client_key)
        assert ack_code(exchange(port, known, stemi_adt("known"))[1:-2]) == "AA"
