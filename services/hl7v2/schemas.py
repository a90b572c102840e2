"""Request and response bodies of the v2 adapter's REST endpoints."""

from __future__ import annotations

import ipaddress
from datetime import datetime

from pydantic import BaseModel, Field, field_validator


class SourceCreate(BaseModel):
    #: MSH-4.1 as the source sends it.
    facility: str = Field(min_length=1, max_length=200)
    #: MSH-3.1; null accepts any sending application of the facility.
    application: str | None = Field(default=None, min_length=1, max_length=200)
    #: Client networks (CIDR) allowed to send as this source over MLLP and HTTP;
    #: empty accepts any address.
    networks: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("networks")
    @classmethod
    def _cidr(cls, value: list[str]) -> list[str]:
        out = []
        for network in value:
            try:
                out.append(str(ipaddress.ip_network(network, strict=False)))
            except ValueError as exc:
                raise ValueError(f"{network!r} is not an IP network") from exc
        return out


class SourceOut(BaseModel):
    id: str
    facility: str
    application: str | None
    networks: list[str]
    created_at: datetime


class MessageOut(BaseModel):
    id: int
    source_id: str
    control_id: str | None
    message_type: str
    version: str | None
    transport: str
    peer: str | None
    received_at: datetime
    status: str
    error: str | None
    #: The message as received, decoded by its MSH-18 (undecodable bytes replaced).
    raw: str
    ack: str | None
    written: list[str]
    stale: list[str]
    replayed_at: datetime | None


class MessagePage(BaseModel):
    messages: list[MessageOut]
    next_cursor: str | None
