"""Which webhook receivers qcpulse may connect to, checked twice.

A webhook URL is chosen by an admin of a tenant, but the request is sent by the
server, from inside the hospital's (or the cloud's) network: without a guard, a
subscription to ``http://169.254.169.254/latest/meta-data/`` makes qcpulse fetch the
cloud's instance credentials for whoever reads the delivery log.

Decisions:

* **Always refused**, whatever ``QCPULSE_WEBHOOK_ALLOW_PRIVATE`` says: unspecified
  (``0.0.0.0/8``, ``::``), link-local (``169.254.0.0/16``, ``fe80::/10``), cloud
  metadata addresses (``169.254.169.254``, ``169.254.170.2``, ``fd00:ec2::254``,
  Alibaba Cloud's ``100.100.100.200``) and names (``metadata.google.internal`` …),
  multicast (``224.0.0.0/4``, ``ff00::/8``), broadcast and the reserved ``240.0.0.0/4``.
  IPv4 inside IPv6 (``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) is
  judged as the IPv4 address it carries.
* **Refused unless ``webhook_allow_private``** (default true, for on-premises
  receivers, tests and the demo): loopback and every other non-global address
  (RFC 1918, ``fc00::/7``, ``100.64.0.0/10`` …), and ``localhost`` names.
* **At subscription time** (create, and PATCH of ``url``) the URL's host is judged as
  written: an IP literal (also the numeric forms ``2852039166`` or ``0xa9.254.169.254``
  that resolvers accept) or a known metadata name. Names are not resolved there: a
  receiver's name may not resolve yet, and DNS can change after the check anyway.
* **At delivery time** the name is resolved once, *every* address it resolves to is
  judged (one forbidden address refuses the target), and the connection is made to a
  vetted address: the guard sits in the HTTP client's network backend
  (:class:`GuardedBackend`), below TLS, so the ``Host`` header, SNI and certificate
  check still use the name, while no second, unchecked resolution happens (no DNS
  rebinding). A refused target is a permanent failure: the delivery is dead-lettered
  with the reason.
* The delivery client ignores ``HTTP(S)_PROXY`` (``trust_env=False``): through a
  proxy the address actually reached could not be checked.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Resolves a host name to IP address strings (``socket.getaddrinfo`` by default).
Resolver = Callable[[str, int], Sequence[str]]

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Huawei Cloud, Oracle …
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.0.23",  # Tencent Cloud
        "100.100.100.200",  # Alibaba Cloud (in 100.64.0.0/10: not link-local)
        "fd00:ec2::254",  # AWS IMDS over IPv6 (a unique-local address)
    )
)
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "metadata.tencentyun.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
_UNSPECIFIED_V4 = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_V4 = re.compile(r"[0-9a-fA-FxX.]+")


class TargetRefusedError(Exception):
    """The receiver's address is not one qcpulse connects to."""


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why a connection to ``address`` is refused, or None when it is allowed."""
    if isinstance(address, ipaddress.IPv6Address) and (inner := _embedded_v4(address)):
        reason = refusal(inner, allow_private=allow_private)
        return f"{reason} (inside {address})" if reason else None
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if address.is_unspecified or (
        isinstance(address, ipaddress.IPv4Address) and address in _UNSPECIFIED_V4
    ):
        return f"{address} is an unspecified address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address.is_reserved:
        return f"{address} is a broadcast or reserved address"
    if allow_private:
        return None
    if address.is_loopback:
        return f"{address} is a loopback address (QCPULSE_WEBHOOK_ALLOW_PRIVATE is false)"
    if not address.is_global:
        return f"{address} is a private address (QCPULSE_WEBHOOK_ALLOW_PRIVATE is false)"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a host names by itself: an IP literal, or an IPv4 number in one of
    the forms ``inet_aton`` accepts (``2852039166``, ``0xa9fea9fe``, ``169.254.43518``)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_V4.fullmatch(host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_host(host: str, *, allow_private: bool) -> None:
    """The subscription-time check of a URL's host as written (no DNS)."""
    name = host.strip("[]").rstrip(".").lower()
    if name in METADATA_NAMES:
        raise TargetRefusedError(f"{name} is a cloud metadata service")
    if name == "localhost" or name.endswith(".localhost"):
        if not allow_private:
            raise TargetRefusedError(
                f"{name} is a loopback name (QCPULSE_WEBHOOK_ALLOW_PRIVATE is false)"
            )
        return
    address = literal_address(name)
    if address is not None and (reason := refusal(address, allow_private=allow_private)):
        raise TargetRefusedError(reason)


def check_url(url: str, *, allow_private: bool) -> None:
    check_host(httpx.URL(url).host, allow_private=allow_private)


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Guard:
    """Resolves a receiver's host once and says which addresses may be connected to."""

    def __init__(self, *, allow_private: bool, resolver: Resolver | None = None) -> None:
        self.allow_private = allow_private
        self.resolver = resolver or system_resolver

    def vet(self, host: str, port: int) -> list[IPAddress]:
        check_host(host, allow_private=self.allow_private)
        literal = literal_address(host)
        if literal is not None:
            found: Iterable[str] = [str(literal)]
        else:
            try:
                found = self.resolver(host, port)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = [ipaddress.ip_address(str(a).split("%", 1)[0]) for a in found]
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            if reason := refusal(address, allow_private=self.allow_private):
                shown = "" if literal is not None else f" ({host} resolves to it)"
                raise TargetRefusedError(reason + shown)
        return addresses


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend that connects only to addresses the guard vetted:
    one resolution, one check, and the socket goes to that address."""

    def __init__(self, guard: Guard, inner: httpcore.NetworkBackend | None = None) -> None:
        self.guard = guard
        self.inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in self.guard.vet(host, port):
            try:
                return self.inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise TargetRefusedError("webhooks are not sent to Unix sockets")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with :class:`GuardedBackend` under its connection pool."""

    def __init__(self, guard: Guard, *, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        ssl_context = httpx.create_ssl_context(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(guard),
        )
