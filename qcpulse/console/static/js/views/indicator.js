// One indicator: the control chart by week/month/quarter, the department league table
// and the definition in words.

import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { i18n, t } from "../i18n.js";
import { addMonths, currentMonth, localDate, meets, monthLabel, monthRange, rate } from "../format.js";
import { controlChart, outside } from "../charts.js";
import { dataTable } from "../table.js";
import { departmentSelect, metBadge, monthInput } from "./common.js";
import { definitionList } from "./definition.js";

function seriesRange(granularity, month) {
  const { to } = monthRange(month);
  const end = to > localDate() ? localDate() : to;
  if (granularity === "quarter") return { from: monthRange(addMonths(month, -23)).from, to: end };
  if (granularity === "week") {
    const d = new Date(`${end}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() - 26 * 7);
    return { from: d.toISOString().slice(0, 10), to: end };
  }
  return { from: monthRange(addMonths(month, -11)).from, to: end };
}

export async function render(main, ctx, params, code) {
  const month = params.month || currentMonth();
  const department = params.dept || "";
  const summary = await api.get(`/api/v1/indicators/${encodeURIComponent(code)}`);
  const manual = summary.kind === "manual";
  const granularity = params.gran || "month";
  const apply = (change) => ctx.go(`/indicator/${encodeURIComponent(code)}`, { month, dept: department, gran: granularity, ...change });
  const unit = summary.unit;
  const minCases = summary.definition?.min_cases ?? 10;

  const grans = manual ? ["month", "quarter"] : ["week", "month", "quarter"];
  const switcher = h("div", { class: "segmented", role: "group", "aria-label": t("granularity") },
    grans.map((g) => h("button", {
      type: "button", "aria-pressed": String(g === granularity), class: g === granularity ? "on" : null,
      onClick: () => apply({ gran: g }),
    }, t(g === "month" ? "monthG" : g))));

  const chartEl = h("div", { class: "chart", id: "control-chart", role: "img",
    "aria-label": `${t("controlChart")}: ${i18n.name(summary)}` });
  const chartNote = h("p", { class: "muted", id: "chart-note" });
  const seriesSlot = h("div");
  const leagueSlot = h("section", { "aria-labelledby": "league-h" }, h("h2", { id: "league-h" }, `${t("league")} — ${monthLabel(month)}`));

  clear(main,
    h("p", {}, h("a", { href: "#/" }, `← ${t("navOverview")}`)),
    h("div", { class: "page-head" },
      h("h1", {}, i18n.name(summary)),
      h("p", { class: "muted" }, `${summary.code} · ${t(`group_${summary.group}`)} · ${t(`kind_${summary.kind}`)}`)),
    h("form", { class: "filters", onSubmit: (e) => e.preventDefault(), "aria-label": t("period") },
      departmentSelect(ctx, department, (v) => apply({ dept: v })),
      monthInput(month, (v) => apply({ month: v })),
      manual ? null : h("a", { class: "btn-small", href: `#/cases/${encodeURIComponent(code)}?${new URLSearchParams({ ...(department ? { dept: department } : {}), month })}` }, t("viewCases"))),
    h("section", { class: "card", "aria-labelledby": "chart-h" },
      h("div", { class: "section-head" },
        h("h2", { id: "chart-h" }, `${t("controlChart")} · ${summary.kind === "ratio" ? t("uChart") : t("pChart")}`),
        switcher),
      chartEl, chartNote, seriesSlot),
    leagueSlot,
    h("section", { class: "card", "aria-labelledby": "def-h" }, h("h2", { id: "def-h" }, t("definition")), definitionList(summary)));

  const range = seriesRange(granularity, month);
  const [series, breakdown] = await Promise.all([
    api.get(`/api/v1/indicators/${encodeURIComponent(code)}/series`, { granularity, ...range, department }),
    api.get(`/api/v1/indicators/${encodeURIComponent(code)}/breakdown`, monthRange(month)),
  ]);
  const points = series.points;
  controlChart(chartEl, points, { unit, target: summary.target, label: i18n.name(summary) });
  const flagged = points.filter(outside);
  chartNote.textContent = flagged.length
    ? `${t("outOfControl")}: ${flagged.map((p) => p.period_start).join(", ")}`
    : "";

  seriesSlot.append(dataTable({
    caption: `${t("series")} (${t(granularity === "month" ? "monthG" : granularity)})`,
    filename: `${code}-series-${granularity}${department ? `-${department}` : ""}.csv`,
    rows: points,
    rowClass: (p) => (outside(p) ? "row-bad" : null),
    columns: [
      { key: "period_start", label: t("periodStart") },
      { key: "numerator", label: t("numerator"), num: true },
      { key: "denominator", label: t("denominator"), num: true },
      { key: "rate", label: t("rate"), num: true, render: (p) => rate(p.rate, unit) },
      { key: "center", label: t("center"), num: true, render: (p) => rate(p.center, unit) },
      { key: "lcl", label: t("lcl"), num: true, render: (p) => rate(p.lcl, unit) },
      { key: "ucl", label: t("ucl"), num: true, render: (p) => rate(p.ucl, unit) },
      { key: "out_of_control", label: t("spcSignal"), render: (p) => (outside(p) ? "⚠" : ""), csv: (p) => outside(p) },
    ],
  }));

  const better = summary.direction === "lower_is_better" ? 1 : -1;
  const rows = [...breakdown.rows].sort((a, b) => {
    if (a.rate === null) return b.rate === null ? a.department.localeCompare(b.department) : 1;
    if (b.rate === null) return -1;
    return better * (a.rate - b.rate) || a.department.localeCompare(b.department);
  });
  const small = (r) => r.denominator < minCases;
  leagueSlot.append(
    h("p", { class: "muted" }, `⚑ ${t("smallDenominator")}: ${t("smallDenominatorHint")} (${t("minCases")} ${minCases})`),
    dataTable({
      caption: t("league"),
      filename: `${code}-departments-${month}.csv`,
      rows,
      rowClass: (r) => [small(r) ? "row-small" : null, r.department === department ? "row-current" : null].filter(Boolean).join(" ") || null,
      columns: [
        { key: "department", label: t("department"), render: (r) => h("a", {
          href: `#/indicator/${encodeURIComponent(code)}?${new URLSearchParams({ month, gran: granularity, dept: r.department })}`,
        }, r.department_name ? `${r.department_name} (${r.department})` : r.department) },
        { key: "rate", label: t("rate"), num: true, render: (r) => rate(r.rate, unit) },
        { key: "numerator", label: t("numerator"), num: true },
        { key: "denominator", label: t("denominator"), num: true, render: (r) => small(r)
          ? h("span", { class: "small-n", title: t("smallDenominatorHint") }, `${r.denominator} ⚑ ${t("smallDenominator")}`)
          : String(r.denominator) },
        { key: "target", label: t("target"), num: true, render: (r) => rate(r.target, unit) },
        { key: "meets_target", label: t("met"), render: (r) => metBadge(r.meets_target ?? meets(r.rate, r.target, summary.direction)) },
        { key: "small_denominator", label: t("smallDenominator"), render: (r) => (small(r) ? "⚑" : ""), csv: small },
      ],
    }));
}
