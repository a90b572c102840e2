// One case's timeline: the clinical facts of its episode with their times, and the
// case's clock (start, deadline, stop), so a 质控科 sees why a case missed.

import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { i18n, t } from "../i18n.js";
import { dateTime } from "../format.js";
import { dataTable } from "../table.js";
import { fhirButton } from "./fhir.js";

// The case row travels from the list in sessionStorage (the URL names only the case).
const STORE = "qcpulse.case";
export function rememberCase(code, row) {
  sessionStorage.setItem(STORE, JSON.stringify({ code, row }));
}
function recalled(code, key) {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE) || "null");
    return saved && saved.code === code && saved.row.case === key ? saved.row : null;
  } catch {
    return null;
  }
}

export async function render(main, ctx, params, code, key) {
  const row = recalled(code, key);
  const episode = row ? row.episode : `Encounter/${key}`;
  const indicator = ctx.indicators.find((i) => i.code === code) || { code, name: {} };
  const data = await api.get("/console/api/timeline", { episode });

  const events = [];
  if (data.arrival) events.push({ time: data.arrival, label: t("arrival"), kind: "episode", resource: data.episode });
  for (const f of data.facts) {
    const codes = f.codes.map((c) => c.code).join(", ");
    const value = f.value !== null ? ` = ${f.value}${f.unit ? ` ${f.unit}` : ""}` : "";
    events.push({ time: f.time, label: `${f.kind}${codes ? ` · ${codes}` : ""}${value}`, kind: "fact", resource: f.resource, status: f.status });
  }
  if (row) {
    events.push({ time: row.clock_start, label: t("clockStart"), kind: "clock" });
    if (row.deadline) events.push({ time: row.deadline, label: t("deadline"), kind: "deadline" });
    if (row.clock_stop) events.push({ time: row.clock_stop, label: t("clockStop"), kind: "clock" });
  }
  if (data.discharge) events.push({ time: data.discharge, label: t("discharge"), kind: "episode", resource: data.episode });
  events.sort((a, b) => (a.time ? Date.parse(a.time) : Infinity) - (b.time ? Date.parse(b.time) : Infinity));

  let verdict = null;
  if (row && row.deadline) {
    const stop = row.clock_stop ? Date.parse(row.clock_stop) : null;
    const deadline = Date.parse(row.deadline);
    if (stop === null) verdict = h("p", { class: "badge warn" }, t("stillOpen"));
    else if (stop > deadline) verdict = h("p", { class: "badge bad" }, t("missedBy", { n: Math.round((stop - deadline) / 60000) }));
    else verdict = h("p", { class: "badge ok" }, t("metWithin", { n: Math.round((deadline - stop) / 60000) }));
  }

  clear(main,
    h("p", {}, h("a", { href: `#/cases/${encodeURIComponent(code)}` }, `← ${t("cases")} · ${i18n.name(indicator)}`)),
    h("h1", {}, `${t("timeline")} · ${data.episode}`),
    h("dl", { class: "definition compact" },
      h("dt", {}, t("indicator")), h("dd", {}, `${indicator.code} ${i18n.name(indicator)}`),
      h("dt", {}, t("department")), h("dd", {}, data.department_name ? `${data.department_name} (${data.department})` : data.department),
      h("dt", {}, t("encounterClass")), h("dd", {}, data.class || "—"),
      row ? [h("dt", {}, t("status")), h("dd", {}, t(`status_${row.status}`))] : null,
      data.patient ? [h("dt", {}, t("patient")), h("dd", {}, fhirButton(data.patient))] : null),
    verdict,
    h("ol", { class: "timeline", id: "timeline", "aria-label": t("timeline") },
      events.map((e) => h("li", { class: `tl tl-${e.kind}` },
        h("time", { datetime: e.time || "" }, dateTime(e.time)),
        h("span", { class: "tl-label" }, e.label),
        e.resource ? fhirButton(e.resource) : null))),
    dataTable({
      caption: t("fact"),
      filename: `${data.episode.replace("/", "-")}-timeline.csv`,
      rows: events,
      columns: [
        { key: "time", label: t("time"), render: (e) => dateTime(e.time) },
        { key: "label", label: t("fact") },
        { key: "resource", label: t("resource") },
      ],
    }));
}
