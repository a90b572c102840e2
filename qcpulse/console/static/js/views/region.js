// A region's home (质控中心, a region-reader key): its member hospitals and which of them
// reported the month (GET /api/v1/regions/{region}), the month's bulletin, and the
// indicators the region compares (…/indicators), each opening its league table.
// Aggregates only: a region key never reads cases, timelines or FHIR resources.

import { api } from "../api.js";
import { clear, h, select } from "../dom.js";
import { i18n, t } from "../i18n.js";
import { addMonths, currentMonth, monthLabel, rate } from "../format.js";
import { dataTable } from "../table.js";
import { downloadButtons } from "./bulletin.js";
import { monthInput } from "./common.js";

const GROUPS = ["national", "specialty", "regional", "other", "manual"];

export function regionPath(ctx, rest = "") {
  return `/api/v1/regions/${encodeURIComponent(ctx.session.region.id)}${rest}`;
}

export function lastMonth() {
  return addMonths(currentMonth(), -1);
}

export function reportedBadge(reported) {
  return reported
    ? h("span", { class: "badge ok" }, `✓ ${t("reported")}`)
    : h("span", { class: "badge neutral" }, t("notReported"));
}

export function targetText(indicator) {
  if (indicator.target === null || indicator.target === undefined) return "—";
  const source = indicator.target_source ? ` (${t(`targetSource_${indicator.target_source}`)})` : "";
  return `${rate(indicator.target, indicator.unit)}${source}`;
}

function inGroup(indicator, group) {
  if (!group) return true;
  if (group === "manual") return indicator.kind === "manual";
  return indicator.group === group && indicator.kind !== "manual";
}

export async function render(main, ctx, params) {
  const month = params.month || lastMonth();
  const group = params.group || "";
  const apply = (change) => ctx.go("/", { month, group, ...change });
  const region = ctx.session.region;
  const status = h("p", { role: "status", id: "bulletin-status", class: "muted" });
  const membersSlot = h("div", {}, h("p", { class: "muted" }, t("loading")));
  const shown = ctx.indicators.filter((i) => inGroup(i, group));
  const leagueHref = (code) => `#/league/${encodeURIComponent(code)}?${new URLSearchParams({ from: month, to: month })}`;

  clear(main,
    h("div", { class: "page-head" },
      h("h1", {}, region.name),
      h("p", { class: "muted" }, `${t("regionCentre")} · ${region.id} · ${monthLabel(month)}`)),
    h("p", { class: "muted" }, t("regionLead")),
    h("form", { class: "filters", onSubmit: (e) => e.preventDefault(), "aria-label": t("period") },
      monthInput(month, (v) => apply({ month: v })),
      select(t("group"), group, [["", t("allGroups")], ...GROUPS.map((g) => [g, t(`group_${g}`)])], (v) => apply({ group: v }))),
    h("section", { class: "card", "aria-labelledby": "members-h" },
      h("h2", { id: "members-h" }, `${t("members")} — ${monthLabel(month)}`),
      membersSlot),
    h("section", { class: "card", "aria-labelledby": "region-bulletin-h" },
      h("h2", { id: "region-bulletin-h" }, `${t("bulletinTitle")} · ${monthLabel(month)}`),
      h("div", { class: "filters" },
        downloadButtons(ctx, month, status, "btn-small"),
        h("a", { href: `#/bulletin?${new URLSearchParams({ month })}` }, t("openBulletin"))),
      status),
    h("section", { "aria-labelledby": "region-ind-h" },
      h("h2", { id: "region-ind-h" }, t("regionIndicators")),
      dataTable({
        caption: `${t("regionIndicators")} (${shown.length})`,
        filename: `qcpulse-region-${region.id}-indicators.csv`,
        rows: shown,
        columns: [
          { key: "code", label: "Code" },
          { key: "name", label: t("indicator"), render: (i) => h("a", { href: leagueHref(i.code) }, i18n.name(i)), csv: (i) => i18n.name(i) },
          { key: "group", label: t("group"), render: (i) => t(`group_${i.kind === "manual" ? "manual" : i.group}`) },
          { key: "kind", label: t("kind"), render: (i) => t(`kind_${i.kind}`) },
          { key: "direction", label: t("direction"), render: (i) => t(i.direction) },
          { key: "target", label: t("target"), num: true, render: targetText, csv: (i) => i.target },
          { key: "target_source", label: t("targetSource"), render: (i) => (i.target_source ? t(`targetSource_${i.target_source}`) : "—") },
        ],
      })));

  const info = await api.get(regionPath(ctx), { month });
  const reported = info.members.filter((m) => m.reported).length;
  clear(membersSlot,
    h("p", { id: "members-summary" }, t("membersReported", { n: reported, total: info.members.length })),
    dataTable({
      caption: t("members"),
      filename: `qcpulse-region-${region.id}-members-${month}.csv`,
      rows: info.members,
      rowClass: (m) => (m.reported ? null : "row-missing"),
      columns: [
        { key: "member", label: t("memberId") },
        { key: "name", label: t("member") },
        { key: "local", label: t("memberShape"), render: (m) => t(m.local ? "memberLocal" : "memberFederated") },
        { key: "reported", label: t("reportedStatus"), render: (m) => reportedBadge(m.reported) },
      ],
    }));
}
