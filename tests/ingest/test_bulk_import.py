"""Bulk import (``POST /fhir/$import``, ``qcpulse import``): stored before the 202,
applied as PUTs would be, bad lines reported by number, resumable after a crash
without applying a line twice, and equal to a recomputation afterwards."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from qcpulse import cli
from qcpulse.app import create_app
from qcpulse.synth import HospitalConfig, generate
from services.indicators.maintenance import verify
from services.ingest import bulk
from services.ingest.models import (
    EpisodeRow,
    FactRow,
    ImportChunkRow,
    ImportErrorRow,
    ImportJobRow,
    ResourceVersion,
    StoredResource,
)
from shared.models import OutboxEvent
from shared.runtime import Runtime
from tests.conftest import OTHER_TENANT, TENANT
from tests.fhir_factories import condition, encounter, patient

JSON = dict[str, Any]
NDJSON = {"Content-Type": "application/fhir+ndjson"}
ROOT = Path(__file__).resolve().parents[2]


def ndjson(*resources: JSON | str) -> bytes:
    return b"".join(
        (r.encode() if isinstance(r, str) else orjson.dumps(r)) + b"\n" for r in resources
    )


def synthetic_resources(episodes: int = 40, days: float = 4, seed: int = 5) -> list[JSON]:
    """The PUT entries of a synthetic stream, in the order they were sent."""
    config = HospitalConfig.for_episodes(episodes, days, tenant=TENANT)
    start = datetime(2026, 2, 20, tzinfo=ZoneInfo("Asia/Shanghai"))
    return [
        e["resource"]
        for send in generate(config, start=start, days=days, seed=seed)
        for e in send.bundle.get("entry") or ()
        if e["request"]["method"] == "PUT"
    ]


def kick_off(client: TestClient, headers: dict[str, str], body: bytes, **extra: str) -> str:
    response = client.post("/fhir/$import", content=body, headers={**headers, **NDJSON, **extra})
    assert response.status_code == 202, response.text
    location = response.headers["Content-Location"]
    assert location.startswith("/fhir/$import-status/")
    return location


def run_all(runtime: Runtime) -> None:
    runner = bulk.ImportRunner(runtime)
    while runner.run_once():
        pass


def count(runtime: Runtime, model: Any, *where: Any) -> int:
    with runtime.read() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0


def store_rows(runtime: Runtime, tenant: str) -> dict[str, list[tuple[Any, ...]]]:
    """A tenant's resources, versions, episodes, facts and outbox keys, tenant-free."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with runtime.read() as session:
        for model in (StoredResource, ResourceVersion, EpisodeRow, FactRow):
            table = model.__table__
            columns = [c for c in table.columns if c.name != "tenant_id"]
            rows = session.execute(sa.select(*columns).where(table.c.tenant_id == tenant))
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
        out["outbox"] = sorted(
            (r,)
            for r in session.scalars(
                sa.select(OutboxEvent.key).where(
                    OutboxEvent.tenant_id == tenant, OutboxEvent.topic == "episode.changed"
                )
            )
        )
    return out


def no_jobs(runtime: Runtime) -> bool:
    return all(count(runtime, m) == 0 for m in (ImportJobRow, ImportChunkRow, ImportErrorRow))


