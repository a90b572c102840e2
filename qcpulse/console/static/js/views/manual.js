// Entering the monthly numerator and denominator of manual indicators.

import { api } from "../api.js";
import { clear, h, input, select } from "../dom.js";
import { i18n, t } from "../i18n.js";
import { addMonths, currentMonth, dateTime } from "../format.js";
import { dataTable } from "../table.js";

export async function render(main, ctx, params) {
  const manual = ctx.indicators.filter((i) => i.kind === "manual");
  if (!ctx.session.permissions.includes("manual")) {
    clear(main, h("h1", {}, t("manualTitle")), h("p", { class: "error" }, t("manualForbidden")));
    return;
  }
  if (!manual.length) {
    clear(main, h("h1", {}, t("manualTitle")), h("p", {}, t("manualNone")));
    return;
  }
  const code = params.code || manual[0].code;
  const indicator = manual.find((i) => i.code === code) || manual[0];
  const message = h("p", { role: "status", id: "manual-status" });
  const entries = h("div");
  const depts = ctx.session.departments
    ? ctx.session.department_list.map((d) => [d.code, d.name || d.code])
    : [["", t("wholeHospital")], ...ctx.session.department_list.map((d) => [d.code, d.name || d.code])];
  let dept = depts[0][0];
  const form = h("form", {
    class: "card manual-form",
    onSubmit: async (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      try {
        await api.put(`/api/v1/indicators/${encodeURIComponent(indicator.code)}/manual/${f.get("month")}`, {
          numerator: Number(f.get("numerator")),
          denominator: Number(f.get("denominator")),
          department: dept || null,
          note: f.get("note") || undefined,
        });
        message.className = "ok-text";
        message.textContent = t("saved");
        await list();
      } catch (error) {
        message.className = "error";
        message.textContent = `${t("error")}${error.message}`;
      }
    },
  },
  select(t("indicator"), indicator.code, manual.map((i) => [i.code, `${i.code} ${i18n.name(i)}`]), (v) => ctx.go("/manual", { code: v })),
  input(t("month"), { name: "month", type: "month", required: true, value: addMonths(currentMonth(), -1), max: currentMonth() }),
  select(t("department"), dept, depts, (v) => { dept = v; }),
  input(t("numerator"), { name: "numerator", type: "number", min: 0, step: 1, required: true }),
  input(t("denominator"), { name: "denominator", type: "number", min: 1, step: 1, required: true }),
  input(t("note"), { name: "note", type: "text", maxlength: 2000 }),
  h("button", { type: "submit", class: "btn" }, t("save")),
  message);
  clear(main, h("h1", {}, t("manualTitle")), h("p", { class: "muted" }, t("manualLead")), form, entries);

  async function list() {
    const data = await api.get(`/api/v1/indicators/${encodeURIComponent(indicator.code)}/manual`);
    clear(entries, dataTable({
      caption: `${t("entries")} · ${indicator.code}`,
      filename: `${indicator.code}-manual.csv`,
      rows: data.entries,
      columns: [
        { key: "month", label: t("month") },
        { key: "department", label: t("department"), render: (r) => r.department || t("wholeHospital") },
        { key: "numerator", label: t("numerator"), num: true },
        { key: "denominator", label: t("denominator"), num: true },
        { key: "note", label: t("note") },
        { key: "entered_by", label: t("enteredBy") },
        { key: "entered_at", label: t("enteredAt"), render: (r) => dateTime(r.entered_at) },
      ],
    }));
  }
  await list();
}
