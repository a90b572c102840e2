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

export function resizeCharts() {
  for (const chart of live) chart.resize();
}
window.addEventListener("resize", resizeCharts);
window.addEventListener("beforeprint", resizeCharts);