class TestKickOffAndStatus:
    def test_accepted_then_running_then_a_summary(self, app_client, ingest_headers, runtime):
        body = ndjson(patient(), encounter("e1"), condition("c1", "e1"))
        location = kick_off(app_client, ingest_headers, body)
        # Stored before the 202, not applied yet: no worker runs in this app.
        assert count(runtime, ImportChunkRow) == 1
        waiting = app_client.get(location, headers=ingest_headers)
        assert waiting.status_code == 202
        assert waiting.headers["X-Progress"] == "queued: 0 of 3 lines (0%)"
        assert app_client.get("/fhir/Encounter/e1", headers=ingest_headers).status_code == 404

        run_all(runtime)
        done = app_client.get(location, headers=ingest_headers)
        assert done.status_code == 200
        summary = done.json()
        assert {k: summary[k] for k in ("lines", "applied", "unchanged", "errors")} == {
            "lines": 3,
            "applied": 3,
            "unchanged": 0,
            "errors": [],
        }
        assert summary["status"] == "completed"
        stored = app_client.get("/fhir/Encounter/e1", headers=ingest_headers)
        assert stored.status_code == 200 and stored.json()["meta"]["versionId"] == "1"
        assert count(runtime, ImportChunkRow) == 0  # applied chunks are not kept

    def test_a_line_is_applied_exactly_as_a_put(
        self, app_client, ingest_headers, other_ingest_headers, runtime
    ):
        resources = synthetic_resources(episodes=15, days=2)
        kick_off(app_client, ingest_headers, ndjson(*resources))
        run_all(runtime)
        for resource in resources:
            url = f"/fhir/{resource['resourceType']}/{resource['id']}"
            response = app_client.put(url, json=resource, headers=other_ingest_headers)
            assert response.status_code in (200, 201), response.text
        imported, put = store_rows(runtime, TENANT), store_rows(runtime, OTHER_TENANT)
        for table in ("fhir_resources", "fhir_resource_versions", "episodes", "clinical_facts"):
            assert imported[table] == put[table], table
        # One transaction per chunk announces each touched episode once: every
        # episode a PUT announced, and no other.
        assert set(imported["outbox"]) == set(put["outbox"])

    def test_another_tenants_job_is_not_found(
        self, app_client, ingest_headers, other_ingest_headers, reader_headers
    ):
        location = kick_off(app_client, ingest_headers, ndjson(patient()))
        for method in ("get", "delete"):
            response = getattr(app_client, method)(location, headers=other_ingest_headers)
            assert response.status_code == 404
            assert response.json()["resourceType"] == "OperationOutcome"
        assert app_client.get(location, headers=ingest_headers).status_code == 202
        unknown = "/fhir/$import-status/0123456789abcdef0123456789abcdef"
        assert app_client.get(unknown, headers=ingest_headers).status_code == 404
        # A reader key may not import.
        response = app_client.post(
            "/fhir/$import", content=ndjson(patient()), headers={**reader_headers, **NDJSON}
        )
        assert response.status_code == 403

    def test_errors_are_paged_in_line_order(self, app_client, ingest_headers, runtime):
        body = ndjson(*(["{not json"] * 5), patient())
        location = kick_off(app_client, ingest_headers, body)
        run_all(runtime)
        first = app_client.get(f"{location}?limit=2", headers=ingest_headers)
        assert [e["line"] for e in first.json()["errors"]] == [1, 2]
        assert first.json()["failed"] == 5
        assert first.headers["Link"] == f'<{location}?after=2&limit=2>; rel="next"'
        rest = app_client.get(f"{location}?after=2&limit=10", headers=ingest_headers)
        assert [e["line"] for e in rest.json()["errors"]] == [3, 4, 5]
        assert "Link" not in rest.headers


class TestBadLines:
    def test_each_bad_line_is_reported_by_number_and_the_rest_applied(
        self, app_client, ingest_headers, runtime
    ):
        no_id = {k: v for k, v in patient("p9").items() if k != "id"}
        bad_status = {**encounter("e2"), "period": {"start": "yesterday"}}
        foreign = {
            **condition("c2", "e1"),
            "subject": {"reference": "https://host/fhir/H0002/Patient/p1"},
        }
        body = ndjson(
            patient(),  # 1
            "{not json",  # 2
            "",  # 3: blank lines are skipped, keeping the numbering
            no_id,  # 4
            {"resourceType": "NoSuchType", "id": "x"},  # 5
            bad_status,  # 6
            "[1, 2]",  # 7
            foreign,  # 8
            {"resourceType": "Patient", "id": "bad id!"},  # 9
            encounter("e1"),  # 10
        )
        location = kick_off(app_client, ingest_headers, body)
        run_all(runtime)
        summary = app_client.get(location, headers=ingest_headers).json()
        assert (summary["lines"], summary["applied"], summary["unchanged"]) == (9, 2, 0)
        errors = {e["line"]: e for e in summary["errors"]}
        assert sorted(errors) == [2, 4, 5, 6, 7, 8, 9]
        codes = {line: e["outcome"]["issue"][0]["code"] for line, e in errors.items()}
        assert codes == {
            2: "structure",
            4: "required",
            5: "not-supported",
            6: "value",
            7: "structure",
            8: "forbidden",
            9: "value",
        }
        for error in errors.values():
            assert error["outcome"]["resourceType"] == "OperationOutcome"
        assert "PUT Patient/{id}" in errors[4]["outcome"]["issue"][0]["diagnostics"]
        assert errors[6]["resource"] == "Encounter/e2"
        assert errors[6]["outcome"]["issue"][0]["expression"] == ["Encounter.period.start"]
        # The same content a PUT refuses.
        put = app_client.put("/fhir/Encounter/e2", json=bad_status, headers=ingest_headers)
        assert put.status_code == 422
        assert app_client.get("/fhir/Encounter/e1", headers=ingest_headers).status_code == 200
        assert app_client.get("/fhir/Encounter/e2", headers=ingest_headers).status_code == 404

    def test_a_line_larger_than_a_resource_may_be_fails_alone(self, runtime, ingest_headers):
        settings = runtime.settings.model_copy(update={"max_body_bytes": 2000})
        small = Runtime(settings=settings, engine=runtime.engine, clock=runtime.clock)
        big = {**patient("p2"), "name": [{"text": "x" * 3000}]}
        with TestClient(create_app(runtime=small, run_workers=False)) as client:
            location = kick_off(client, ingest_headers, ndjson(patient(), big))
            run_all(small)
            summary = client.get(location, headers=ingest_headers).json()
        assert summary["applied"] == 1
        assert summary["errors"][0]["line"] == 2
        assert summary["errors"][0]["outcome"]["issue"][0]["code"] == "too-costly"


