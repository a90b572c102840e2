"""The bulletin as an Excel workbook (openpyxl): one sheet per section.

Numbers are numbers (a rate is the API's value, formatted as a percentage or per 100 /
1,000 / 10,000 by the cell's format, never a string), months are dates, headers are
Chinese with the English beside. Every sheet has the bulletin's title in row 1, its
period in row 2 and the column headers in row ``HEADER_ROW``, frozen.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.styles import Alignment, Font, PatternFill  # type: ignore[import-untyped]
from openpyxl.utils import get_column_letter  # type: ignore[import-untyped]

from services.regions.bulletin import Bulletin, parse_month

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER_ROW = 4

#: The cell format of a rate by unit: a fraction shown as a percentage, else the scaled
#: number (events per 1,000 is already × 1,000 in the API).
RATE_FORMAT = {"percent": "0.0%", "per_100": "0.00", "per_1000": "0.00", "per_10000": "0.00"}
MET = {True: "达标 met", False: "未达标 missed", None: "无目标 no target"}
SIDE = {"above": "高于上限 above UCL", "below": "低于下限 below LCL", None: ""}
FUNNEL = {
    "inside": "控制限内 inside",
    "above_95": "高于95%限 above 95%",
    "above_998": "高于99.8%限 above 99.8%",
    "below_95": "低于95%限 below 95%",
    "below_998": "低于99.8%限 below 99.8%",
}
UNIT = {"percent": "%", "per_100": "/100", "per_1000": "/1000", "per_10000": "/10000"}

_BOLD = Font(bold=True)
_HEADER_FILL = PatternFill("solid", fgColor="DDE7F0")


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    value: Callable[[Any], Any]
    #: ``rate``: the row's unit decides; else an Excel number format, or None.
    fmt: str | None = None
    width: int = 12


def _month(text: str) -> date:
    return parse_month(text)


def _sheet(
    book: Workbook,
    title: str,
    bulletin: Bulletin,
    columns: Sequence[Column],
    rows: Sequence[Any],
    *,
    unit_of: Callable[[Any], str] | None = None,
    empty: str = "本月无 none this month",
) -> None:
    sheet = book.create_sheet(title)
    sheet["A1"] = f"{bulletin.title_zh} · {bulletin.title_en}"
    sheet["A1"].font = Font(bold=True, size=14)
    state = (
        "" if bulletin.complete else " · 月份未结束，数据为暂定 provisional: the month is not over"
    )
    scope = (
        f" · 科室 departments: {', '.join(bulletin.departments)}"
        if bulletin.departments is not None
        else ""
    )
    sheet["A2"] = (
        f"统计期 period {bulletin.period_from.isoformat()} – {bulletin.period_to.isoformat()}"
        f" ({bulletin.timezone}) · 生成于 generated {bulletin.generated_at:%Y-%m-%d %H:%M} UTC"
        f"{scope}{state}"
    )
    for index, column in enumerate(columns, start=1):
        cell = sheet.cell(row=HEADER_ROW, column=index, value=column.header)
        cell.font = _BOLD
        cell.fill = _HEADER_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="center")
        sheet.column_dimensions[get_column_letter(index)].width = column.width
    for offset, row in enumerate(rows, start=1):
        for index, column in enumerate(columns, start=1):
            cell = sheet.cell(row=HEADER_ROW + offset, column=index, value=column.value(row))
            if column.fmt == "rate" and unit_of is not None:
                cell.number_format = RATE_FORMAT[unit_of(row)]
            elif column.fmt is not None:
                cell.number_format = column.fmt
    if not rows:
        sheet.cell(row=HEADER_ROW + 1, column=1, value=empty)
    sheet.freeze_panes = sheet.cell(row=HEADER_ROW + 1, column=3)


def render(bulletin: Bulletin) -> bytes:
    """The workbook's bytes."""
    names = bulletin.names()
    units = bulletin.units()

    def zh(row: Any) -> str:
        return names[row.code][0]

    def unit(row: Any) -> str:
        return units[row.code]

    book = Workbook()
    book.remove(book.active)
    code = Column("编码 Code", lambda r: r.code, width=18)
    name = Column("指标名称 Indicator", zh, width=40)
    rate = Column("率 Rate", lambda r: r.rate, "rate")
    _sheet(
        book,
        "指标 Indicators",
        bulletin,
        [
            code,
            name,
            Column("Indicator (English)", lambda r: r.name_en, width=40),
            Column("单位 Unit", lambda r: UNIT[r.unit], width=8),
            Column("分子 Numerator", lambda r: r.numerator, "0"),
            Column("分母 Denominator", lambda r: r.denominator, "0"),
            rate,
            Column("目标 Target", lambda r: r.target, "rate"),
            Column("达标 Met", lambda r: MET[r.meets_target], width=16),
            Column("上月 Previous month", lambda r: r.previous_month_rate, "rate"),
            Column("去年同月 Same month last year", lambda r: r.year_ago_rate, "rate"),
            Column(
                "同比变化 Change on last year",
                lambda r: (
                    None if r.rate is None or r.year_ago_rate is None else r.rate - r.year_ago_rate
                ),
                "rate",
            ),
            Column("SPC信号 SPC signal", lambda r: SIDE[r.signal], width=18),
            Column("待判定 Pending", lambda r: r.pending, "0"),
            Column("排除 Excluded", lambda r: r.excluded, "0"),
            Column("分组 Group", lambda r: r.group),
        ],
        bulletin.indicators,
        unit_of=unit,
    )
    _sheet(
        book,
        "趋势 Trends",
        bulletin,
        [
            code,
            name,
            Column("月份 Month", lambda r: _month(r.month), "yyyy-mm", width=10),
            Column("分子 Numerator", lambda r: r.numerator, "0"),
            Column("分母 Denominator", lambda r: r.denominator, "0"),
            rate,
            Column("中心线 Center", lambda r: r.center, "rate"),
            Column("控制上限 UCL", lambda r: r.ucl, "rate"),
            Column("控制下限 LCL", lambda r: r.lcl, "rate"),
            Column("SPC信号 Signal", lambda r: SIDE[r.signal], width=18),
            Column("去年同月分子 Numerator a year earlier", lambda r: r.year_ago_numerator, "0"),
            Column(
                "去年同月分母 Denominator a year earlier", lambda r: r.year_ago_denominator, "0"
            ),
            Column("去年同月率 Rate a year earlier", lambda r: r.year_ago_rate, "rate"),
        ],
        bulletin.trends,
        unit_of=unit,
    )
    _sheet(
        book,
        "SPC信号 SPC signals",
        bulletin,
        [
            code,
            name,
            Column("月份 Month", lambda r: _month(r.month), "yyyy-mm", width=10),
            rate,
            Column("中心线 Center", lambda r: r.center, "rate"),
            Column("控制上限 UCL", lambda r: r.ucl, "rate"),
            Column("控制下限 LCL", lambda r: r.lcl, "rate"),
            Column("位置 Side", lambda r: SIDE[r.side], width=18),
            Column("有利 Favourable", lambda r: "有利 good" if r.favourable else "不利 bad"),
        ],
        bulletin.signals,
        unit_of=unit,
        empty="十二个月内无超出控制限的点 no point outside its limits in twelve months",
    )
    member = bulletin.scope == "region"
    _sheet(
        book,
        "成员未达标 Members" if member else "科室未达标 Departments",
        bulletin,
        [
            code,
            name,
            Column("成员 Member" if member else "科室 Department", lambda r: r.department),
            Column("名称 Name", lambda r: r.department_name, width=20),
            Column("分子 Numerator", lambda r: r.numerator, "0"),
            Column("分母 Denominator", lambda r: r.denominator, "0"),
            rate,
            Column("目标 Target", lambda r: r.target, "rate"),
            Column("差距 Shortfall", lambda r: r.shortfall, "rate"),
            Column("例数不足 Few cases", lambda r: "是 yes" if r.few_cases else ""),
        ],
        bulletin.departments_off_target,
        unit_of=unit,
        empty="无未达标 none missed a target",
    )
    if member:
        _sheet(
            book,
            "排名 League",
            bulletin,
            [
                code,
                name,
                Column("排名 Rank", lambda r: r.rank, "0", width=8),
                Column("成员 Member", lambda r: r.member_id),
                Column("名称 Name", lambda r: r.member_name, width=20),
                Column("已上报 Reported", lambda r: "是 yes" if r.reported else "未上报 no"),
                Column("分子 Numerator", lambda r: r.numerator, "0"),
                Column("分母 Denominator", lambda r: r.denominator, "0"),
                rate,
                Column("95%下限 95% low", lambda r: r.low, "rate"),
                Column("95%上限 95% high", lambda r: r.high, "rate"),
                Column(
                    "漏斗图位置 Funnel", lambda r: FUNNEL.get(r.funnel, r.funnel or ""), width=20
                ),
                Column("达标 Met", lambda r: MET[r.meets_target] if r.reported else "", width=16),
            ],
            bulletin.league,
            unit_of=unit,
        )
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
