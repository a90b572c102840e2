"""Webhook targets: forbidden addresses refused at subscription time (400) and again at
delivery time after resolution, with the connection made to the vetted address."""

from __future__ import annotations

import ipaddress

import pytest

from services.alerts.delivery import make_client
from services.alerts.models import DeliveryStatus
from services.alerts.targets import (
    Guard,
    TargetRefusedError,
    check_host,
    literal_address,
    refusal,
)
from services.alerts.worker import deliver_due_once
from tests.alerts.conftest import attempts, deliveries, raise_test_alert, subscribe

ALWAYS_REFUSED = [
    "169.254.169.254",  # cloud metadata
    "169.254.170.2",
    "100.100.100.200",  # Alibaba Cloud metadata
    "fd00:ec2::254",  # AWS IMDS, IPv6
    "169.254.1.1",  # link-local
    "fe80::1",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "ff02::1",
    "0.0.0.0",  # unspecified
    "0.1.2.3",
    "::",
    "255.255.255.255",  # broadcast
    "240.0.0.1",  # reserved
    "::ffff:169.254.169.254",  # IPv4-mapped
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
]
PRIVATE = ["127.0.0.1", "127.1.2.3", "::1", "10.1.2.3", "192.168.0.9", "172.16.0.1", "fc00::5"]


@pytest.mark.parametrize("address", ALWAYS_REFUSED)
@pytest.mark.parametrize("allow_private", [True, False])
def test_always_refused(address, allow_private):
    assert refusal(ipaddress.ip_address(address), allow_private=allow_private)


@pytest.mark.parametrize("address", PRIVATE)
def test_private_and_loopback_follow_the_setting(address):
    assert refusal(ipaddress.ip_address(address), allow_private=True) is None
    assert refusal(ipaddress.ip_address(address), allow_private=False)


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::1111"])
def test_public_addresses_pass(address):
    assert refusal(ipaddress.ip_address(address), allow_private=False) is None


