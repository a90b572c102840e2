"""The contract tests' figures: how many schemathesis tests (an operation with one key)
ran and failed, printed in the terminal summary (docs/CONTRACT.md)."""

from __future__ import annotations

import collections

import pytest

CONTRACT_TEST = "test_openapi_contract.py::test_openapi_contract"
RESULTS: collections.Counter[str] = collections.Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if CONTRACT_TEST in report.nodeid and report.when == "call":
        RESULTS[report.outcome] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.contract import test_openapi_contract as contract

    if not RESULTS:
        return
    terminalreporter.write_line(
        f"schemathesis: {len(contract.OPERATIONS)} operations fuzzed "
        f"({len(contract.EXCLUDED)} excluded) with {len(contract.ROLES)} keys, "
        f"{contract.FIGURES['cases']} cases generated; "
        f"{RESULTS['passed']} operation×key runs passed, {RESULTS['failed']} with findings"
    )
