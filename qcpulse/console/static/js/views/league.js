// A region's league table for one indicator and period
// (GET /api/v1/regions/{region}/indicators/{code}/league?from=&to=): the funnel plot
// beside the table — rank, rate, numerator/denominator, Wilson (Poisson) 95 %
// interval, funnel position, ⚑ outside the 95 % limits — and the period's last month's
// bulletin. A member that did not report is shown as not reported, never as zero.

import { api } from "../api.js";
import { clear, h, select } from "../dom.js";
import { i18n, t } from "../i18n.js";
import { currentMonth, monthLabel, rate } from "../format.js";
import { funnelPlot } from "../charts.js";
import { dataTable } from "../table.js";
import { downloadButtons } from "./bulletin.js";
import { metBadge } from "./common.js";
import { lastMonth, regionPath, reportedBadge, targetText } from "./region.js";

function monthField(id, label, value, onChange) {
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("input", { id, type: "month", value, max: currentMonth(),
      onChange: (e) => e.target.value && onChange(e.target.value) }));
}

function periodLabel(from, to) {
  return from === to ? monthLabel(from) : `${monthLabel(from)} – ${monthLabel(to)}`;
}

export async function render(main, ctx, params, code) {
  let to = params.to || params.from || lastMonth();
  let from = params.from || to;
  if (from > to) [from, to] = [to, from];
  const apply = (change) => ctx.go(`/league/${encodeURIComponent(change.code || code)}`, { from, to, ...change, code: null });
  const indicator = ctx.indicators.find((i) => i.code === code);
  const title = indicator ? i18n.name(indicator) : code;
  const status = h("p", { role: "status", id: "bulletin-status", class: "muted" });
  const chartEl = h("div", { class: "chart", id: "funnel-chart", role: "img", "aria-label": `${t("funnelPlot")}: ${title}` });
  const summary = h("p", { id: "league-summary" }, t("loading"));
  const tableSlot = h("div", { id: "league-table" });
  const options = ctx.indicators.map((i) => [i.code, `${i.code} ${i18n.name(i)}`]);

  clear(main,
    h("p", {}, h("a", { href: `#/?${new URLSearchParams({ month: to })}` }, `← ${ctx.session.region.name}`)),
    h("div", { class: "page-head" },
      h("h1", {}, title),
      indicator ? h("p", { class: "muted" },
        `${indicator.code} · ${t(`group_${indicator.kind === "manual" ? "manual" : indicator.group}`)} · ${t(`kind_${indicator.kind}`)} · ${t(indicator.direction)}`) : null),
    h("form", { class: "filters", onSubmit: (e) => e.preventDefault(), "aria-label": t("period") },
      select(t("indicator"), code, options, (v) => apply({ code: v })),
      monthField("league-from", t("fromMonth"), from, (v) => apply({ from: v, to: v > to ? v : to })),
      monthField("league-to", t("toMonth"), to, (v) => apply({ to: v, from: v < from ? v : from }))),
    summary,
    h("section", { class: "card", "aria-labelledby": "funnel-h" },
      h("h2", { id: "funnel-h" }, `${t("funnelPlot")} — ${periodLabel(from, to)}`),
      chartEl,
      h("p", { class: "muted", id: "funnel-note" })),
    h("section", { "aria-labelledby": "region-league-h" },
      h("h2", { id: "region-league-h" }, `${t("regionLeague")} — ${periodLabel(from, to)}`),
      tableSlot),
    h("section", { class: "card", "aria-labelledby": "league-bulletin-h" },
      h("h2", { id: "league-bulletin-h" }, `${t("bulletinTitle")} · ${monthLabel(to)}`),
      h("div", { class: "filters" },
        downloadButtons(ctx, to, status, "btn-small"),
        h("a", { href: `#/bulletin?${new URLSearchParams({ month: to })}` }, t("openBulletin"))),
      status));

  const league = await api.get(regionPath(ctx, `/indicators/${encodeURIComponent(code)}/league`), { from, to });
  const unit = league.unit;
  const fmt = (v) => rate(v, unit);
  const members = league.members;
  const reported = members.filter((m) => m.reported).length;
  const pooled = league.pooled;
  clear(summary,
    `${t("pooled")}: ${fmt(pooled.rate)} (${pooled.numerator}/${pooled.denominator}) · `,
    `${t("target")}: ${targetText(league)} · `,
    `${t("center")}: ${fmt(league.center)}${league.center_source ? ` (${t(`centerSource_${league.center_source}`)})` : ""} · `,
    t("membersReported", { n: reported, total: members.length }));

  const note = document.getElementById("funnel-note");
  if (members.some((m) => m.rate !== null)) {
    funnelPlot(chartEl, league, { label: title, formatRate: fmt });
    const outliers = members.filter((m) => m.funnel && m.funnel !== "inside");
    note.textContent = outliers.length
      ? `⚑ ${t("outliers")}: ${outliers.map((m) => `${m.name} (${t(`funnel_${m.funnel}`)})`).join(", ")}`
      : t("noOutliers");
  } else {
    chartEl.remove();
    note.textContent = t("funnelNoData");
  }

  const notReported = h("span", { class: "badge neutral" }, t("notReported"));
  const num = (key) => (m) => (m.reported ? String(m[key]) : "—");
  tableSlot.append(
    h("p", { class: "muted" }, `⚑ ${t("outlierHint")}`),
    dataTable({
      caption: `${t("regionLeague")} · ${code}`,
      filename: `${league.region}-${code}-${from}-${to}-league.csv`,
      rows: members,
      rowClass: (m) => (!m.reported ? "row-missing" : m.funnel && m.funnel !== "inside" ? "row-bad" : null),
      columns: [
        { key: "rank", label: t("rank"), num: true, render: (m) => (m.rank === null ? "—" : String(m.rank)) },
        { key: "member", label: t("member"), render: (m) => `${m.name} (${m.member})` },
        { key: "rate", label: t("rate"), num: true, render: (m) => (m.reported ? fmt(m.rate) : notReported.cloneNode(true)) },
        { key: "numerator", label: t("numerator"), num: true, render: num("numerator") },
        { key: "denominator", label: t("denominator"), num: true, render: num("denominator") },
        { key: "ci95", label: t("ci95"), num: true,
          render: (m) => (m.ci95 ? `${fmt(m.ci95[0])} – ${fmt(m.ci95[1])}` : "—"),
          csv: (m) => (m.ci95 ? m.ci95.join(" ") : null) },
        { key: "funnel", label: t("funnel"),
          render: (m) => (m.funnel ? `${m.funnel !== "inside" ? "⚑ " : ""}${t(`funnel_${m.funnel}`)}` : "—") },
        { key: "assessment", label: t("assessment"), render: (m) => (m.assessment ? t(`assessment_${m.assessment}`) : "—") },
        { key: "meets_target", label: t("met"), render: (m) => (m.reported ? metBadge(m.meets_target) : "—") },
        { key: "reported", label: t("reportedStatus"), render: (m) => reportedBadge(m.reported) },
        { key: "months_missing", label: t("monthsMissing"),
          render: (m) => (m.months_missing.length ? m.months_missing.join(", ") : "—"),
          csv: (m) => m.months_missing.join(" ") },
      ],
    }));
}
