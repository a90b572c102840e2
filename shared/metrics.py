"""Prometheus metrics. Counts and timings only: never patient data in a label."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "qcpulse_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "qcpulse_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RESOURCES_INGESTED = Counter(
    "qcpulse_resources_ingested_total",
    "Resources written, by type and outcome",
    ["type", "outcome"],
)
EVENTS_PROCESSED = Counter(
    "qcpulse_events_processed_total", "Outbox events handled, by topic", ["topic"]
)
EVALUATION_SECONDS = Histogram(
    "qcpulse_evaluation_seconds",
    "Time to re-evaluate a batch of episodes",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENTS_PARKED = Counter(
    "qcpulse_events_parked_total", "Outbox events a consumer gave up on, by topic", ["topic"]
)
ALERTS_RAISED = Counter("qcpulse_alerts_total", "Alerts raised, by type", ["type"])
WEBHOOK_ATTEMPTS = Counter(
    "qcpulse_webhook_attempts_total", "Webhook delivery attempts, by outcome", ["outcome"]
)
HL7_MESSAGES = Counter(
    "qcpulse_hl7_messages_total",
    "HL7 v2 messages answered, by transport and ACK",
    ["transport", "ack"],
)
MLLP_CONNECTIONS = Counter(
    "qcpulse_mllp_connections_total", "MLLP connections, by how they ended", ["outcome"]
)
