"""Keys, roles and the bootstrap: 401 without a key, 403 for the wrong role, keys
stored hashed, the bootstrap idempotent, ``qcpulse keys create`` printing a working key."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from qcpulse import cli
from qcpulse.app import create_app, prepare
from shared.auth import Role, authenticate, bootstrap, create_key, hash_key
from shared.clock import utcnow
from shared.errors import ForbiddenError, UnauthorizedError
from shared.models import ApiKey, Tenant
from shared.runtime import Runtime
from tests.conftest import OTHER_TENANT, TENANT
from tests.fhir_factories import patient


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(r, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()


class TestUnauthorized:
    @pytest.mark.parametrize(
        "header", [None, "", "Bearer", "Bearer ", "Basic abc", "Bearer qcp_not-a-real-key"]
    )
    def test_fhir_without_a_valid_key_is_401(self, app_client, header):
        headers = {} if header is None else {"Authorization": header}
        r = app_client.get("/fhir/Patient/p1", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["resourceType"] == "OperationOutcome"
        assert r.json()["issue"][0]["code"] == "login"

    def test_writes_without_a_key_change_nothing(self, app_client, runtime):
        r = app_client.put("/fhir/Patient/p1", json=patient())
        assert r.status_code == 401
        r = app_client.post("/fhir", json={"resourceType": "Bundle", "type": "batch"})
        assert r.status_code == 401
        with runtime.read() as session:
            from services.ingest.models import StoredResource

            assert session.scalar(sa.select(sa.func.count()).select_from(StoredResource)) == 0

    def test_api_without_a_key_is_problem_json(self, app_client):
        assert_problem(app_client.get("/api/v1/data-quality"), 401)
        assert_problem(app_client.post("/api/v1/keys", json={"role": "reader"}), 401)

    def test_revoked_key_is_401(self, app_client, runtime):
        with runtime.write() as session:
            row, secret = create_key(session, TENANT, Role.INGEST)
        assert app_client.get("/fhir/Patient/p1", headers=bearer(secret)).status_code == 404
        with runtime.write() as session:
            session.get(ApiKey, row.id).revoked_at = utcnow()
        assert app_client.get("/fhir/Patient/p1", headers=bearer(secret)).status_code == 401

    def test_open_endpoints(self, app_client):
        for path in ("/health", "/ready", "/metrics", "/fhir/metadata"):
            assert app_client.get(path).status_code == 200, path


class TestRoles:
    def test_reader_cannot_write_fhir(self, app_client, reader_headers):
        r = app_client.put("/fhir/Patient/p1", json=patient(), headers=reader_headers)
        assert r.status_code == 403
        assert r.json()["issue"][0]["code"] == "forbidden"
        r = app_client.post(
            "/fhir", json={"resourceType": "Bundle", "type": "batch"}, headers=reader_headers
        )
        assert r.status_code == 403
        assert app_client.delete("/fhir/Patient/p1", headers=reader_headers).status_code == 403

    def test_ingest_cannot_read_the_api_or_manage_keys(self, app_client, ingest_headers):
        assert_problem(app_client.get("/api/v1/data-quality", headers=ingest_headers), 403)
        assert_problem(
            app_client.post("/api/v1/keys", json={"role": "reader"}, headers=ingest_headers), 403
        )

    def test_reader_cannot_manage_keys(self, app_client, reader_headers):
        assert_problem(
            app_client.post("/api/v1/keys", json={"role": "reader"}, headers=reader_headers), 403
        )

    def test_admin_can_do_everything(self, app_client, admin_headers):
        assert (
            app_client.put("/fhir/Patient/p1", json=patient(), headers=admin_headers).status_code
            == 201
        )
        assert app_client.get("/fhir/Patient/p1", headers=admin_headers).status_code == 200
        assert app_client.get("/api/v1/data-quality", headers=admin_headers).status_code == 200


class TestKeysApi:
    def test_admin_creates_a_working_key_shown_once(self, app_client, admin_headers, runtime):
        r = app_client.post(
            "/api/v1/keys", json={"role": "ingest", "name": "mirth"}, headers=admin_headers
        )
        assert r.status_code == 201
        body = r.json()
        assert body["role"] == "ingest"
        assert body["tenant"] == TENANT
        assert body["key"].startswith("qcp_")
        assert len(body["key"]) == 47
        with runtime.read() as session:
            row = session.get(ApiKey, body["id"])
        assert row.key_hash == hash_key(body["key"]) != body["key"]
        assert row.name == "mirth"

        key = bearer(body["key"])
        assert app_client.put("/fhir/Patient/p1", json=patient(), headers=key).status_code == 201
        assert (
            app_client.post("/api/v1/keys", json={"role": "admin"}, headers=key).status_code == 403
        )

    def test_reader_key_with_departments(self, app_client, admin_headers, runtime):
        r = app_client.post(
            "/api/v1/keys", json={"role": "reader", "departments": ["icu"]}, headers=admin_headers
        )
        assert r.status_code == 201
        assert r.json()["departments"] == ["icu"]
        with runtime.read() as session:
            principal = authenticate(session, f"Bearer {r.json()['key']}")
        assert principal.departments == frozenset({"icu"})
        assert principal.role is Role.READER

    def test_unknown_role_is_422(self, app_client, admin_headers):
        r = app_client.post("/api/v1/keys", json={"role": "root"}, headers=admin_headers)
        assert_problem(r, 422)

    def test_keys_belong_to_the_admins_tenant(self, app_client, runtime):
        from tests.conftest import make_key

        other_admin = bearer(make_key(runtime, Role.ADMIN, OTHER_TENANT))
        r = app_client.post("/api/v1/keys", json={"role": "ingest"}, headers=other_admin)
        assert r.json()["tenant"] == OTHER_TENANT


class TestAuthenticate:
    def test_principal_of_a_key(self, runtime):
        with runtime.write() as session:
            row, secret = create_key(session, TENANT, Role.READER, name="q")
        with runtime.read() as session:
            principal = authenticate(session, f"bearer  {secret} ")
        assert (principal.tenant_id, principal.role, principal.key_id) == (
            TENANT,
            Role.READER,
            row.id,
        )
        principal.require("fhir:read")
        principal.require("api:read")
        with pytest.raises(ForbiddenError):
            principal.require("fhir:write")
        with pytest.raises(ForbiddenError):
            principal.require("admin")

    def test_missing_header(self, runtime):
        with runtime.read() as session, pytest.raises(UnauthorizedError):
            authenticate(session, None)

    def test_key_for_an_unknown_tenant_is_refused(self, runtime):
        with runtime.write() as session, pytest.raises(ForbiddenError):
            create_key(session, "NOPE", Role.ADMIN)

    def test_given_secret_is_registered(self, runtime):
        with runtime.write() as session:
            _, secret = create_key(session, TENANT, Role.INGEST, key="qcp_chosen")
        assert secret == "qcp_chosen"
        with runtime.read() as session:
            assert authenticate(session, "Bearer qcp_chosen").tenant_id == TENANT


class TestBootstrap:
    SECRET = "qcp_bootstrap-secret-for-tests"

    def settings_for(self, settings, tenant="H0100"):
        return settings.model_copy(
            update={"bootstrap_tenant": tenant, "bootstrap_admin_key": SecretStr(self.SECRET)}
        )

    def rows(self, runtime):
        with runtime.read() as session:
            tenants = session.scalars(sa.select(Tenant.id).where(Tenant.id == "H0100")).all()
            keys = session.scalars(
                sa.select(ApiKey).where(ApiKey.key_hash == hash_key(self.SECRET))
            ).all()
        return tenants, keys

    def test_prepare_twice_is_idempotent(self, runtime, settings, clock):
        rt = Runtime(settings=self.settings_for(settings), engine=runtime.engine, clock=clock)
        prepare(rt)
        prepare(rt)
        tenants, keys = self.rows(runtime)
        assert tenants == ["H0100"]
        assert [(k.tenant_id, k.role) for k in keys] == [("H0100", "admin")]

    def test_the_app_bootstraps_on_start_every_start(self, runtime, settings):
        configured = self.settings_for(settings)
        for _ in range(2):
            with TestClient(create_app(configured, run_workers=False)) as client:
                r = client.post(
                    "/api/v1/keys", json={"role": "reader"}, headers=bearer(self.SECRET)
                )
                assert r.status_code == 201
                assert r.json()["tenant"] == "H0100"
        tenants, keys = self.rows(runtime)
        assert len(tenants) == 1
        assert len(keys) == 1

    def test_existing_tenant_is_kept(self, runtime):
        with runtime.write() as session:
            bootstrap(session, TENANT, self.SECRET, timezone="UTC")
        with runtime.read() as session:
            tenant = session.get(Tenant, TENANT)
        assert (tenant.name, tenant.timezone) == ("示例医院", "Asia/Shanghai")

    def test_secret_of_another_tenant_is_refused(self, runtime):
        with runtime.write() as session:
            bootstrap(session, TENANT, self.SECRET, timezone="UTC")
        with runtime.write() as session, pytest.raises(ValueError, match="already used"):
            bootstrap(session, OTHER_TENANT, self.SECRET, timezone="UTC")


class TestCli:
    @pytest.fixture
    def cli_env(self, monkeypatch, settings):
        monkeypatch.setenv("QCPULSE_DATABASE_URL", settings.database_url)
        monkeypatch.delenv("QCPULSE_BOOTSTRAP_TENANT", raising=False)
        monkeypatch.delenv("QCPULSE_BOOTSTRAP_ADMIN_KEY", raising=False)

    def test_keys_create_prints_a_working_key(self, cli_env, app_client, capsys, runtime):
        assert (
            cli.main(
                ["keys", "create", "--tenant", "H0300", "--role", "ingest", "--name", "engine"]
            )
            == 0
        )
        out, err = capsys.readouterr()
        key = out.strip()
        assert key.startswith("qcp_")
        assert "\n" not in key
        assert "role ingest, tenant H0300" in err
        r = app_client.put("/fhir/Patient/p1", json=patient(), headers=bearer(key))
        assert r.status_code == 201
        assert app_client.get("/fhir/Patient/p1", headers=bearer(key)).status_code == 200
        assert app_client.get("/api/v1/data-quality", headers=bearer(key)).status_code == 403
        with runtime.read() as session:
            assert session.get(Tenant, "H0300").timezone == "Asia/Shanghai"

    def test_keys_create_for_an_existing_tenant(self, cli_env, app_client, capsys):
        assert (
            cli.main(
                [
                    "keys",
                    "create",
                    "--tenant",
                    TENANT,
                    "--role",
                    "reader",
                    "--departments",
                    "icu,emergency",
                ]
            )
            == 0
        )
        key = capsys.readouterr().out.strip()
        r = app_client.get("/api/v1/data-quality", headers=bearer(key))
        assert r.status_code == 200

    def test_unknown_role_exits(self, cli_env, capsys):
        with pytest.raises(SystemExit) as exc:
            cli.main(["keys", "create", "--tenant", TENANT, "--role", "root"])
        assert exc.value.code == 2


def test_an_empty_department_list_is_refused_not_read_as_all(app_client, admin_headers):
    r = app_client.post(
        "/api/v1/keys", json={"role": "reader", "departments": []}, headers=admin_headers
    )
    assert r.status_code == 422
