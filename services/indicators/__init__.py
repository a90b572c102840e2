"""Indicators: definitions as data, the evaluator, exact incremental counters, the read API."""
