// Charts drawn with Apache ECharts (vendored, global `echarts`). Each chart is disposed
// when its view is left, so a long session does not keep canvases alive.

import { t } from "./i18n.js";
import { chartValue } from "./format.js";

const live = new Set();
const COLORS = { line: "#0b5cad", limit: "#8a5a00", center: "#4a5560", bad: "#c62828", target: "#2e7d32" };

export function disposeCharts() {
  for (const chart of live) chart.dispose();
  live.clear();
}

function init(el) {
  const chart = echarts.init(el, null, { renderer: "canvas" });
  live.add(chart);
  return chart;
}

// A point broke a rule when its rate lies outside its own limits.
export function outside(point) {
  return point.rate !== null && point.ucl !== null && point.lcl !== null &&
    (point.rate > point.ucl + 1e-9 || point.rate < point.lcl - 1e-9);
}

export function sparkline(el, points, unit) {
  const chart = init(el);
  chart.setOption({
    animation: false,
    grid: { left: 2, right: 2, top: 4, bottom: 4 },
    xAxis: { type: "category", show: false, data: points.map((p) => p.period_start) },
    yAxis: { type: "value", show: false, scale: true },
    series: [{
      type: "line",
      data: points.map((p) => ({
        value: chartValue(p.rate, unit),
        itemStyle: outside(p) ? { color: COLORS.bad } : undefined,
        symbolSize: outside(p) ? 6 : 0,
      })),
      showSymbol: true,
      symbol: "circle",
      connectNulls: false,
      lineStyle: { width: 1.5, color: COLORS.line },
    }],
  });
  return chart;
}

// The p-chart (proportions) or u-chart (ratios) as the API computed it: the rate per
// period, the pooled center, the per-point 3-sigma limits (steps, since they follow each
// point's denominator), the target, and the points outside their limits in red.
export function controlChart(el, points, { unit, target, label }) {
  const chart = init(el);
  const x = points.map((p) => p.period_start);
  const value = (v) => chartValue(v, unit);
  const flagged = points.filter(outside);
  const pct = unit === "percent" ? "%" : "";
  chart.setOption({
    animation: false,
    aria: { enabled: true, label: { description: label } },
    tooltip: {
      trigger: "axis",
      valueFormatter: (v) => (v === null || v === undefined ? "—" : `${v}${pct}`),
    },
    legend: { top: 0, data: [t("rate"), t("center"), t("ucl"), t("lcl"), t("target")] },
    grid: { left: 48, right: 24, top: 36, bottom: 32 },
    xAxis: { type: "category", data: x },
    yAxis: { type: "value", scale: true, axisLabel: { formatter: `{value}${pct}` } },
    series: [
      {
        name: t("rate"),
        type: "line",
        data: points.map((p) => ({
          value: value(p.rate),
          symbolSize: outside(p) ? 10 : 5,
          itemStyle: { color: outside(p) ? COLORS.bad : COLORS.line },
        })),
        lineStyle: { color: COLORS.line, width: 2 },
        itemStyle: { color: COLORS.line },
        connectNulls: false,
        z: 3,
      },
      { name: t("center"), type: "line", data: points.map((p) => value(p.center)), symbol: "none",
        lineStyle: { color: COLORS.center, type: "solid", width: 1 }, itemStyle: { color: COLORS.center } },
      { name: t("ucl"), type: "line", step: "middle", data: points.map((p) => value(p.ucl)), symbol: "none",
        lineStyle: { color: COLORS.limit, type: "dashed", width: 1 }, itemStyle: { color: COLORS.limit } },
      { name: t("lcl"), type: "line", step: "middle", data: points.map((p) => value(p.lcl)), symbol: "none",
        lineStyle: { color: COLORS.limit, type: "dashed", width: 1 }, itemStyle: { color: COLORS.limit } },
      { name: t("target"), type: "line", data: points.map(() => value(target)), symbol: "none",
        lineStyle: { color: COLORS.target, type: "dotted", width: 1.5 }, itemStyle: { color: COLORS.target } },
    ],
  });
  el.dataset.flagged = String(flagged.length);
  return chart;
}

