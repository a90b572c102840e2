"""``python -m bench.replay --statements``: the statement counts PERFORMANCE.md quotes
come from here, so they must count what the write path sends."""

from __future__ import annotations

import re
import sys

import pytest

from bench import replay


def test_statements_per_bundle_are_counted_by_table(monkeypatch, capsys, tmp_path):
    args = ["--episodes", "4", "--days", "1", "--seed", "11", "--bundle-size", "10"]
    url = f"sqlite:///{tmp_path / 'replay.db'}"
    monkeypatch.setattr(sys, "argv", ["replay", *args, "--url", url, "--statements"])
    assert replay.main() == 0
    out = capsys.readouterr().out
    per_bundle = {kind: float(n) for n, kind in re.findall(r"^\s+([\d.]+)\s+(\S.*)$", out, re.M)}
    # One transaction per Bundle, and each table written once per Bundle.
    assert per_bundle["BEGIN"] == pytest.approx(1.0)
    assert per_bundle["INSERT fhir_resource_versions"] == pytest.approx(1.0)
    assert per_bundle["INSERT outbox"] <= 1.0
    assert per_bundle["INSERT clinical_facts"] <= 1.0
