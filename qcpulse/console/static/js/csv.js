// CSV export of any table the console shows: the rows as displayed (with raw values),
// UTF-8 with a BOM so that Excel reads Chinese names right.

function cell(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "object" ? JSON.stringify(value) : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function toCsv(columns, rows) {
  const lines = [columns.map((c) => cell(c.key)).join(",")];
  for (const row of rows) lines.push(columns.map((c) => cell(c.csv ? c.csv(row) : row[c.key])).join(","));
  return "\ufeff" + lines.join("\r\n") + "\r\n";
}

export function download(filename, text) {
  const blob = new Blob([text], { type: "text/csv;charset=utf-8" });
  const href = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = href;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 1000);
}