class TestBody:
    def test_gzip(self, app_client, ingest_headers, runtime):
        body = gzip.compress(ndjson(patient(), encounter("e1")))
        location = kick_off(app_client, ingest_headers, body, **{"Content-Encoding": "gzip"})
        run_all(runtime)
        assert app_client.get(location, headers=ingest_headers).json()["applied"] == 2

    def test_concatenated_gzip_members_and_crlf(self, app_client, ingest_headers, runtime):
        body = gzip.compress(ndjson(patient()).replace(b"\n", b"\r\n")) + gzip.compress(
            ndjson(encounter("e1"))
        )
        location = kick_off(app_client, ingest_headers, body, **{"Content-Encoding": "gzip"})
        run_all(runtime)
        summary = app_client.get(location, headers=ingest_headers).json()
        assert (summary["lines"], summary["applied"], summary["errors"]) == (2, 2, [])

    @pytest.mark.parametrize(
        "body",
        [b"not gzip at all", gzip.compress(ndjson(patient()) * 50)[:-30]],
        ids=["not-gzip", "truncated"],
    )
    def test_bad_gzip_is_refused_and_leaves_no_job(self, app_client, ingest_headers, runtime, body):
        response = app_client.post(
            "/fhir/$import",
            content=body,
            headers={**ingest_headers, **NDJSON, "Content-Encoding": "gzip"},
        )
        assert response.status_code == 400
        assert response.json()["resourceType"] == "OperationOutcome"
        assert "gzip" in response.json()["issue"][0]["diagnostics"]
        assert no_jobs(runtime)

    @pytest.mark.parametrize(
        "headers",
        [
            {"Content-Type": "application/fhir+json"},
            {"Content-Type": "text/plain"},
            {**NDJSON, "Content-Encoding": "br"},
        ],
    )
    def test_wrong_media_type_is_415_and_no_job(self, app_client, ingest_headers, runtime, headers):
        response = app_client.post(
            "/fhir/$import", content=ndjson(patient()), headers={**ingest_headers, **headers}
        )
        assert response.status_code == 415
        assert response.json()["issue"][0]["code"] == "not-supported"
        assert no_jobs(runtime)

    def test_an_empty_body_is_refused(self, app_client, ingest_headers, runtime):
        response = app_client.post(
            "/fhir/$import", content=b"\n\n", headers={**ingest_headers, **NDJSON}
        )
        assert response.status_code == 400
        assert no_jobs(runtime)

    def test_the_size_limit_counts_bytes_after_gzip(self, runtime, ingest_headers):
        settings = runtime.settings.model_copy(update={"max_import_bytes": 5000})
        small = Runtime(settings=settings, engine=runtime.engine, clock=runtime.clock)
        plain = ndjson(*(patient(f"p{i}") for i in range(80)))
        assert len(plain) > 5000 > len(gzip.compress(plain))
        with TestClient(create_app(runtime=small, run_workers=False)) as client:
            for body, extra in ((plain, {}), (gzip.compress(plain), {"Content-Encoding": "gzip"})):
                response = client.post(
                    "/fhir/$import", content=body, headers={**ingest_headers, **NDJSON, **extra}
                )
                assert response.status_code == 413
                assert response.json()["issue"][0]["code"] == "too-costly"
                assert no_jobs(small)
            # A Bundle-sized body is well within the (larger) import limit by default.
            assert runtime.settings.max_import_bytes > runtime.settings.max_body_bytes


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK_LINES", 10)


