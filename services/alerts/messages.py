"""Webhook bodies and their messages in Chinese and English.

A message names what on-call staff need to act — indicator, department, episode
(the Encounter reference), clock start, deadline, minutes elapsed — and nothing
else about the patient: no name, no identifier beyond the encounter id the hospital
already uses. Times are shown in the tenant's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.alerts.models import DIGEST, PING, AlertKind, RateReason
from services.indicators import IndicatorDefinition, RateStatus


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """What a case alert says about its case."""

    encounter_id: str
    key: str
    status: str | None
    clock_start: datetime | None
    clock_stop: datetime | None
    deadline: datetime
    at_risk_at: datetime | None

    def elapsed_minutes(self, now: datetime) -> float | None:
        if self.clock_start is None:
            return None
        end = self.clock_stop or now
        return round((end - self.clock_start).total_seconds() / 60, 1)

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "clock_start": _iso(self.clock_start),
            "clock_stop": _iso(self.clock_stop),
            "deadline": self.deadline.isoformat(),
            "at_risk_at": _iso(self.at_risk_at),
            "elapsed_minutes": self.elapsed_minutes(now),
        }


@dataclass(frozen=True, slots=True)
class Subject:
    """Who the alert is about: tenant, indicator and department, with display names."""

    tenant_id: str
    indicator: str
    indicator_zh: str
    indicator_en: str
    department: str
    department_name: str | None
    zone: ZoneInfo

    @classmethod
    def of(
        cls,
        tenant_id: str,
        code: str,
        defn: IndicatorDefinition | None,
        department: str,
        department_name: str | None,
        zone: ZoneInfo,
    ) -> Subject:
        zh = defn.name.zh if defn else code
        en = defn.name.en if defn else code
        return cls(tenant_id, code, zh, en, department, department_name, zone)

    @property
    def dept_label(self) -> str:
        if self.department_name and self.department_name != self.department:
            return f"{self.department_name} ({self.department})"
        return self.department

    def local(self, value: datetime | None) -> str:
        if value is None:
            return "?"
        return value.astimezone(self.zone).strftime("%Y-%m-%d %H:%M %z")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _minutes(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def case_message(kind: AlertKind, s: Subject, case: CaseFacts, now: datetime) -> dict[str, str]:
    episode = f"Encounter/{case.encounter_id}"
    start, deadline = s.local(case.clock_start), s.local(case.deadline)
    elapsed = _minutes(case.elapsed_minutes(now))
    left = _minutes(round(max(0.0, (case.deadline - now).total_seconds() / 60), 1))
    match kind:
        case AlertKind.CASE_AT_RISK:
            zh = (
                f"【即将超时】{s.indicator_zh}：{s.dept_label} 就诊 {episode}，"
                f"计时起点 {start}，已用时 {elapsed} 分钟，时限 {deadline}（剩余 {left} 分钟）。"
            )
            en = (
                f"At risk - {s.indicator_en}: episode {episode} in {s.dept_label}, "
                f"clock started {start}, {elapsed} min elapsed, deadline {deadline} "
                f"({left} min left)."
            )
        case AlertKind.CASE_BREACHED:
            zh = (
                f"【已超时】{s.indicator_zh}：{s.dept_label} 就诊 {episode}，"
                f"计时起点 {start}，时限 {deadline} 已过，已用时 {elapsed} 分钟。"
            )
            en = (
                f"Breached - {s.indicator_en}: episode {episode} in {s.dept_label}, "
                f"clock started {start}, deadline {deadline} passed, {elapsed} min elapsed."
            )
        case AlertKind.CASE_RESOLVED:
            zh = (
                f"【已解除】{s.indicator_zh}：{s.dept_label} 就诊 {episode} 经补录或更正，"
                f"已在时限内完成（计时起点 {start}，时限 {deadline}，用时 {elapsed} 分钟）。"
            )
            en = (
                f"Resolved - {s.indicator_en}: late documentation or a correction shows "
                f"episode {episode} in {s.dept_label} met its target (clock started {start}, "
                f"deadline {deadline}, {elapsed} min)."
            )
        case _:
            raise ValueError(f"{kind} is not a case alert")
    return {"zh": zh, "en": en}


def format_rate(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    match unit:
        case "percent":
            return f"{value * 100:.1f}%"
        case "per_100":
            return f"{value:.2f}/100"
        case _:
            return f"{value:.2f}‰"


def _month(month: date) -> tuple[str, str]:
    return f"{month.year}年{month.month}月", month.strftime("%B %Y")


def rate_message(
    kind: AlertKind, s: Subject, status: RateStatus, reasons: list[RateReason]
) -> dict[str, str]:
    month_zh, month_en = _month(status.month)
    rate = format_rate(status.rate, status.unit)
    target = format_rate(status.target, status.unit)
    limits = f"{format_rate(status.lcl, status.unit)}–{format_rate(status.ucl, status.unit)}"
    why_zh, why_en = [], []
    if RateReason.TARGET in reasons:
        why_zh.append("未达目标")
        why_en.append("on the wrong side of its target")
    if RateReason.ABOVE_UCL in reasons or RateReason.BELOW_LCL in reasons:
        where = "above" if RateReason.ABOVE_UCL in reasons else "below"
        why_zh.append(f"{'高于' if where == 'above' else '低于'}控制限 {limits}")
        why_en.append(f"{where} its control limits {limits}")
    match kind:
        case AlertKind.RATE_DEVIATION:
            zh = (
                f"【指标偏离】{s.indicator_zh}：{s.dept_label} {month_zh} 当前 {rate}"
                f"（目标 {target}，{status.denominator} 例），{'，'.join(why_zh)}。"
            )
            en = (
                f"Rate deviation - {s.indicator_en}: {s.dept_label}, {month_en}: {rate} "
                f"(target {target}, n={status.denominator}), {' and '.join(why_en)}."
            )
        case AlertKind.RATE_RECOVERED:
            zh = (
                f"【指标恢复】{s.indicator_zh}：{s.dept_label} {month_zh} 恢复至 {rate}"
                f"（目标 {target}，控制限 {limits}，{status.denominator} 例）。"
            )
            en = (
                f"Rate recovered - {s.indicator_en}: {s.dept_label}, {month_en}: back to "
                f"{rate} (target {target}, control limits {limits}, n={status.denominator})."
            )
        case _:
            raise ValueError(f"{kind} is not a rate alert")
    return {"zh": zh, "en": en}


def _head(alert_id: str, s: Subject) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "tenant": s.tenant_id,
        "indicator": {"code": s.indicator, "name": {"zh": s.indicator_zh, "en": s.indicator_en}},
        "department": s.department,
        "department_name": s.department_name,
    }


def case_body(
    kind: AlertKind, alert_id: str, s: Subject, case: CaseFacts, now: datetime
) -> dict[str, Any]:
    data = _head(alert_id, s) | {
        "episode": f"Encounter/{case.encounter_id}",
        "case": case.to_json(now),
        "message": case_message(kind, s, case, now),
    }
    return {"type": kind.value, "timestamp": now.isoformat(), "data": data}


def rate_body(
    kind: AlertKind,
    alert_id: str,
    s: Subject,
    status: RateStatus,
    reasons: list[RateReason],
    now: datetime,
) -> dict[str, Any]:
    data = _head(alert_id, s) | {
        "episode": None,
        "case": None,
        "rate": status.to_json() | {"reasons": [r.value for r in reasons], "unit": status.unit},
        "message": rate_message(kind, s, status, reasons),
    }
    return {"type": kind.value, "timestamp": now.isoformat(), "data": data}


def digest_body(
    tenant_id: str,
    subscription_id: str,
    department: str,
    alerts: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """One message for a department's rate alerts of one digest interval: each alert's
    webhook body as it would have been sent alone, oldest first."""
    datas = [a["data"] for a in alerts]
    name = next((d.get("department_name") for d in datas if d.get("department_name")), None)
    label = f"{name} ({department})" if name and name != department else department
    n = len(alerts)
    return {
        "type": DIGEST,
        "timestamp": now.isoformat(),
        "data": {
            "tenant": tenant_id,
            "subscription_id": subscription_id,
            "department": department,
            "department_name": name,
            "count": n,
            "alerts": [
                {"type": a["type"], "timestamp": a["timestamp"]} | a["data"] for a in alerts
            ],
            "message": {
                "zh": f"{label}：{n} 条指标率告警汇总。"
                + "".join(f"\n- {d['message']['zh']}" for d in datas),
                "en": f"{label}: digest of {n} rate alert{'s' if n != 1 else ''}."
                + "".join(f"\n- {d['message']['en']}" for d in datas),
            },
        },
    }


def ping_body(tenant_id: str, subscription_id: str, now: datetime) -> dict[str, Any]:
    return {
        "type": PING,
        "timestamp": now.isoformat(),
        "data": {
            "tenant": tenant_id,
            "subscription_id": subscription_id,
            "message": {
                "zh": "qcpulse 测试消息：订阅已可接收告警。",
                "en": "qcpulse test message: this subscription receives alerts.",
            },
        },
    }