// Text for an ECharts tooltip, which renders HTML: member names are escaped.
function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// A region's funnel plot (Spiegelhalter): each member that reported at its volume
// (denominator) and rate, the centre line (the region's target, else its pooled rate)
// and the exact 95 % and 99.8 % limits of `funnel_curve`, as the league API computed
// them. Members outside the 95 % limits are drawn in red. `formatRate` formats a rate
// for the tooltip.
export function funnelPlot(el, league, { label, formatRate }) {
  const chart = init(el);
  const unit = league.unit;
  const value = (v) => chartValue(v, unit);
  const curve = league.funnel_curve || [];
  const limit = (key) => curve.map((p) => [p.denominator, value(p[key])]);
  const shown = league.members.filter((m) => m.rate !== null && m.denominator);
  const pct = unit === "percent" ? "%" : "";
  const span = curve.length ? [curve[0].denominator, curve[curve.length - 1].denominator] : [0, 1];
  // The y range of the members, the centre and the limits from half the smallest
  // member's volume on: the limits at a volume of 1 span the whole scale and would
  // flatten the points.
  const smallest = Math.min(...shown.map((m) => m.denominator));
  const ys = [...shown.map((m) => value(m.rate)), value(league.center),
    ...curve.filter((p) => p.denominator >= smallest / 2).flatMap((p) => [value(p.lower_998), value(p.upper_998)])]
    .filter((v) => v !== null && Number.isFinite(v));
  const pad = (Math.max(...ys) - Math.min(...ys)) * 0.08 || 1;
  const yMin = Math.max(0, Math.floor(Math.min(...ys) - pad));
  const yMax = Math.ceil(Math.max(...ys) + pad);
  const limitLine = (name, key, type) => ({
    name, type: "line", data: limit(key), symbol: "none", silent: true,
    lineStyle: { color: COLORS.limit, type, width: 1 }, itemStyle: { color: COLORS.limit },
  });
  chart.setOption({
    animation: false,
    aria: { enabled: true, label: { description: label } },
    tooltip: {
      trigger: "item",
      formatter: (p) => {
        if (p.seriesIndex !== 0) return esc(p.seriesName);
        const m = p.data.member;
        return `${esc(m.name)} (${esc(m.member)})<br>${esc(t("rate"))}: ${esc(formatRate(m.rate))}` +
          `<br>${esc(`${m.numerator}/${m.denominator}`)}<br>${esc(t(`funnel_${m.funnel}`))}`;
      },
    },
    legend: { top: 0, data: [t("members"), t("center"), t("limit95"), t("limit998")] },
    grid: { left: 56, right: 96, top: 36, bottom: 44 },
    xAxis: { type: "value", name: t("denominator"), nameLocation: "middle", nameGap: 28, min: 0 },
    yAxis: { type: "value", min: yMin, max: unit === "percent" ? Math.min(100, yMax) : yMax,
      axisLabel: { formatter: `{value}${pct}` } },
    series: [
      {
        name: t("members"),
        type: "scatter",
        data: shown.map((m) => ({
          name: m.name,
          member: m,
          value: [m.denominator, value(m.rate)],
          itemStyle: { color: m.funnel && m.funnel !== "inside" ? COLORS.bad : COLORS.line },
        })),
        symbolSize: 12,
        itemStyle: { color: COLORS.line },
        label: { show: true, position: "right", formatter: (p) => p.data.name, color: "#1d2329" },
        z: 5,
      },
      {
        name: t("center"), type: "line", symbol: "none", silent: true,
        data: league.center === null ? [] : span.map((x) => [x, value(league.center)]),
        lineStyle: { color: COLORS.center, width: 1.5 }, itemStyle: { color: COLORS.center },
      },
      limitLine(t("limit95"), "upper_95", "dashed"),
      limitLine(t("limit95"), "lower_95", "dashed"),
      limitLine(t("limit998"), "upper_998", "dotted"),
      limitLine(t("limit998"), "lower_998", "dotted"),
    ],
  });
  el.dataset.points = String(shown.length);
  return chart;
}

export function resizeCharts() {
  for (const chart of live) chart.resize();
}
window.addEventListener("resize", resizeCharts);
window.addEventListener("beforeprint", resizeCharts);
