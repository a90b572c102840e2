"""Benchmarks: ``python -m bench [scenario …] [--quick] [--json out.json]``.

Every scenario drives a real ``qcpulse serve`` subprocess over HTTP on loopback, with
a fresh database, and reports each figure as the median with the min and max over
repeated runs. ``docs/PERFORMANCE.md`` has the results and what they mean.
"""