class TestCancel:
    def test_cancel_stops_after_the_committed_chunks(
        self, app_client, ingest_headers, runtime, small_chunks
    ):
        body = ndjson(*(patient(f"p{i}") for i in range(35)))
        location = kick_off(app_client, ingest_headers, body)
        assert count(runtime, ImportChunkRow) == 4
        runner = bulk.ImportRunner(runtime)
        job_id = runner.claim()
        assert job_id is not None and location.endswith(job_id)

        def stop_after_first(done: int, total: int) -> None:
            runtime.stop.set()  # the runner stops cleanly, giving its lease back

        assert runner.run(job_id, progress=stop_after_first) is False
        runtime.stop.clear()
        progress = app_client.get(location, headers=ingest_headers)
        assert progress.headers["X-Progress"] == "running: 10 of 35 lines (28%)"

        response = app_client.delete(location, headers=ingest_headers)
        assert response.status_code == 202
        assert "after 10 of 35 lines" in response.json()["issue"][0]["diagnostics"]
        assert app_client.get(location, headers=ingest_headers).status_code == 404
        assert app_client.delete(location, headers=ingest_headers).status_code == 404
        assert not runner.run_once()
        assert count(runtime, StoredResource, StoredResource.tenant_id == TENANT) == 10
        assert no_jobs(runtime)

    def test_a_runner_whose_job_was_cancelled_stops(self, runtime, small_chunks):
        job_id, _ = store(runtime, ndjson(*(patient(f"p{i}") for i in range(25))))
        runner = bulk.ImportRunner(runtime)
        assert runner.claim() == job_id

        def cancel_midway(done: int, total: int) -> None:
            with runtime.write() as session:
                bulk.cancel(session, TENANT, job_id)

        assert runner.run(job_id, progress=cancel_midway) is False
        assert count(runtime, StoredResource, StoredResource.tenant_id == TENANT) == 10

    def test_deleting_a_completed_job_forgets_it(self, app_client, ingest_headers, runtime):
        location = kick_off(app_client, ingest_headers, ndjson("{bad"))
        run_all(runtime)
        assert app_client.get(location, headers=ingest_headers).status_code == 200
        assert app_client.delete(location, headers=ingest_headers).status_code == 202
        assert app_client.get(location, headers=ingest_headers).status_code == 404
        assert no_jobs(runtime)


def store(runtime: Runtime, body: bytes, tenant: str = TENANT) -> tuple[str, int]:
    writer = bulk.BodyWriter(runtime, tenant, "test", gzipped=False)
    writer.open()
    writer.write(body)
    return writer.job_id, writer.finish()


class TestLease:
    def test_two_runners_never_hold_one_job(self, runtime, small_chunks):
        job_id, _ = store(runtime, ndjson(*(patient(f"p{i}") for i in range(30))))
        first, second = bulk.ImportRunner(runtime), bulk.ImportRunner(runtime)
        assert first.claim() == job_id
        assert second.claim() is None
        assert second.run(job_id) is False  # not its job: it applies nothing
        assert count(runtime, StoredResource) == 0
        assert first.run(job_id) is True

    def test_an_expired_lease_is_taken_over_and_the_old_holder_stops(self, runtime, small_chunks):
        settings = runtime.settings.model_copy(update={"import_lease": timedelta(seconds=0.3)})
        quick = Runtime(settings=settings, engine=runtime.engine, clock=runtime.clock)
        job_id, _ = store(quick, ndjson(*(patient(f"p{i}") for i in range(30))))
        crashed, heir = bulk.ImportRunner(quick), bulk.ImportRunner(quick)
        assert crashed.claim() == job_id

        def hang(done: int, total: int) -> None:
            time.sleep(0.5)  # the holder stalls past its lease after one chunk
            assert heir.claim() == job_id

        assert crashed.run(job_id, progress=hang) is False
        assert heir.run(job_id) is True
        with quick.read() as session:
            versions = session.scalars(sa.select(ResourceVersion.version)).all()
            job = session.get(ImportJobRow, job_id)
        assert sorted(versions) == [1] * 30  # each line applied once
        assert job is not None and (job.lines, job.applied) == (30, 30)

    def test_an_abandoned_upload_is_collected(self, runtime):
        writer = bulk.BodyWriter(runtime, TENANT, "test", gzipped=False)
        writer.open()
        writer.write(ndjson(patient()) * 3)
        with runtime.write() as session:
            session.execute(
                sa.update(ImportJobRow).values(updated_at=bulk._wall() - timedelta(hours=2))
            )
        assert bulk.ImportRunner(runtime).run_once() == 0
        assert no_jobs(runtime)


