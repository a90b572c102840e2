// The overview: one card per indicator of the tenant's catalogue, this month's value,
// target, a 12-month sparkline and an SPC marker; filters by group, department, month.

import { api, pool } from "../api.js";
import { clear, h, select } from "../dom.js";
import { i18n, t } from "../i18n.js";
import { addMonths, currentMonth, meets, monthLabel, monthRange, rate } from "../format.js";
import { outside, sparkline } from "../charts.js";
import { dataTable } from "../table.js";
import { departmentSelect, metBadge, monthInput } from "./common.js";

const GROUPS = ["national", "specialty", "regional", "other", "manual"];

function inGroup(indicator, group) {
  if (!group) return true;
  if (group === "manual") return indicator.kind === "manual";
  return indicator.group === group && indicator.kind !== "manual";
}

export async function render(main, ctx, params) {
  const month = params.month || currentMonth();
  const group = params.group || "";
  const department = params.dept || "";
  const apply = (change) => ctx.go("/", { month, group, dept: department, ...change });
  const shown = ctx.indicators.filter((i) => inGroup(i, group));

  const summary = h("p", { class: "muted", id: "overview-summary" }, t("loading"));
  const grid = h("ul", { class: "cards", id: "cards", "aria-label": t("cards") });
  const tableSlot = h("div", { class: "overview-table" });
  clear(main,
    h("div", { class: "page-head" }, h("h1", {}, t("overviewTitle")), h("p", { class: "muted" }, monthLabel(month))),
    h("form", { class: "filters", onSubmit: (e) => e.preventDefault(), "aria-label": t("period") },
      select(t("group"), group, [["", t("allGroups")], ...GROUPS.map((g) => [g, t(`group_${g}`)])], (v) => apply({ group: v })),
      departmentSelect(ctx, department, (v) => apply({ dept: v })),
      monthInput(month, (v) => apply({ month: v }))),
    summary, grid, tableSlot);

  const { to } = monthRange(month);
  const from = monthRange(addMonths(month, -11)).from;
  const rows = [];
  let stopped = false;
  const cards = new Map();
  for (const indicator of shown) {
    const card = h("li", { class: "card indicator-card loading", dataset: { code: indicator.code } });
    cards.set(indicator.code, card);
    grid.append(card);
  }
  await pool(shown, 6, async (indicator) => {
    if (stopped) return;
    const series = await api.get(`/api/v1/indicators/${encodeURIComponent(indicator.code)}/series`,
      { granularity: "month", from, to, department });
    if (stopped) return;
    const points = series.points;
    const last = points[points.length - 1] || { numerator: 0, denominator: 0, rate: null };
    const met = meets(last.rate, indicator.target, indicator.direction);
    const signal = outside(last);
    rows.push({ indicator, last, met, signal });
    fillCard(cards.get(indicator.code), indicator, points, last, met, signal, { month, department });
  });
  if (stopped) return;
  const metN = rows.filter((r) => r.met === true).length;
  const notMet = rows.filter((r) => r.met === false).length;
  summary.textContent = `${shown.length} ${t("indicators")} · ${metN} ${t("metCount")} · ${notMet} ${t("notMetCount")}`;
  rows.sort((a, b) => a.indicator.code.localeCompare(b.indicator.code));
  tableSlot.append(dataTable({
    caption: `${t("overviewTitle")} — ${monthLabel(month)}`,
    filename: `qcpulse-overview-${month}${department ? `-${department}` : ""}.csv`,
    rows,
    columns: [
      { key: "code", label: "Code", render: (r) => r.indicator.code, csv: (r) => r.indicator.code },
      { key: "name", label: t("indicator"), render: (r) => i18n.name(r.indicator), csv: (r) => i18n.name(r.indicator) },
      { key: "rate", label: t("rate"), num: true, render: (r) => rate(r.last.rate, r.indicator.unit), csv: (r) => r.last.rate },
      { key: "numerator", label: t("numerator"), num: true, render: (r) => r.last.numerator, csv: (r) => r.last.numerator },
      { key: "denominator", label: t("denominator"), num: true, render: (r) => r.last.denominator, csv: (r) => r.last.denominator },
      { key: "target", label: t("target"), num: true, render: (r) => rate(r.indicator.target, r.indicator.unit), csv: (r) => r.indicator.target },
      { key: "meets_target", label: t("met"), render: (r) => metBadge(r.met), csv: (r) => r.met },
      { key: "spc_signal", label: t("spcSignal"), render: (r) => (r.signal ? "⚠" : ""), csv: (r) => r.signal },
    ],
  }));
  return () => {
    stopped = true;
  };
}

function fillCard(card, indicator, points, last, met, signal, { month, department }) {
  const spark = h("div", { class: "spark", role: "img", "aria-label": `${t("trend12")}: ${i18n.name(indicator)}` });
  const href = `#/indicator/${encodeURIComponent(indicator.code)}?${new URLSearchParams({ month, ...(department ? { dept: department } : {}) })}`;
  clear(card,
    h("a", { class: "card-link", href },
      h("span", { class: "card-code" }, indicator.code),
      h("span", { class: "card-name" }, i18n.name(indicator))),
    h("div", { class: "card-value" },
      h("span", { class: "big" }, rate(last.rate, indicator.unit)),
      h("span", { class: "muted" }, `${last.numerator}/${last.denominator}`)),
    h("div", { class: "card-meta" },
      h("span", {}, `${t("target")} ${rate(indicator.target, indicator.unit)}`),
      metBadge(met),
      signal ? h("span", { class: "badge warn", title: t("spcSignalLong") }, `⚠ ${t("spcSignal")}`) : null),
    spark);
  card.classList.remove("loading");
  card.classList.toggle("is-bad", met === false);
  sparkline(spark, points, indicator.unit);
}
