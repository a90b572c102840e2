"""The bulletin as a PDF (ReportLab), in Chinese, with the CJK font embedded.

ReportLab draws TrueType outlines only, so the font is a TrueType CJK face found on
the machine at run time (Debian ``fonts-wqy-microhei``, ``fonts-wqy-zenhei`` or
``fonts-droid-fallback``; Noto CJK is CFF and cannot be used). It is subset and
embedded: the PDF reads the same on a machine without it. No font, no PDF: a 503
that names the package to install, rather than a bulletin of empty boxes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.lineplots import LinePlot  # type: ignore[import-untyped]
from reportlab.graphics.shapes import Drawing, Line, String  # type: ignore[import-untyped]
from reportlab.graphics.widgets.markers import makeMarker  # type: ignore[import-untyped]
from reportlab.lib import colors  # type: ignore[import-untyped]
from reportlab.lib.pagesizes import A4, landscape  # type: ignore[import-untyped]
from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped]
from reportlab.lib.units import mm  # type: ignore[import-untyped]
from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped]
from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped]
from reportlab.platypus import (  # type: ignore[import-untyped]
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from services.regions.bulletin import Bulletin, IndicatorLine, LeaguePosition, TrendPoint
from shared.errors import AppError

MEDIA_TYPE = "application/pdf"
FONT_NAME = "QcpulseCJK"
#: TrueType CJK fonts, in order of preference: (path, index of the face in a .ttc).
FONT_CANDIDATES: tuple[tuple[str, int], ...] = (
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
    ("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf", 0),
)
#: Trend charts in the PDF: the indicators that missed their target, most cases first,
#: then the others with data.
CHARTS = 4
MET = {True: "达标", False: "未达标", None: "无目标"}
SIDE = {"above": "高于上限", "below": "低于下限", None: ""}
FUNNEL = {
    "inside": "控制限内",
    "above_95": "高于95%限",
    "above_998": "高于99.8%限",
    "below_95": "低于95%限",
    "below_998": "低于99.8%限",
}
SUFFIX = {"percent": "%", "per_100": "/100", "per_1000": "/1000", "per_10000": "/10000"}


class FontMissingError(AppError):
    status_code = 503
    title = "Service unavailable"
    issue_code = "exception"


@lru_cache(maxsize=1)
def font_name() -> str:
    """Register the first CJK font found and return its ReportLab name."""
    for path, index in FONT_CANDIDATES:
        if Path(path).is_file():
            pdfmetrics.registerFont(TTFont(FONT_NAME, path, subfontIndex=index))
            return FONT_NAME
    raise FontMissingError(
        "no Chinese TrueType font for the PDF bulletin: install Debian's fonts-wqy-microhei "
        f"(looked for {', '.join(p for p, _ in FONT_CANDIDATES)})"
    )


def rate_text(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "percent":
        return f"{value * 100:.1f}%"
    return f"{value:.2f}{SUFFIX[unit]}"


def _styles(font: str) -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("base", fontName=font, fontSize=9, leading=12, wordWrap="CJK")
    return {
        "title": ParagraphStyle("title", parent=base, fontSize=20, leading=26, spaceAfter=4),
        "subtitle": ParagraphStyle("subtitle", parent=base, fontSize=11, leading=15),
        "h2": ParagraphStyle("h2", parent=base, fontSize=14, leading=20, spaceBefore=10),
        "body": base,
        "muted": ParagraphStyle("muted", parent=base, textColor=colors.HexColor("#555555")),
        "cell": ParagraphStyle("cell", parent=base, fontSize=8, leading=10),
    }


def _table(
    font: str, header: Sequence[str], rows: Sequence[Sequence[Any]], widths: Sequence[float]
) -> Table:
    table = Table(
        [list(header), *[list(r) for r in rows]], colWidths=widths, repeatRows=1, hAlign="LEFT"
    )
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), font),
                ("FONTSIZE", (0, 0), (-1, -1), 8),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde7f0")),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#aaaaaa")),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("ALIGN", (2, 1), (-1, -1), "RIGHT"),
            ]
        )
    )
    return table


#: The lines of a trend chart: label, colour, width, dashed, markers.
CHART_LINES: tuple[tuple[str, Any, float, bool, bool], ...] = (
    ("本期 rate", colors.HexColor("#1f5f99"), 1.6, False, True),
    ("去年同期 a year earlier", colors.HexColor("#8e8e8e"), 0.9, True, True),
    ("中心线 center", colors.HexColor("#2e8b57"), 0.7, False, False),
    ("控制上限 UCL", colors.HexColor("#c0392b"), 0.7, True, False),
    ("控制下限 LCL", colors.HexColor("#c0392b"), 0.7, True, False),
)


def _chart(font: str, line: IndicatorLine, points: Sequence[TrendPoint]) -> Drawing:
    """The twelve months' rate with its center line and limits, and a year earlier."""
    scale = 100.0 if line.unit == "percent" else 1.0
    width, height = 125 * mm, 64 * mm
    drawing = Drawing(width, height)
    title = f"{line.code} {line.name_zh}"
    drawing.add(String(0, height - 10, title[:48], fontName=font, fontSize=8))
    suffix = "%" if line.unit == "percent" else SUFFIX[line.unit]
    drawing.add(String(0, height - 20, suffix, fontName=font, fontSize=6))

    def series(values: Sequence[float | None]) -> list[tuple[int, float]]:
        return [(i, v * scale) for i, v in enumerate(values) if v is not None]

    values = (
        [p.rate for p in points],
        [p.year_ago_rate for p in points],
        [p.center for p in points],
        [p.ucl for p in points],
        [p.lcl for p in points],
    )
    drawn = [(spec, series(v)) for spec, v in zip(CHART_LINES, values, strict=True)]
    drawn = [(spec, data) for spec, data in drawn if data]
    if not drawn:
        drawing.add(String(30, height / 2, "无数据 no data", fontName=font, fontSize=8))
        return drawing
    plot = LinePlot()
    plot.x, plot.y = 28, 34
    plot.width, plot.height = width - 36, height - 62
    plot.data = [data for _, data in drawn]
    for index, ((_, colour, stroke, dashed, markers), _) in enumerate(drawn):
        plot.lines[index].strokeColor = colour
        plot.lines[index].strokeWidth = stroke
        if dashed:
            plot.lines[index].strokeDashArray = (3, 2)
        if markers:
            plot.lines[index].symbol = makeMarker("FilledCircle", size=3, fillColor=colour)
    plot.xValueAxis.valueMin, plot.xValueAxis.valueMax = 0, max(len(points) - 1, 1)
    plot.xValueAxis.valueSteps = list(range(len(points)))
    plot.xValueAxis.labelTextFormat = lambda i: points[int(i)].month[2:]
    for axis in (plot.xValueAxis, plot.yValueAxis):
        axis.labels.fontName = font
        axis.labels.fontSize = 6
    plot.yValueAxis.valueMin = 0
    drawing.add(plot)
    x = 28.0
    for (label, colour, stroke, dashed, _), _ in drawn:
        swatch = Line(x, 12, x + 12, 12, strokeColor=colour, strokeWidth=stroke)
        if dashed:
            swatch.strokeDashArray = (3, 2)
        drawing.add(swatch)
        drawing.add(String(x + 15, 10, label, fontName=font, fontSize=6))
        x += 15 + pdfmetrics.stringWidth(label, font, 6) + 10
    return drawing