class TestWorker:
    def test_the_ingest_role_runs_jobs_in_the_background(self, runtime, ingest_headers):
        with TestClient(create_app(runtime=runtime, role="ingest")) as client:
            location = kick_off(client, ingest_headers, ndjson(patient(), encounter("e1")))
            deadline = time.monotonic() + 20
            while (response := client.get(location, headers=ingest_headers)).status_code == 202:
                assert time.monotonic() < deadline, response.headers["X-Progress"]
                time.sleep(0.05)
        assert response.json()["applied"] == 2


class TestIdempotenceAndRecompute:
    def test_a_stream_with_history_imports_and_verify_agrees(
        self, app_client, ingest_headers, runtime
    ):
        resources = synthetic_resources()
        body = gzip.compress(ndjson(*resources))
        location = kick_off(app_client, ingest_headers, body, **{"Content-Encoding": "gzip"})
        run_all(runtime)
        summary = app_client.get(location, headers=ingest_headers).json()
        assert summary["errors"] == [] and summary["lines"] == len(resources)
        # The stream re-sends whole episodes: some lines are identical to the last.
        assert summary["unchanged"] > 0
        assert summary["applied"] + summary["unchanged"] == len(resources)
        assert count(runtime, ResourceVersion) == summary["applied"]
        report = verify(runtime)
        assert report.differences == [] and report.episodes > 0

    def test_a_second_import_of_the_same_file_is_all_unchanged(
        self, app_client, ingest_headers, runtime
    ):
        current = {(r["resourceType"], r["id"]): r for r in synthetic_resources(seed=8)}
        body = ndjson(*current.values())
        first = kick_off(app_client, ingest_headers, body)
        run_all(runtime)
        assert app_client.get(first, headers=ingest_headers).json()["applied"] == len(current)
        assert verify(runtime).differences == []
        versions, events = count(runtime, ResourceVersion), count(runtime, OutboxEvent)

        second = kick_off(app_client, ingest_headers, body)
        run_all(runtime)
        again = app_client.get(second, headers=ingest_headers).json()
        assert (again["applied"], again["unchanged"], again["errors"]) == (0, len(current), [])
        assert count(runtime, ResourceVersion) == versions  # no new version
        assert count(runtime, OutboxEvent) == events  # and nothing announced
        assert verify(runtime).differences == []


