// One table component for every list: a caption, column headers, rows, and an
// "Export CSV" button that writes exactly the rows shown (raw values, not labels).

import { h } from "./dom.js";
import { t } from "./i18n.js";
import { download, toCsv } from "./csv.js";

// columns: [{key, label, render?(row) → node|string, csv?(row) → value, num?: bool}]
export function dataTable({ caption, columns, rows, filename, rowClass, empty }) {
  const table = h("table", { class: "data" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
    h("tbody", {}, rows.length === 0
      ? h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty || t("noData")))
      : rows.map((row) => h("tr", { class: rowClass ? rowClass(row) : null },
        columns.map((c) => h("td", { class: c.num ? "num" : null }, c.render ? c.render(row) : fmt(row[c.key])))))),
  );
  const button = h("button", {
    type: "button",
    class: "btn-small csv",
    onClick: () => download(filename, toCsv(columns, rows)),
  }, t("exportCsv"));
  return h("div", { class: "table-wrap" }, h("div", { class: "table-tools" }, button), h("div", { class: "scroll" }, table));
}

function fmt(value) {
  return value === null || value === undefined ? "—" : String(value);
}