def _charted(bulletin: Bulletin) -> list[IndicatorLine]:
    with_data = [i for i in bulletin.indicators if i.denominator > 0]
    missed = sorted(
        (i for i in with_data if i.meets_target is False), key=lambda i: (-i.denominator, i.code)
    )
    others = sorted(
        (i for i in with_data if i.meets_target is not False),
        key=lambda i: (-i.denominator, i.code),
    )
    return (missed + others)[:CHARTS]


def _league(bulletin: Bulletin, font: str, style: dict[str, ParagraphStyle]) -> list[Any]:
    """One table per indicator some member reported, best first; members that did not
    report are listed as such, not as zero."""
    by_code: dict[str, list[LeaguePosition]] = {}
    for position in bulletin.league:
        by_code.setdefault(position.code, []).append(position)
    out: list[Any] = []
    for line in bulletin.indicators:
        rows = by_code.get(line.code, [])
        if line.denominator == 0 or not rows:
            continue
        unit = line.unit
        out.append(
            Paragraph(
                f"{escape(line.code)} {escape(line.name_zh)} · 区域合计 "
                f"{rate_text(line.rate, unit)}（{line.numerator}/{line.denominator}）"
                f"· 目标 {rate_text(line.target, unit)}",
                style["body"],
            )
        )
        out.append(
            _table(
                font,
                ["排名", "成员", "分子", "分母", "率", "95%区间", "漏斗图位置", "达标"],
                [
                    [
                        "" if p.rank is None else p.rank,
                        Paragraph(escape(p.member_name), style["cell"]),
                        "" if p.numerator is None else p.numerator,
                        "" if p.denominator is None else p.denominator,
                        rate_text(p.rate, unit) if p.reported else "未上报",
                        (
                            f"{rate_text(p.low, unit)} – {rate_text(p.high, unit)}"
                            if p.low is not None and p.high is not None
                            else ""
                        ),
                        FUNNEL.get(p.funnel or "", p.funnel or ""),
                        MET[p.meets_target] if p.reported else "",
                    ]
                    for p in rows
                ],
                [14 * mm, 60 * mm, 18 * mm, 18 * mm, 22 * mm, 40 * mm, 30 * mm, 18 * mm],
            )
        )
        out.append(Spacer(1, 3 * mm))
    if not out:
        out.append(Paragraph("本月无成员上报。", style["body"]))
    return out


