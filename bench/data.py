"""Request streams made from the synthetic hospital (``qcpulse.synth``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from bench.server import Request
from qcpulse.synth import HospitalConfig, Send, generate

JSON = dict[str, Any]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def sends(
    episodes: int, days: float, *, seed: int = 7, start: datetime | None = None
) -> list[Send]:
    """The synthetic hospital's feed over ``days`` ending now, as a live integration
    engine sends it. A fixed past start would leave the feed's open stays open for
    months by the server's clock, and a bed-day denominator (NIT-2026-V-B) would then
    decide one case per day of them: a load no live feed produces, growing each day."""
    if start is None:
        now = datetime.now(SHANGHAI).replace(second=0, microsecond=0)
        start = now - timedelta(days=days)
    config = HospitalConfig.for_episodes(episodes, days)
    return list(generate(config, start=start, days=days, seed=seed))


def _bundle(entries: list[JSON]) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def unique_stream(feed: list[Send], size: int) -> list[Request]:
    """Every entry of the feed once, in feed order, re-packed into transaction Bundles
    of ``size`` entries. Exact re-sends of the feed and deletes are dropped: every entry is a
    new resource or a new version."""
    entries: list[JSON] = []
    for send in feed:
        if send.note == "resend":
            continue
        # Deletes are left out: with concurrent clients one could overtake the create.
        entries.extend(
            e
            for e in send.bundle.get("entry") or []
            if (e.get("request") or {}).get("method") != "DELETE"
        )
    return [
        ("POST", "/fhir", _bundle(entries[i : i + size]), len(entries[i : i + size]))
        for i in range(0, len(entries), size)
    ]


def resend_stream(feed: list[Send]) -> list[Request]:
    """What an integration engine that re-sends each episode whole on every change
    posts: per send, every current resource of that episode (mostly byte-identical
    to what it posted before) plus the send's own deletes."""
    episodes: dict[str, dict[tuple[str, str], JSON]] = {}
    out: list[Request] = []
    for send in feed:
        entries = send.bundle.get("entry") or []
        if not send.episode:
            out.append(("POST", "/fhir", _bundle(entries), len(entries)))
            continue
        current = episodes.setdefault(send.episode, {})
        deletes = []
        for entry in entries:
            request = entry.get("request") or {}
            key = tuple(str(request.get("url", "")).split("/")[:2])
            if request.get("method") == "DELETE":
                current.pop(key, None)  # type: ignore[arg-type]
                deletes.append(entry)
            else:
                current[key] = entry  # type: ignore[index]
        whole = [*current.values(), *deletes]
        out.append(("POST", "/fhir", _bundle(whole), len(whole)))
    return out


def single_puts(feed: list[Send], limit: int | None = None) -> list[Request]:
    """The feed's resources one per ``PUT /fhir/{type}/{id}`` (latest version of each)."""
    latest: dict[tuple[str, str], JSON] = {}
    for send in feed:
        for entry in send.bundle.get("entry") or []:
            resource = entry.get("resource")
            if (entry.get("request") or {}).get("method") == "PUT" and resource:
                latest[(resource["resourceType"], resource["id"])] = resource
    items = list(latest.items())[:limit]
    return [("PUT", f"/fhir/{t}/{i}", orjson.dumps(r), 1) for (t, i), r in items]


def resources_of(requests: list[Request]) -> list[JSON]:
    out: list[JSON] = []
    for _, _, body, _ in requests:
        doc = orjson.loads(body)
        if doc.get("resourceType") == "Bundle":
            out.extend(e["resource"] for e in doc.get("entry") or [] if e.get("resource"))
        else:
            out.append(doc)
    return out
