"""Typed settings. One class, ``QCPULSE_`` prefix, fails fast on bad values."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Role = Literal["all", "ingest", "indicators", "alerts"]


class Settings(BaseSettings):
    #: Errors never echo values: a malformed key must not reach a log or a terminal.
    model_config = SettingsConfigDict(
        env_prefix="QCPULSE_", env_file=None, extra="ignore", hide_input_in_errors=True
    )

    #: ``sqlite:///path`` or ``postgresql://user@host/db``; drivers are chosen for you.
    database_url: str = "sqlite:///./qcpulse.db"
    #: Tenant created on start (with the admin key below) when both are set.
    bootstrap_tenant: str | None = None
    bootstrap_admin_key: SecretStr | None = None
    #: Time zone that files cases into local days, for tenants created without one.
    default_timezone: str = "Asia/Shanghai"

    #: Ingest limits.
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_bundle_entries: int = Field(default=5000, gt=0)
    max_json_depth: int = Field(default=64, gt=0)
    #: Bulk import (``POST /fhir/$import``, docs/IMPORT.md): the largest body once
    #: un-gzipped, and how long a process's claim on a job lasts unless a commit renews it.
    max_import_bytes: int = Field(default=2 * 1024 * 1024 * 1024, gt=0)
    import_lease: timedelta = Field(default=timedelta(seconds=30), gt=timedelta(0))

    #: Directory of indicator definition files that add to or override the shipped ones.
    indicators_dir: Path | None = None
    #: How often the timer re-decides pending cases whose deadline has passed.
    timer_interval: timedelta = timedelta(seconds=0.5)
    #: Several API processes on one database (``serve --workers N`` sets it): they
    #: elect one to run the background work (shared/election.py), polling this often.
    elect_background: bool = False
    election_interval: timedelta = Field(default=timedelta(seconds=2), gt=timedelta(0))

    #: NATS server for the distributed mode (``serve --role``); unused when embedded.
    nats_url: str = "nats://127.0.0.1:4222"
    #: Names this deployment's JetStream streams (``<prefix>_EPISODE_CHANGED`` …) and
    #: durable consumers, so that several deployments can share one NATS server. Every
    #: process of a deployment must use the same prefix.
    nats_prefix: str = Field(default="QCPULSE", pattern=r"^[A-Z][A-Z0-9_]{0,31}$")
    #: Event transport: ``outbox`` polls the database table in-process; ``nats`` relays
    #: the outbox through JetStream (distributed mode).
    bus: Literal["outbox", "nats"] = "outbox"

    #: How long after a case's deadline ``case.breached`` waits for documentation on its
    #: way (docs/ALERTS.md); a tenant (``PUT /tenant``) or an indicator may say otherwise.
    alert_grace: timedelta = timedelta(minutes=5)

    #: Webhook delivery.
    webhook_timeout: timedelta = timedelta(seconds=10)
    webhook_max_age: timedelta = timedelta(hours=26)
    webhook_concurrency: int = Field(default=16, gt=0)
    #: Allow webhook URLs on loopback/private addresses (tests, demos, on-premises sinks).
    #: Link-local, cloud metadata, multicast, unspecified, broadcast and reserved
    #: addresses are refused whatever this says (``services/alerts/targets.py``).
    webhook_allow_private: bool = True

    #: Secrets at rest (``shared/secretbox.py``): 32 random bytes, base64url. Required
    #: by ``qcpulse serve`` unless ``insecure_dev_key``.
    secret_key: SecretStr | None = None
    #: Older keys, comma-separated, that still open rows until ``qcpulse rotate-secrets``.
    secret_key_previous: SecretStr | None = None
    #: Let ``serve`` run without a key, with the fixed (public) development key.
    insecure_dev_key: bool = False

    #: Requests per minute per API key (a token bucket per key and process); 0: no limit.
    rate_limit_per_minute: int = Field(default=6000, ge=0)
    #: The bucket's size (the burst a quiet key may send at once); unset: one minute's worth.
    rate_limit_burst: int | None = Field(default=None, gt=0)

    #: HL7 v2 over MLLP (docs/HL7V2.md): off unless a port is set.
    mllp_port: int | None = Field(default=None, ge=0, le=65535)
    mllp_host: str = "127.0.0.1"
    mllp_max_message_bytes: int = Field(default=1024 * 1024, gt=0)
    #: A connection that sends no byte for this long is closed.
    mllp_idle_timeout: timedelta = timedelta(minutes=5)
    mllp_max_connections: int = Field(default=1000, gt=0)
    #: PEM files: certificate and key turn on TLS; a CA also requires client certificates.
    mllp_tls_cert: Path | None = None
    mllp_tls_key: Path | None = None
    mllp_tls_ca: Path | None = None
    #: MSH-11 processing ids accepted, comma-separated (P production, T training, D debug).
    hl7_processing_ids: str = Field(default="P", pattern=r"^[A-Z](,[A-Z])*$")

    #: Federated submission (docs/FEDERATION.md): this instance reports its tenant's
    #: monthly figures to a regional qcpulse when the URL, region and key are all set.
    region_url: str | None = None
    region_id: str | None = None
    region_submission_key: SecretStr | None = None
    region_submit_interval: timedelta = Field(default=timedelta(minutes=15), gt=timedelta(0))
    #: The longest wait between retries while the region is offline or answers 5xx.
    region_submit_max_backoff: timedelta = Field(default=timedelta(minutes=5), gt=timedelta(0))
    #: How many months, the current one included, are compared with what was sent.
    region_submit_months: int = Field(default=24, gt=0, le=240)
    #: The tenant whose figures are submitted (default: the bootstrap tenant), and its
    #: member id in the region (default: the tenant id).
    region_tenant: str | None = None
    region_member_id: str | None = None

    log_level: str = "INFO"
    log_json: bool = False

    @property
    def accepted_processing_ids(self) -> frozenset[str]:
        return frozenset(self.hl7_processing_ids.split(","))

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.mllp_tls_cert is None) != (self.mllp_tls_key is None):
            raise ValueError("QCPULSE_MLLP_TLS_CERT and QCPULSE_MLLP_TLS_KEY go together")
        if self.mllp_tls_ca is not None and self.mllp_tls_cert is None:
            raise ValueError("QCPULSE_MLLP_TLS_CA needs QCPULSE_MLLP_TLS_CERT and _KEY")
        return self

    @model_validator(mode="after")
    def _region_triple(self) -> Settings:
        given = [self.region_url, self.region_id, self.region_submission_key]
        if any(v is not None for v in given) and not all(v is not None for v in given):
            raise ValueError(
                "QCPULSE_REGION_URL, _REGION_ID and _REGION_SUBMISSION_KEY go together"
            )
        if given[0] is not None and not (self.region_tenant or self.bootstrap_tenant):
            raise ValueError("submitting to a region needs QCPULSE_REGION_TENANT")
        return self

    @field_validator("secret_key", "secret_key_previous")
    @classmethod
    def _valid_keys(cls, value: SecretStr | None) -> SecretStr | None:
        from shared.secretbox import parse_key

        if value is None or not value.get_secret_value().strip():
            return None
        for key in value.get_secret_value().split(","):
            if key.strip():
                parse_key(key)
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres")):
            raise ValueError("database_url must be a sqlite:/// or postgresql:// URL")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
