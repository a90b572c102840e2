"""The MLLP listener: ``<VT> message <FS><CR>`` frames over TCP (or TLS), one ACK per
message, on the process's event loop.

Each connection is its own task and each message is applied on a worker thread, so a
slow, idle or garbage-sending peer holds only its own connection. Bounds, each a
setting: the largest message (a longer frame is answered ``AR`` and the connection
closed), the idle time (a connection that sends nothing for that long is closed),
and the number of connections (one more is closed at once). Bytes outside a frame
are not HL7 at all: the connection is closed without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from datetime import timedelta
from functools import partial

import structlog

from services.hl7v2 import parse, service
from services.hl7v2.ack import build_ack, http_ack_code
from services.hl7v2.errors import APPLICATION_INTERNAL_ERROR, V2Issue, V2Rejected
from shared.metrics import MLLP_CONNECTIONS
from shared.runtime import Runtime
from shared.settings import Settings

log = structlog.get_logger(__name__)

START = b"\x0b"
END = b"\x1c\x0d"
#: Between frames some engines send a line end; anything else is garbage.
_BETWEEN_FRAMES = b"\r\n"
_WRITE_TIMEOUT_S = 30.0


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.mllp_tls_cert is None or settings.mllp_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.mllp_tls_cert, settings.mllp_tls_key)
    if settings.mllp_tls_ca is not None:
        context.load_verify_locations(settings.mllp_tls_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Closed(Exception):
    """The connection ends here (idle, garbage, peer gone, too large)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class MllpListener:
    def __init__(
        self,
        runtime: Runtime,
        *,
        host: str,
        port: int,
        max_message_bytes: int,
        idle_timeout: timedelta,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.requested_port = port
        self.max_message_bytes = max_message_bytes
        self.idle_timeout_s = idle_timeout.total_seconds()
        self.max_connections = max_connections
        self.ssl_context = ssl_context
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, runtime: Runtime) -> MllpListener:
        s = runtime.settings
        assert s.mllp_port is not None
        return cls(
            runtime,
            host=s.mllp_host,
            port=s.mllp_port,
            max_message_bytes=s.mllp_max_message_bytes,
            idle_timeout=s.mllp_idle_timeout,
            max_connections=s.mllp_max_connections,
            ssl_context=tls_context(s),
        )

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked the system for a free one)."""
        assert self._server is not None
        assert self._server.sockets
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, self.host, self.requested_port, ssl=self.ssl_context
        )
        log.info("mllp listening", host=self.host, port=self.port, tls=self.ssl_context is not None)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self.connections >= self.max_connections:
            MLLP_CONNECTIONS.labels("refused").inc()
            writer.close()
            return
        self.connections += 1
        if task is not None:
            self._tasks.add(task)
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) else None
        outcome = "closed"
        try:
            buffer = bytearray()
            while True:
                raw = await self._frame(reader, buffer)
                if raw is None:
                    break
                receive = partial(service.receive, self.runtime, raw, transport="mllp", peer=peer)
                answer = await asyncio.get_running_loop().run_in_executor(None, receive)
                if answer.send:
                    await self._send(writer, answer.ack_bytes)
        except _Closed as closed:
            outcome = closed.outcome
            if closed.outcome == "too-large":
                await self._too_large(writer, bytes(buffer[1 : 1 + 4096]))
        except (ConnectionError, asyncio.IncompleteReadError):
            outcome = "reset"
        except asyncio.CancelledError:
            outcome = "shutdown"
        finally:
            MLLP_CONNECTIONS.labels(outcome).inc()
            self.connections -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), self.idle_timeout_s)
        except TimeoutError as exc:
            raise _Closed("idle") from exc
        return chunk

    async def _frame(self, reader: asyncio.StreamReader, buffer: bytearray) -> bytes | None:
        """The next message, or None at a clean end of stream. ``buffer`` keeps what
        was read past a frame for the next one (engines may pipeline)."""
        while True:
            while buffer and buffer[0] in _BETWEEN_FRAMES:
                del buffer[:1]
            if buffer:
                if buffer[:1] != START:
                    raise _Closed("garbage")
                end = buffer.find(END)
                if end >= 0:
                    raw = bytes(buffer[1:end])
                    del buffer[: end + len(END)]
                    return raw
                if len(buffer) - 1 > self.max_message_bytes:
                    raise _Closed("too-large")
            chunk = await self._read(reader)
            if not chunk:
                if buffer:
                    raise _Closed("truncated")
                return None
            buffer += chunk

    async def _send(self, writer: asyncio.StreamWriter, payload: bytes) -> None:
        writer.write(START + payload + END)
        try:
            await asyncio.wait_for(writer.drain(), _WRITE_TIMEOUT_S)
        except TimeoutError as exc:
            raise _Closed("slow-reader") from exc

    async def _too_large(self, writer: asyncio.StreamWriter, head: bytes) -> None:
        """Answer AR to a frame over the limit, from its MSH if that much arrived."""
        try:
            envelope = parse.read_envelope(head)
        except V2Rejected:
            envelope = None
        issue = V2Issue(
            "AR",
            APPLICATION_INTERNAL_ERROR,
            f"message longer than {self.max_message_bytes} bytes; nothing was stored",
        )
        code = http_ack_code(envelope, "AR")
        ack = build_ack(envelope, code, [issue], now=self.runtime.clock.now())
        with contextlib.suppress(Exception):
            await self._send(writer, ack.encode("utf-8"))
