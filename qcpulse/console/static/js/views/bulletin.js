// The monthly quality bulletin (质量安全月刊): a month, the XLSX and PDF downloads, and
// the bulletin's indicator table and departments off target (GET /api/v1/bulletins/…).
// A region's key reads its region's (GET /api/v1/regions/{region}/bulletins/…): the
// members pooled, and the members off target instead of departments.
// The files are fetched with the key in the Authorization header and handed to the
// browser as a blob: the key never goes into a link.

import { ApiError, api, auth } from "../api.js";
import { clear, h } from "../dom.js";
import { i18n, t } from "../i18n.js";
import { addMonths, currentMonth, dateTime, monthLabel, rate } from "../format.js";
import { dataTable } from "../table.js";
import { metBadge, monthInput } from "./common.js";

async function fetchFile(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${auth.key}` }, cache: "no-store" });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail || detail;
    } catch {
      // not problem JSON: keep the status text
    }
    throw new ApiError(response.status, detail);
  }
  return response.blob();
}

function saveBlob(blob, filename) {
  const href = URL.createObjectURL(blob);
  const a = h("a", { href, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 1000);
}

function signalLabel(side) {
  return side ? t(side === "above" ? "signalAbove" : "signalBelow") : "";
}

// The bulletin's JSON path for the key: the hospital's, or its region's.
export function bulletinPath(ctx, month) {
  const region = ctx.session.region;
  return region
    ? `/api/v1/regions/${encodeURIComponent(region.id)}/bulletins/${encodeURIComponent(month)}`
    : `/api/v1/bulletins/${encodeURIComponent(month)}`;
}

// The XLSX and PDF buttons of a month's bulletin; `status` (a role=status element)
// says what happened. Shared with the region's pages.
export function downloadButtons(ctx, month, status, className = "btn") {
  const base = bulletinPath(ctx, month);
  // The server's name: qcpulse-bulletin-{tenant or region}-{month}.{ext}
  const filename = (ext) => `qcpulse-bulletin-${ctx.session.tenant}-${month}.${ext}`;
  const downloadButton = (ext, label) => h("button", {
    type: "button",
    class: className,
    id: `bulletin-${ext}`,
    onClick: async (e) => {
      const button = e.currentTarget;
      button.disabled = true;
      status.className = "muted";
      status.textContent = t("downloading");
      try {
        saveBlob(await fetchFile(`${base}.${ext}`), filename(ext));
        status.textContent = t("downloaded", { file: filename(ext) });
      } catch (error) {
        status.className = "error";
        status.textContent = `${t("error")}${error.message}`;
      } finally {
        button.disabled = false;
      }
    },
  }, label);
  return [downloadButton("xlsx", t("downloadXlsx")), downloadButton("pdf", t("downloadPdf"))];
}

export async function render(main, ctx, params) {
  const month = params.month || addMonths(currentMonth(), -1);
  const status = h("p", { role: "status", id: "bulletin-status", class: "muted" });
  const body = h("div", {}, h("p", { class: "muted" }, t("loading")));
  const base = bulletinPath(ctx, month);
  const region = ctx.session.region;

  clear(main,
    h("h1", {}, `${t("bulletinTitle")} · ${monthLabel(month)}`),
    h("p", { class: "muted" }, t(region ? "bulletinLeadRegion" : "bulletinLead")),
    h("form", { class: "filters", onSubmit: (e) => e.preventDefault(), "aria-label": t("period") },
      monthInput(month, (v) => ctx.go("/bulletin", { month: v })),
      downloadButtons(ctx, month, status)),
    status,
    body);

  const bulletin = await api.get(base);
  const name = (line) => (i18n.lang === "zh" ? line.name_zh : line.name_en) || line.code;
  const lines = bulletin.indicators.filter((line) => line.denominator > 0);
  const order = (r) => (r.meets_target === false ? 0 : r.meets_target === true ? 1 : 2);
  lines.sort((a, b) => order(a) - order(b) || a.code.localeCompare(b.code));
  const count = (v) => lines.filter((r) => r.meets_target === v).length;
  const columns = [
    { key: "code", label: "Code" },
    { key: "name", label: t("indicator"), render: name, csv: name },
    { key: "rate", label: t("rate"), num: true, render: (r) => rate(r.rate, r.unit) },
    { key: "numerator", label: t("numerator"), num: true },
    { key: "denominator", label: t("denominator"), num: true },
    { key: "target", label: t("target"), num: true, render: (r) => rate(r.target, r.unit) },
    { key: "meets_target", label: t("met"), render: (r) => metBadge(r.meets_target) },
    { key: "year_ago_rate", label: t("yearAgo"), num: true, render: (r) => rate(r.year_ago_rate, r.unit) },
    { key: "signal", label: t("spcSignal"), render: (r) => signalLabel(r.signal), csv: (r) => r.signal },
  ];
  const units = Object.fromEntries(bulletin.indicators.map((line) => [line.code, line]));
  const gapColumns = [
    { key: "code", label: "Code" },
    { key: "indicator", label: t("indicator"), render: (g) => name(units[g.code]), csv: (g) => name(units[g.code]) },
    { key: "department", label: t(region ? "member" : "department"), render: (g) => g.department_name || g.department },
    { key: "rate", label: t("rate"), num: true, render: (g) => rate(g.rate, units[g.code].unit) },
    { key: "numerator", label: t("numerator"), num: true },
    { key: "denominator", label: t("denominator"), num: true },
    { key: "target", label: t("target"), num: true, render: (g) => rate(g.target, units[g.code].unit) },
    { key: "shortfall", label: t("shortfall"), num: true,
      render: (g) => `${rate(g.shortfall, units[g.code].unit)}${g.few_cases ? " ⚑" : ""}` },
  ];
  clear(body,
    h("p", { class: "muted" }, `${bulletin.title[i18n.lang] || bulletin.title.zh} · ${t("generatedAt")}: ${dateTime(bulletin.generated_at)}`),
    bulletin.complete ? null : h("p", {}, h("span", { class: "badge warn" }, t("bulletinProvisional"))),
    h("p", {}, t("bulletinSummary", {
      n: lines.length, met: count(true), notMet: count(false),
      none: bulletin.indicators.length - lines.length, signals: bulletin.signals.length,
    })),
    h("h2", {}, t("bulletinIndicators")),
    dataTable({ caption: `${t("bulletinIndicators")} · ${monthLabel(month)}`, filename: `qcpulse-bulletin-${month}.csv`, rows: lines, columns }),
    h("h2", {}, t(region ? "bulletinMembers" : "bulletinDepartments")),
    dataTable({
      caption: t(region ? "bulletinMembers" : "bulletinDepartments"),
      filename: `qcpulse-bulletin-${month}-${region ? "members" : "departments"}.csv`,
      rows: bulletin.departments_off_target,
      columns: gapColumns,
    }),
    bulletin.departments_off_target.some((g) => g.few_cases) ? h("p", { class: "muted" }, `⚑ ${t("smallDenominatorHint")}`) : null);
}
