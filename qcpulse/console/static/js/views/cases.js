// The cases behind a number, paged by the API's cursor, filtered by status.

import { api } from "../api.js";
import { clear, h, select } from "../dom.js";
import { i18n, t } from "../i18n.js";
import { dateTime, minutes, monthRange } from "../format.js";
import { dataTable } from "../table.js";
import { departmentSelect } from "./common.js";
import { rememberCase } from "./timeline.js";

const STATUSES = ["pending", "numerator", "denominator", "excluded"];
const PAGE = 50;

export async function render(main, ctx, params, code) {
  const status = params.status || "";
  const department = params.dept || "";
  const month = params.month || "";
  const apply = (change) => ctx.go(`/cases/${encodeURIComponent(code)}`, { status, dept: department, month, ...change });
  const indicator = ctx.indicators.find((i) => i.code === code) || { code, name: {} };
  const listSlot = h("div", { id: "cases-list" });
  const pager = h("nav", { class: "pager", "aria-label": t("cases") });
  clear(main,
    h("p", {}, h("a", { href: `#/indicator/${encodeURIComponent(code)}?${new URLSearchParams(month ? { month } : {})}` }, `← ${i18n.name(indicator)}`)),
    h("h1", {}, `${t("cases")} · ${i18n.name(indicator)}`),
    h("form", { class: "filters", onSubmit: (e) => e.preventDefault(), "aria-label": t("status") },
      select(t("status"), status, [["", t("allStatuses")], ...STATUSES.map((s) => [s, t(`status_${s}`)])], (v) => apply({ status: v })),
      departmentSelect(ctx, department, (v) => apply({ dept: v })),
      h("div", { class: "field" }, h("label", { for: "cases-month" }, t("month")),
        h("input", { id: "cases-month", type: "month", value: month, onChange: (e) => apply({ month: e.target.value }) }))),
    listSlot, pager);

  const cursors = [null];
  let page = 0;
  async function load() {
    const range = month ? monthRange(month) : {};
    const data = await api.get(`/api/v1/indicators/${encodeURIComponent(code)}/cases`,
      { status, department, limit: PAGE, cursor: cursors[page], ...range });
    cursors[page + 1] = data.next_cursor;
    clear(listSlot, dataTable({
      caption: `${t("cases")} — ${t("page", { n: page + 1 })}`,
      filename: `${code}-cases${status ? `-${status}` : ""}-p${page + 1}.csv`,
      rows: data.cases,
      columns: [
        { key: "episode", label: t("episode"), render: (c) => h("a", {
          href: `#/case/${encodeURIComponent(code)}/${encodeURIComponent(c.case)}`,
          onClick: () => rememberCase(code, c),
        }, c.episode) },
        { key: "department", label: t("department") },
        { key: "status", label: t("status"), render: (c) => h("span", { class: `status status-${c.status}` }, t(`status_${c.status}`)) },
        { key: "clock_start", label: t("clockStart"), render: (c) => dateTime(c.clock_start) },
        { key: "deadline", label: t("deadline"), render: (c) => dateTime(c.deadline) },
        { key: "clock_stop", label: t("clockStop"), render: (c) => dateTime(c.clock_stop) },
        { key: "elapsed_minutes", label: t("elapsed"), num: true, render: (c) => minutes(c.elapsed_minutes) },
        { key: "period_date", label: t("periodDate") },
      ],
    }));
    clear(pager,
      h("button", { type: "button", class: "btn-small", disabled: page === 0, onClick: () => { page -= 1; load(); } }, t("previous")),
      h("span", { class: "muted" }, t("page", { n: page + 1 })),
      h("button", { type: "button", class: "btn-small", disabled: !data.next_cursor, onClick: () => { page += 1; load(); } }, t("next")));
  }
  await load();
}
