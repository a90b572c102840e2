"""``qcpulse region create|add-member|key``: the operator's way in, end to end, and the
rules it keeps (a region id is no tenant's; a tenant key is no region key)."""

from __future__ import annotations

import pytest

from qcpulse import cli
from services.regions.models import Region, RegionMember
from services.regions.service import add_member, create_region, create_region_key
from shared.auth import Role, create_key
from shared.errors import ConflictError, NotFoundError, UnprocessableError
from shared.models import ApiKey, Tenant
from tests.conftest import OTHER_TENANT, TENANT
from tests.regions.helpers import CODE, make_region, post_episodes


@pytest.fixture
def cli_env(monkeypatch, settings):
    monkeypatch.setenv("QCPULSE_DATABASE_URL", settings.database_url)
    monkeypatch.delenv("QCPULSE_BOOTSTRAP_TENANT", raising=False)
    monkeypatch.delenv("QCPULSE_BOOTSTRAP_ADMIN_KEY", raising=False)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_create_add_members_and_key_end_to_end(cli_env, app_client, runtime, capsys, tenant_keys):
    post_episodes(app_client, runtime, tenant_keys)
    steps = [
        ["region", "create", "TJ", "--name", "天津市质控中心", "--target-profile", "tianjin-2025"],
        ["region", "add-member", "TJ", "H0001", "--name", "示例医院", "--tenant", TENANT],
        ["region", "add-member", "TJ", "H0002", "--name", "第二医院", "--tenant", OTHER_TENANT],
        ["region", "add-member", "TJ", "H0009", "--name", "联网医院"],
    ]
    for argv in steps:
        assert cli.main(argv) == 0, argv
    capsys.readouterr()
    assert cli.main(["region", "key", "TJ", "--role", "region-reader", "--name", "qc"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("qcp_") and "role region-reader, region TJ" in err
    r = app_client.get(
        f"/api/v1/regions/TJ/indicators/{CODE}/league",
        params={"from": "2026-03"},
        headers=bearer(key),
    )
    assert r.status_code == 200, r.text
    assert [(m["member"], m["numerator"], m["denominator"]) for m in r.json()["members"]] == [
        ("H0001", 3, 4), ("H0002", 1, 3), ("H0009", None, None),
    ]  # fmt: skip
    # A region key is no tenant key.
    assert app_client.get("/api/v1/indicators", headers=bearer(key)).status_code == 403
    with runtime.read() as session:
        assert session.get(Region, "TJ").target_profile == "tianjin-2025"
        assert session.get(RegionMember, ("TJ", "H0009")).tenant_id is None


def test_cli_refusals_exit_2_with_the_reason(cli_env, runtime, capsys):
    assert cli.main(["region", "create", TENANT, "--name", "x"]) == 2
    assert "tenant's id" in capsys.readouterr().err
    assert cli.main(["region", "create", "TJ", "--name", "x", "--target-profile", "nope"]) == 2
    assert "unknown target profile" in capsys.readouterr().err
    assert cli.main(["region", "add-member", "NOPE", "H1", "--name", "x"]) == 2
    assert "no region" in capsys.readouterr().err
    assert cli.main(["region", "key", "NOPE", "--role", "region-reader"]) == 2
    with pytest.raises(SystemExit):  # a tenant role is not offered
        cli.main(["region", "key", "TJ", "--role", "reader"])


def test_keys_create_refuses_a_regions_id(cli_env, runtime, capsys):
    """A tenant key on a region's id would read as the region's: refused, nothing made."""
    assert cli.main(["region", "create", "TJ", "--name", "天津市质控中心"]) == 0
    capsys.readouterr()
    assert cli.main(["keys", "create", "--tenant", "TJ", "--role", "admin"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "is a region's id" in err and "qcpulse region key TJ" in err
    with runtime.read() as session:
        assert session.get(Tenant, "TJ") is None
        assert session.query(ApiKey).filter_by(tenant_id="TJ").count() == 0
    assert cli.main(["keys", "create", "--tenant", "H0042", "--role", "reader"]) == 0


def test_service_rules(runtime):
    with runtime.write() as session:
        create_region(session, "TJ", name="天津")
        with pytest.raises(ConflictError):
            create_region(session, "TJ", name="again")
        with pytest.raises(UnprocessableError):
            create_region(session, "bad id", name="x")
        with pytest.raises(UnprocessableError):
            create_region(session, "TZ", name="x", timezone="Mars/Olympus")
        add_member(session, "TJ", "H0001", name="a", tenant_id=TENANT)
        with pytest.raises(ConflictError):  # the same tenant twice
            add_member(session, "TJ", "other", name="a", tenant_id=TENANT)
        with pytest.raises(ConflictError):
            add_member(session, "TJ", "H0001", name="a")
        with pytest.raises(NotFoundError):
            add_member(session, "TJ", "H0005", name="a", tenant_id="H0005")
        with pytest.raises(UnprocessableError):
            create_region_key(session, "TJ", Role.ADMIN)
        with pytest.raises(ValueError, match="belongs to a region"):
            create_key(session, "TJ", Role.REGION_READER)


def test_region_key_expires_and_revokes_like_any_key(app_client, runtime):
    from datetime import timedelta

    from shared.models import ApiKey

    secret = make_region(runtime)
    url = "/api/v1/regions/TJ-HX"
    assert app_client.get(url, headers=bearer(secret)).status_code == 200
    with runtime.write() as session:
        _, expiring = create_region_key(
            session, "TJ-HX", expires_at=runtime.clock.now() + timedelta(minutes=1)
        )
    assert app_client.get(url, headers=bearer(expiring)).status_code == 200
    runtime.clock.advance(timedelta(minutes=2))  # type: ignore[attr-defined]
    assert app_client.get(url, headers=bearer(expiring)).status_code == 401
    with runtime.write() as session:
        for key in session.query(ApiKey).filter(ApiKey.tenant_id == "TJ-HX"):
            key.revoked_at = runtime.clock.now()
    assert app_client.get(url, headers=bearer(secret)).status_code == 401
