"""The three qcpulse services: ingest, indicators, alerts."""