class TestCommand:
    @pytest.fixture
    def cli_env(self, monkeypatch, settings):
        monkeypatch.setenv("QCPULSE_DATABASE_URL", settings.database_url)
        monkeypatch.delenv("QCPULSE_BOOTSTRAP_TENANT", raising=False)
        monkeypatch.delenv("QCPULSE_BOOTSTRAP_ADMIN_KEY", raising=False)

    def test_import_files(self, cli_env, runtime, tmp_path, capsys):
        plain = tmp_path / "a.ndjson"
        plain.write_bytes(ndjson(patient(), encounter("e1")))
        packed = tmp_path / "b.ndjson.gz"
        packed.write_bytes(gzip.compress(ndjson(condition("c1", "e1"))))
        assert cli.main(["import", str(plain), str(packed), "--tenant", TENANT]) == 0
        out = capsys.readouterr().out
        assert f"import {plain}: 2 line(s), 2 applied, 0 unchanged, 0 failed" in out
        assert f"import {packed}: 1 line(s), 1 applied" in out
        assert count(runtime, StoredResource, StoredResource.tenant_id == TENANT) == 3

    def test_a_failed_line_fails_the_command(self, cli_env, runtime, tmp_path, capsys):
        path = tmp_path / "bad.ndjson"
        path.write_bytes(ndjson(patient(), "{oops"))
        assert cli.main(["import", str(path), "--tenant", TENANT]) == 1
        captured = capsys.readouterr()
        assert "1 applied, 0 unchanged, 1 failed" in captured.out
        assert f"{path}:2: malformed JSON" in captured.err

    def test_resume_finishes_unfinished_jobs(self, cli_env, runtime, capsys):
        job_id, _ = store(runtime, ndjson(patient(), encounter("e1")))
        assert cli.main(["import", "--resume", "--tenant", TENANT]) == 0
        assert f"2 applied, 0 unchanged, 0 failed (job {job_id})" in capsys.readouterr().out
        assert cli.main(["import", "--resume"]) == 0  # nothing left to do

    def test_usage(self, cli_env, tmp_path, capsys):
        assert cli.main(["import"]) == 2
        assert cli.main(["import", str(tmp_path / "x.ndjson")]) == 2
        assert cli.main(["import", str(tmp_path / "missing"), "--tenant", TENANT]) == 1


#: ``qcpulse import`` itself, with chunks of 200 lines so that a small file has many.
KILLED_IMPORT = (
    "import sys; import services.ingest.bulk as bulk; from qcpulse import cli; "
    "bulk.CHUNK_LINES = 200; sys.exit(cli.main(['import', *sys.argv[1:]]))"
)


class TestCrash:
    def test_kill_9_mid_import_then_resume_applies_every_line_once(
        self, runtime, settings, tmp_path
    ):
        """A ``qcpulse import`` process killed mid-run: the committed chunks stay,
        the resumed job applies the rest: one version per line, one event per episode."""
        pairs = 1000
        lines = 2 * pairs
        path = tmp_path / "big.ndjson"
        with path.open("wb") as fh:
            for i in range(pairs):
                fh.write(orjson.dumps(patient(f"p{i}", name=f"病人{i}")) + b"\n")
                fh.write(orjson.dumps(encounter(f"e{i}", f"p{i}")) + b"\n")
        env = {
            **os.environ,
            "QCPULSE_DATABASE_URL": settings.database_url,
            "QCPULSE_IMPORT_LEASE": "PT1S",
            "CI": "1",
        }
        env.pop("QCPULSE_BOOTSTRAP_TENANT", None)
        process = subprocess.Popen(
            [sys.executable, "-c", KILLED_IMPORT, str(path), "--tenant", TENANT],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline
                with runtime.read() as session:
                    chunk = session.scalar(
                        sa.select(ImportJobRow.next_chunk).where(ImportJobRow.tenant_id == TENANT)
                    )
                if chunk is not None and chunk >= 3:
                    break
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            process.wait()
        finally:
            if process.poll() is None:
                process.kill()
        with runtime.read() as session:
            job = session.scalars(sa.select(ImportJobRow)).one()
            stored = session.scalar(
                sa.select(sa.func.count())
                .select_from(StoredResource)
                .where(StoredResource.tenant_id == TENANT)
            )
        assert job.status == "running" and 3 <= job.next_chunk < job.total_chunks
        # What is stored is exactly what the job says it committed.
        assert stored == job.applied == job.lines == job.last_line

        time.sleep(1.1)  # the dead process's lease expires
        quick = runtime.settings.model_copy(update={"import_lease": timedelta(seconds=1)})
        heir = Runtime(settings=quick, engine=runtime.engine, clock=runtime.clock)
        assert bulk.ImportRunner(heir).run_once() == 1
        with runtime.read() as session:
            job = session.get(ImportJobRow, job.id)
            versions = session.scalars(
                sa.select(ResourceVersion.version).where(ResourceVersion.tenant_id == TENANT)
            ).all()
        assert job is not None and job.status == "completed"
        assert (job.lines, job.applied, job.failed) == (lines, lines, 0)
        assert len(versions) == lines and set(versions) == {1}  # none twice, none lost

        # Each pair shares a chunk: every episode announced once, by the commit that
        # wrote it (none lost with the killed transaction, none announced twice).
        assert store_rows(runtime, TENANT)["outbox"] == sorted((f"e{i}",) for i in range(pairs))
        assert verify(runtime).differences == []
