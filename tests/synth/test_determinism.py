"""A seed reproduces a run byte for byte; a different seed or config does not."""

from __future__ import annotations

import io
import itertools
import re
import tracemalloc
from datetime import timedelta, timezone

import pytest

from qcpulse.synth import HospitalConfig, generate, write_ndjson
from tests.synth._helpers import START


def _bytes(config: HospitalConfig, *, seed: int, days: float = 1.5, start=START) -> bytes:
    buf = io.BytesIO()
    write_ndjson(generate(config, start=start, days=days, seed=seed), buf)
    return buf.getvalue()


class TestDeterminism:
    def test_same_seed_same_bytes(self):
        config = HospitalConfig.from_size("small")
        first = _bytes(config, seed=11)
        assert len(first) > 100_000
        assert _bytes(config, seed=11) == first

    def test_same_instant_in_another_zone_same_bytes(self):
        config = HospitalConfig.from_size("small")
        elsewhere = START.astimezone(timezone(timedelta(hours=-5)))
        assert _bytes(config, seed=11, start=elsewhere) == _bytes(config, seed=11)

    def test_other_seed_differs(self):
        config = HospitalConfig.from_size("small")
        assert _bytes(config, seed=11) != _bytes(config, seed=12)

    def test_other_tenant_differs_and_is_named(self):
        a = _bytes(HospitalConfig.from_size("small", tenant="H0001"), seed=11)
        b = _bytes(HospitalConfig.from_size("small", tenant="H0002"), seed=11)
        assert a != b
        assert b"H0001" not in b
        assert b"H0002-enc-000001" in b


class TestSize:
    @pytest.mark.parametrize("episodes", [1, 37, 400])
    def test_for_episodes_is_exact(self, episodes):
        config = HospitalConfig.for_episodes(episodes, 2.0)
        sends = list(generate(config, start=START, days=2.0, seed=5))
        # Later Encounters of a journey (the ward stay an ED visit became, a
        # readmission, next month's dialysis) carry a member suffix: ``-enc-000123-2``.
        initial = [
            s for s in sends if s.note == "initial" and re.fullmatch(r".*-enc-\d{6}", s.episode)
        ]
        assert len(initial) == episodes
        assert len({s.episode for s in initial}) == episodes
        # Every arrival falls inside the generated span.
        assert all(START <= s.at < START + timedelta(days=2, hours=3) for s in initial)

    def test_presets_scale(self):
        counts = {}
        for size in ("small", "medium"):
            sends = generate(HospitalConfig.from_size(size), start=START, days=2, seed=3)
            counts[size] = sum(1 for s in sends if s.note == "initial")
        assert 50 < counts["small"] < 130
        assert 3 * counts["small"] < counts["medium"] < 6 * counts["small"]

    def test_more_arrivals_by_day_than_by_night(self):
        config = HospitalConfig.for_episodes(3000, 7)
        hours = [
            (s.at + timedelta(hours=8)).hour
            for s in generate(config, start=START, days=7, seed=2)
            if s.note == "initial"
        ]
        day = sum(1 for h in hours if 9 <= h < 12)
        night = sum(1 for h in hours if 2 <= h < 5)
        assert day > 4 * night > 0


class TestStreaming:
    def test_first_sends_come_before_the_whole_run_is_built(self):
        # A year of a very large hospital would take gigabytes if built eagerly; a
        # streaming generator holds only the episodes in flight. (Speed is measured
        # in bench/, not asserted here.)
        config = HospitalConfig.for_episodes(2_000_000, 365)
        tracemalloc.start()
        try:
            first = list(itertools.islice(generate(config, start=START, days=365, seed=1), 500))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(first) == 500
        assert peak < 200 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
