// The monthly report: every indicator's value for one month, the ones off target first,
// laid out for paper (print.css rules in console.css hide the navigation).

import { api, pool } from "../api.js";
import { clear, h } from "../dom.js";
import { i18n, t } from "../i18n.js";
import { currentMonth, dateTime, monthLabel, monthRange, rate } from "../format.js";
import { dataTable } from "../table.js";
import { departmentSelect, metBadge, monthInput } from "./common.js";

export async function render(main, ctx, params) {
  const month = params.month || currentMonth();
  const department = params.dept || "";
  const apply = (change) => ctx.go("/report", { month, dept: department, ...change });
  const body = h("div", {}, h("p", { class: "muted" }, t("loading")));
  clear(main,
    h("form", { class: "filters no-print", onSubmit: (e) => e.preventDefault(), "aria-label": t("period") },
      monthInput(month, (v) => apply({ month: v })),
      departmentSelect(ctx, department, (v) => apply({ dept: v })),
      h("button", { type: "button", class: "btn", onClick: () => window.print() }, t("print"))),
    h("article", { class: "report" },
      h("h1", {}, `${t("reportTitle")} · ${monthLabel(month)}`),
      h("p", { class: "muted" }, `${t("tenant")}: ${ctx.session.tenant_name} · ${t("department")}: ${department || t("allDepartments")} · ${t("timezone")}: ${ctx.session.timezone} · ${t("generatedAt")}: ${dateTime(new Date().toISOString())}`),
      body));

  const range = monthRange(month);
  const values = await pool(ctx.indicators, 6, (i) =>
    api.get(`/api/v1/indicators/${encodeURIComponent(i.code)}/value`, { ...range, department }));
  const rows = ctx.indicators.map((indicator, n) => ({ indicator, ...(values[n].error ? {} : values[n]) }));
  const order = (r) => (r.meets_target === false ? 0 : r.meets_target === true ? 1 : 2);
  rows.sort((a, b) => order(a) - order(b) || a.indicator.code.localeCompare(b.indicator.code));
  const count = (v) => rows.filter((r) => (r.meets_target ?? null) === v).length;
  const columns = [
    { key: "code", label: "Code", render: (r) => r.indicator.code, csv: (r) => r.indicator.code },
    { key: "name", label: t("indicator"), render: (r) => i18n.name(r.indicator), csv: (r) => i18n.name(r.indicator) },
    { key: "rate", label: t("rate"), num: true, render: (r) => rate(r.rate, r.indicator.unit) },
    { key: "numerator", label: t("numerator"), num: true },
    { key: "denominator", label: t("denominator"), num: true },
    { key: "target", label: t("target"), num: true, render: (r) => rate(r.target, r.indicator.unit) },
    { key: "meets_target", label: t("met"), render: (r) => metBadge(r.meets_target) },
  ];
  clear(body,
    h("p", {}, t("reportSummary", { met: count(true), notMet: count(false), none: count(null) })),
    h("h2", {}, t("reportNotMet")),
    dataTable({ caption: t("reportNotMet"), filename: `qcpulse-report-${month}-not-met.csv`, rows: rows.filter((r) => r.meets_target === false), columns }),
    h("h2", {}, t("cards")),
    dataTable({ caption: `${t("reportTitle")} · ${monthLabel(month)}`, filename: `qcpulse-report-${month}.csv`, rows, columns }));
}
