// Numbers, rates and dates. Dates are shown in the tenant's time zone (not the
// browser's): a 质控科 in Beijing and an auditor abroad read the same times.

import { i18n } from "./i18n.js";

let timeZone = "Asia/Shanghai";
export function setTimeZone(tz) {
  timeZone = tz;
}
export function tenantTimeZone() {
  return timeZone;
}

function locale() {
  return i18n.lang === "zh" ? "zh-CN" : "en-GB";
}

export function dateTime(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(locale(), {
    timeZone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).format(new Date(iso));
}

export function time(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(locale(), {
    timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).format(new Date(iso));
}

// The tenant-local date of an instant, as YYYY-MM-DD.
export function localDate(instant = new Date()) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" })
      .formatToParts(instant).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}`;
}

export function currentMonth() {
  return localDate().slice(0, 7);
}

// First and last local day of a YYYY-MM month.
export function monthRange(month) {
  const [y, m] = month.split("-").map(Number);
  const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return { from: `${month}-01`, to: `${month}-${String(last).padStart(2, "0")}` };
}

export function addMonths(month, n) {
  const [y, m] = month.split("-").map(Number);
  const d = new Date(Date.UTC(y, m - 1 + n, 1));
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
}

export function monthLabel(month) {
  const [y, m] = month.split("-").map(Number);
  return new Intl.DateTimeFormat(locale(), { year: "numeric", month: "long", timeZone: "UTC" })
    .format(new Date(Date.UTC(y, m - 1, 1)));
}

// Rates come as a fraction for `percent`, already scaled for per_100/per_1000/per_10000.
export function rate(value, unit) {
  if (value === null || value === undefined) return "—";
  if (unit === "percent") return `${(value * 100).toFixed(1)}%`;
  const suffix = { per_100: "‰", per_1000: "‰", per_10000: "‱" }[unit];
  if (unit === "per_100") return `${value.toFixed(2)}/100`;
  return `${value.toFixed(2)}${suffix || ""}`;
}

// The value as a chart draws it: percent in 0–100, the others as they come.
export function chartValue(value, unit) {
  if (value === null || value === undefined) return null;
  return unit === "percent" ? Math.round(value * 10000) / 100 : value;
}

export function meets(value, target, direction) {
  if (value === null || value === undefined || target === null || target === undefined) return null;
  return direction === "lower_is_better" ? value <= target : value >= target;
}

export function minutes(value) {
  if (value === null || value === undefined) return "—";
  return `${Math.round(value)} ${i18n.t("min")}`;
}
