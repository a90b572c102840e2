"""The stream behaves like an integration engine: ordered sends, retries, corrections,
retractions, data that overtakes its Encounter, and local +08:00 times throughout."""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from datetime import UTC, timedelta

import orjson
import pytest

from qcpulse.synth import HospitalConfig, generate
from tests.synth._helpers import START, sample, t

DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T")


@pytest.fixture(scope="module")
def sends():
    return sample("medium", 4.0, 7)


def keys(send):
    return [e["request"]["url"] for e in send.bundle["entry"]]


def walk_strings(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk_strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for v in node:
            yield from walk_strings(v, path)
    elif isinstance(node, str):
        yield path, node


class TestOrder:
    def test_sends_are_sorted_and_utc(self, sends):
        assert all(a.at <= b.at for a, b in itertools.pairwise(sends))
        assert all(s.at.utcoffset() == timedelta(0) for s in sends)
        assert sends[0].note == "directory"

    def test_bundle_timestamp_is_the_send_time_in_local_time(self, sends):
        for s in sends:
            assert s.bundle["timestamp"].endswith("+08:00")
            if s.note == "resend":  # a retry is the same bundle, assembled earlier
                assert t(s.bundle["timestamp"]) <= s.at
            else:
                assert t(s.bundle["timestamp"]) == s.at

    def test_every_time_in_every_resource_is_local(self, sends):
        checked = 0
        for s in sends:
            for entry in s.bundle["entry"]:
                for path, value in walk_strings(entry.get("resource", {})):
                    if DATETIME.match(value):
                        assert value.endswith("+08:00"), (path, value)
                        checked += 1
        assert checked > 20_000

    def test_nothing_is_documented_before_it_happened(self, sends):
        fields = ("effectiveDateTime", "performedDateTime", "occurrenceDateTime", "issued",
                  "sent", "date", "recordedDate", "authoredOn")  # fmt: skip
        for s in sends:
            for entry in s.bundle["entry"]:
                r = entry.get("resource") or {}
                stated = [r[f] for f in fields if f in r]
                for period in ("period", "performedPeriod", "effectivePeriod"):
                    stated += list(r.get(period, {}).values())
                for value in stated:
                    assert t(value) <= s.at, (s.bundle["id"], r["resourceType"], value)

    def test_each_episode_starts_with_its_registration_unless_early(self, sends):
        first_note = {}
        for s in sends:
            if s.episode:
                first_note.setdefault(s.episode, s.note)
        assert Counter(first_note.values()).keys() <= {"initial", "early"}

    def test_a_patient_who_died_stays_dead(self, sends):
        died = {}
        for s in sends:
            for entry in s.bundle["entry"]:
                r = entry.get("resource") or {}
                if r.get("resourceType") != "Patient":
                    continue
                if r["id"] in died:
                    assert r.get("deceasedDateTime") == died[r["id"]], s.bundle["id"]
                elif "deceasedDateTime" in r:
                    died[r["id"]] = r["deceasedDateTime"]
        assert died

    def test_encounter_versions_never_go_back_to_in_progress(self, sends):
        status = {}
        for s in sends:
            for entry in s.bundle["entry"]:
                r = entry.get("resource") or {}
                if r.get("resourceType") == "Encounter":
                    if status.get(r["id"]) == "finished":
                        assert r["status"] == "finished", s.bundle["id"]
                    status[r["id"]] = r["status"]
        assert Counter(status.values())["finished"] > 500


class TestQuirks:
    def test_resends_repeat_the_previous_bundle_byte_for_byte(self, sends):
        last_by_episode = {}
        resends = 0
        for s in sends:
            if s.note == "resend":
                resends += 1
                previous = last_by_episode[s.episode]
                assert previous.bundle["id"] == s.bundle["id"]
                assert orjson.dumps(previous.bundle) == orjson.dumps(s.bundle)
                assert s.bundle is not previous.bundle  # each send owns its dicts
            last_by_episode[s.episode] = s
        assert resends > 0.01 * len(sends)

    def test_corrections_change_a_resource_already_sent(self, sends):
        sent: dict[str, bytes] = {}
        corrected = Counter()
        for s in sends:
            for entry in s.bundle["entry"]:
                url = entry["request"]["url"]
                if "resource" not in entry:
                    continue
                body = orjson.dumps(entry["resource"])
                if s.note == "correction" and not url.startswith("Patient/"):
                    assert url in sent, url
                    assert sent[url] != body, url
                    corrected[url.split("/")[0]] += 1
                sent[url] = body
        assert {"Procedure", "Encounter", "Observation", "Condition"} <= set(corrected)

    def test_a_pci_time_is_corrected_somewhere(self, sends):
        starts = defaultdict(list)
        for s in sends:
            for entry in s.bundle["entry"]:
                r = entry.get("resource") or {}
                if r.get("resourceType") == "Procedure" and "00.66" in orjson.dumps(r).decode():
                    starts[r["id"]].append(r.get("performedPeriod", {}).get("start"))
        assert any(len(set(v)) > 1 for v in starts.values())

    def test_retractions_withdraw_something_sent_before(self, sends):
        sent = set()
        kinds = Counter()
        for s in sends:
            for entry in s.bundle["entry"]:
                url = entry["request"]["url"]
                if s.note == "retraction" and not url.startswith("Patient/"):
                    assert url in sent
                    if entry["request"]["method"] == "DELETE":
                        kinds["delete"] += 1
                    else:
                        r = entry["resource"]
                        in_error = r.get("status") == "entered-in-error" or (
                            r["resourceType"] == "Condition"
                            and r["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
                        )
                        assert in_error, url
                        kinds["entered-in-error"] += 1
                sent.add(url)
        assert kinds["delete"] > 0
        assert kinds["entered-in-error"] > 0

    def test_early_resources_precede_their_encounter(self, sends):
        encounter_seen = set()
        early = 0
        for s in sends:
            if s.note == "early":
                early += 1
                assert s.episode not in encounter_seen
                refs = orjson.dumps(s.bundle).decode()
                assert f'"Encounter/{s.episode}"' in refs
            for url in keys(s):
                if url.startswith("Encounter/"):
                    encounter_seen.add(url.removeprefix("Encounter/"))
        assert early > 10

    def test_some_patients_come_back(self, sends):
        patients_per_episode = {}
        for s in sends:
            for entry in s.bundle["entry"]:
                r = entry.get("resource") or {}
                if r.get("resourceType") == "Encounter":
                    patients_per_episode[r["id"]] = r["subject"]["reference"]
        counts = Counter(patients_per_episode.values())
        assert any(n > 1 for n in counts.values())

    def test_a_clean_feed_has_no_quirks(self):
        config = HospitalConfig(
            arrivals_per_day=60,
            resend_rate=0,
            early_rate=0,
            correction_rate=0,
            retraction_rate=0,
            batch_rate=0,
        )
        notes = Counter(s.note for s in generate(config, start=START, days=2, seed=1))
        assert set(notes) <= {"directory", "initial", "update", "discharge", "retraction"}
        # The only retraction left is a voided duplicate registration (1 % of ED visits).
        assert notes["retraction"] <= 3


class TestTruncate:
    def test_truncated_stream_stops_at_the_end_and_leaves_episodes_open(self):
        config = HospitalConfig(arrivals_per_day=80, truncate=True)
        sends = list(generate(config, start=START, days=2, seed=9))
        end = START + timedelta(days=2)
        assert sends
        assert all(s.at < end for s in sends)
        registered = {s.episode for s in sends if s.note == "initial"}
        discharged = {s.episode for s in sends if s.note == "discharge"}
        assert len(registered - discharged) > 10

    def test_untruncated_stream_discharges_everyone(self):
        sends = list(generate(HospitalConfig(arrivals_per_day=80), start=START, days=1, seed=9))
        registered = {s.episode for s in sends if s.note == "initial"}
        discharged = {s.episode for s in sends if s.note == "discharge"}
        voided = {
            s.episode
            for s in sends
            if s.note == "retraction" and any(u.startswith("Encounter/") for u in keys(s))
        }
        assert registered == discharged | voided

    def test_naive_start_is_rejected(self):
        with pytest.raises(ValueError, match="timezone"):
            next(generate(HospitalConfig(), start=START.replace(tzinfo=None), days=1, seed=1))

    def test_start_is_honoured(self):
        start = START.astimezone(UTC) + timedelta(days=30)
        sends = list(generate(HospitalConfig(arrivals_per_day=20), start=start, days=1, seed=1))
        assert sends[0].at == start
        assert all(s.at >= start for s in sends)