def render(bulletin: Bulletin) -> bytes:
    """The PDF's bytes (A4 landscape)."""
    font = font_name()
    style = _styles(font)
    units = bulletin.units()
    names = bulletin.names()

    def cell(text: str) -> Paragraph:
        return Paragraph(escape(text), style["cell"])

    with_data = [i for i in bulletin.indicators if i.denominator > 0]
    without = [i.code for i in bulletin.indicators if i.denominator == 0]
    met = sum(1 for i in with_data if i.meets_target is True)
    missed = sum(1 for i in with_data if i.meets_target is False)
    story: list[Any] = [
        Paragraph(escape(bulletin.title_zh), style["title"]),
        Paragraph(escape(bulletin.title_en), style["subtitle"]),
        Paragraph(
            f"统计期 {bulletin.period_from.isoformat()} 至 {bulletin.period_to.isoformat()}"
            f"（{bulletin.timezone}）· 生成于 {bulletin.generated_at:%Y-%m-%d %H:%M} UTC"
            + ("" if bulletin.complete else " · 本月尚未结束，数据为暂定")
            + (
                f" · 科室：{'、'.join(bulletin.departments)}"
                if bulletin.departments is not None
                else ""
            ),
            style["muted"],
        ),
        Spacer(1, 4 * mm),
        Paragraph(
            f"本月 {len(with_data)} 项指标有数据：达标 {met} 项，未达标 {missed} 项，"
            f"无目标 {len(with_data) - met - missed} 项；{len(without)} 项指标本月无数据。"
            f"十二个月内超出控制限的点 {len(bulletin.signals)} 个。",
            style["body"],
        ),
        Paragraph("一、指标达标情况 Indicators against targets", style["h2"]),
    ]
    story.append(
        _table(
            font,
            ["编码", "指标名称", "分子", "分母", "率", "目标", "达标", "去年同月", "SPC"],
            [
                [
                    i.code,
                    cell(i.name_zh),
                    i.numerator,
                    i.denominator,
                    rate_text(i.rate, i.unit),
                    rate_text(i.target, i.unit),
                    MET[i.meets_target],
                    rate_text(i.year_ago_rate, i.unit),
                    SIDE[i.signal],
                ]
                for i in with_data
            ],
            [32 * mm, 95 * mm, 17 * mm, 17 * mm, 20 * mm, 20 * mm, 16 * mm, 20 * mm, 18 * mm],
        )
        if with_data
        else Paragraph("本月无指标数据。", style["body"])
    )
    if without:
        story.append(Spacer(1, 2 * mm))
        story.append(Paragraph(f"本月无数据的指标：{'、'.join(without)}", style["muted"]))

    story.append(Paragraph("二、趋势 Trends (12 months, year on year)", style["h2"]))
    by_code: dict[str, list[TrendPoint]] = {}
    for point in bulletin.trends:
        by_code.setdefault(point.code, []).append(point)
    charts = [_chart(font, line, by_code.get(line.code, [])) for line in _charted(bulletin)]
    if charts:
        pairs = [charts[i : i + 2] for i in range(0, len(charts), 2)]
        story.append(Table([p + [""] * (2 - len(p)) for p in pairs], colWidths=[130 * mm] * 2))
    else:
        story.append(Paragraph("无趋势数据。", style["body"]))

    story.append(Paragraph("三、SPC 信号 Points outside the control limits", style["h2"]))
    story.append(
        _table(
            font,
            ["编码", "指标名称", "月份", "率", "中心线", "控制上限", "控制下限", "位置", "有利"],
            [
                [
                    s.code,
                    cell(names[s.code][0]),
                    s.month,
                    rate_text(s.rate, units[s.code]),
                    rate_text(s.center, units[s.code]),
                    rate_text(s.ucl, units[s.code]),
                    rate_text(s.lcl, units[s.code]),
                    SIDE[s.side],
                    "有利" if s.favourable else "不利",
                ]
                for s in bulletin.signals
            ],
            [32 * mm, 85 * mm, 16 * mm, 20 * mm, 20 * mm, 20 * mm, 20 * mm, 18 * mm, 14 * mm],
        )
        if bulletin.signals
        else Paragraph("十二个月内无超出控制限的点。", style["body"])
    )

    member = bulletin.scope == "region"
    story.append(
        Paragraph(
            "四、未达标成员 Members most off target"
            if member
            else "四、未达标科室 Departments most off target",
            style["h2"],
        )
    )
    story.append(
        _table(
            font,
            [
                "编码",
                "指标名称",
                "成员" if member else "科室",
                "分子",
                "分母",
                "率",
                "目标",
                "差距",
            ],
            [
                [
                    g.code,
                    cell(names[g.code][0]),
                    cell(g.department_name or g.department),
                    g.numerator,
                    g.denominator,
                    rate_text(g.rate, units[g.code]),
                    rate_text(g.target, units[g.code]),
                    rate_text(g.shortfall, units[g.code]) + (" *" if g.few_cases else ""),
                ]
                for g in bulletin.departments_off_target
            ],
            [32 * mm, 85 * mm, 40 * mm, 17 * mm, 17 * mm, 20 * mm, 20 * mm, 24 * mm],
        )
        if bulletin.departments_off_target
        else Paragraph("无未达标。", style["body"])
    )
    if any(g.few_cases for g in bulletin.departments_off_target):
        story.append(
            Paragraph("* 例数少于指标的最少例数（min_cases），解读需谨慎。", style["muted"])
        )

    if member:
        story.append(Paragraph("五、排名 League positions", style["h2"]))
        story.extend(_league(bulletin, font, style))

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, 7)
        canvas.drawString(
            15 * mm, 8 * mm, f"{bulletin.title_zh} · qcpulse · 第 {doc.page} 页 · 仅含汇总数据"
        )
        canvas.restoreState()

    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=landscape(A4),
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=12 * mm,
        bottomMargin=15 * mm,
        title=bulletin.title_zh,
        author="qcpulse",
        subject=bulletin.title_en,
    )
    document.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
