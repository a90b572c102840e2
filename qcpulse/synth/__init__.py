"""A deterministic synthetic Chinese hospital that feeds qcpulse the way a real one would.

Real integration-engine feeds cannot leave a hospital, yet every part of qcpulse has
to be exercised against one: ingest against out-of-order, repeated, corrected and
retracted bundles; the evaluator against every indicator's population, with cases
on both sides of each window; the alerts against cases that fall due at any hour.
This package produces such a feed from a seed, so that a bug seen in a run can be
reproduced byte for byte, and a load test can stream millions of resources without
holding them in memory.

Only the names below are public; the modules behind them may change.
"""

from qcpulse.synth.config import (
    DEFAULT_DEPARTMENTS,
    DEFAULT_MIX,
    PATHWAYS,
    Department,
    DepartmentRole,
    HospitalConfig,
    Pathway,
    SizeName,
)
from qcpulse.synth.ndjson import read_ndjson, write_ndjson
from qcpulse.synth.send import Note, Send
from qcpulse.synth.stream import generate

__all__ = [
    "DEFAULT_DEPARTMENTS",
    "DEFAULT_MIX",
    "PATHWAYS",
    "Department",
    "DepartmentRole",
    "HospitalConfig",
    "Note",
    "Pathway",
    "Send",
    "SizeName",
    "generate",
    "read_ndjson",
    "write_ndjson",
]