@pytest.mark.parametrize(
    ("host", "meant"),
    [
        ("2852039166", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("[::1]", "::1"),
        ("hooks.example.org", None),
        ("cafe.be", None),
    ],
)
def test_numeric_hosts_are_read_as_resolvers_read_them(host, meant):
    found = literal_address(host)
    assert (str(found) if found else None) == meant


@pytest.mark.parametrize(
    "host", ["metadata.google.internal", "METADATA.google.internal.", "metadata", "2852039166"]
)
def test_metadata_names_are_refused_as_written(host):
    with pytest.raises(TargetRefusedError):
        check_host(host, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/latest/meta-data",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://100.100.100.200/latest/meta-data",
        "http://169.254.10.10:8080/x",
        "http://[fe80::1]/x",
        "http://224.0.0.251/x",
        "http://0.0.0.0:8000/x",
        "http://[::]/x",
        "http://255.255.255.255/x",
        "http://2852039166/x",
        "http://[::ffff:169.254.169.254]/x",
    ],
)
def test_subscription_to_a_forbidden_target_is_a_400_problem(app_client, admin_headers, url):
    assert app_client.app.state.runtime.settings.webhook_allow_private  # even so
    body = {"url": url, "events": ["*"]}
    r = app_client.post("/api/v1/subscriptions", json=body, headers=admin_headers)
    assert r.status_code == 400, (url, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert "receiver refused" in r.json()["detail"]


def test_patch_to_a_forbidden_target_is_refused(app_client, admin_headers, receiver):
    sub = subscribe(app_client, admin_headers, receiver)
    r = app_client.patch(
        f"/api/v1/subscriptions/{sub['id']}",
        json={"url": "http://169.254.169.254/"},
        headers=admin_headers,
    )
    assert r.status_code == 400
    got = app_client.get(f"/api/v1/subscriptions/{sub['id']}", headers=admin_headers).json()
    assert got["url"] == receiver.url


def test_loopback_allowed_by_the_setting(app_client, admin_headers, receiver):
    subscribe(app_client, admin_headers, receiver)  # 127.0.0.1, the default setting


class StubResolver:
    """DNS for names that exist only in the test."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.answers:
            raise OSError(f"no such name {host}")
        return self.answers[host]


def named_url(receiver, name: str) -> str:
    return receiver.url.replace("127.0.0.1", name)


def deliver_with(runtime, resolver) -> int:
    client = make_client(runtime.settings, resolver=resolver)
    try:
        return deliver_due_once(runtime, client=client)
    finally:
        client.close()


def test_a_name_is_resolved_once_and_the_vetted_address_is_connected_to(
    app_client, admin_headers, runtime, receiver
):
    # The name exists only in the stub: reaching the receiver proves the socket went
    # to the address the guard resolved and checked, with the name kept in Host.
    subscribe(app_client, admin_headers, receiver, url=named_url(receiver, "hooks.hospital.test"))
    resolver = StubResolver({"hooks.hospital.test": ["127.0.0.1"]})
    raise_test_alert(runtime)
    assert deliver_with(runtime, resolver) == 1
    [got] = receiver.wait_for(1)
    assert got.verified
    assert got.headers["host"].startswith("hooks.hospital.test:")
    assert resolver.calls == ["hooks.hospital.test"]
    [delivery] = deliveries(runtime)
    assert delivery.status == DeliveryStatus.DELIVERED


@pytest.mark.parametrize(
    "answer",
    [["169.254.169.254"], ["127.0.0.1", "169.254.169.254"], ["::ffff:169.254.169.254"]],
    ids=["metadata", "one-of-several", "mapped"],
)
def test_a_name_that_resolves_to_a_forbidden_address_is_dead_at_once(
    app_client, admin_headers, runtime, receiver, answer
):
    # Accepted at subscription time (a name is not resolved there)…
    subscribe(app_client, admin_headers, receiver, url=named_url(receiver, "rebind.attacker.test"))
    raise_test_alert(runtime)
    # …refused when the name resolves to it, before any connection.
    assert deliver_with(runtime, StubResolver({"rebind.attacker.test": answer})) == 1
    assert receiver.received == []
    [delivery] = deliveries(runtime)
    assert delivery.status == DeliveryStatus.DEAD
    [attempt] = attempts(runtime, delivery.id)
    assert "receiver refused" in attempt.error
    assert "169.254.169.254" in attempt.error
    assert "rebind.attacker.test" in attempt.error


def test_dns_that_changes_after_the_check_is_not_asked_again(
    app_client, admin_headers, runtime, receiver
):
    """A rebinding resolver answers a good address first, then the metadata address.
    One resolution per connection: the connection uses the first answer; the next
    connection (a new client) sees the second and is refused."""

    class Rebinding(StubResolver):
        def __call__(self, host, port):
            self.calls.append(host)
            return ["127.0.0.1"] if len(self.calls) == 1 else ["169.254.169.254"]

    subscribe(app_client, admin_headers, receiver, url=named_url(receiver, "rebind.test"))
    resolver = Rebinding({})
    raise_test_alert(runtime, key="e1")
    assert deliver_with(runtime, resolver) == 1
    assert len(receiver.wait_for(1)) == 1
    assert resolver.calls == ["rebind.test"]
    raise_test_alert(runtime, key="e2")
    assert deliver_with(runtime, resolver) == 1
    assert len(receiver.received) == 1
    statuses = sorted(d.status for d in deliveries(runtime))
    assert statuses == [DeliveryStatus.DEAD, DeliveryStatus.DELIVERED]


def test_an_unresolvable_name_is_retried(app_client, admin_headers, runtime, receiver):
    subscribe(app_client, admin_headers, receiver, url=named_url(receiver, "gone.test"))
    raise_test_alert(runtime)
    assert deliver_with(runtime, StubResolver({})) == 1
    [delivery] = deliveries(runtime)
    assert delivery.status == DeliveryStatus.PENDING
    assert "cannot resolve gone.test" in attempts(runtime, delivery.id)[0].error


def test_loopback_refused_at_delivery_when_the_setting_forbids_it(
    app_client, admin_headers, runtime, receiver
):
    subscribe(app_client, admin_headers, receiver, url=named_url(receiver, "localhost"))
    runtime.settings.webhook_allow_private = False  # changed after the subscription
    raise_test_alert(runtime)
    assert deliver_with(runtime, StubResolver({"localhost": ["127.0.0.1"]})) == 1
    assert receiver.received == []
    [delivery] = deliveries(runtime)
    assert delivery.status == DeliveryStatus.DEAD
    assert "loopback" in attempts(runtime, delivery.id)[0].error


def test_the_default_client_guards_ip_literals_too(app_client, admin_headers, runtime, receiver):
    """A row that points at a forbidden literal (written before the guard existed) is
    refused by the client the worker uses, with the system resolver."""
    from services.alerts.models import Subscription

    sub = subscribe(app_client, admin_headers, receiver)
    with runtime.write() as session:
        session.get(Subscription, sub["id"]).url = "http://169.254.169.254/latest/meta-data"
    raise_test_alert(runtime)
    assert deliver_due_once(runtime) == 1
    [delivery] = deliveries(runtime)
    assert delivery.status == DeliveryStatus.DEAD
    assert "cloud metadata" in attempts(runtime, delivery.id)[0].error


def test_guard_vets_every_address():
    guard = Guard(allow_private=True, resolver=StubResolver({"a.test": ["10.0.0.1", "fe80::1"]}))
    with pytest.raises(TargetRefusedError, match="link-local"):
        guard.vet("a.test", 443)
    ok = Guard(allow_private=True, resolver=StubResolver({"b.test": ["10.0.0.1", "10.0.0.2"]}))
    assert [str(a) for a in ok.vet("b.test", 443)] == ["10.0.0.1", "10.0.0.2"]
