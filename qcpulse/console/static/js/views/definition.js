// An indicator definition in words: who is counted, what counts as met, the clock,
// where the rule comes from. The structure is the catalogue's (docs/INDICATORS.md);
// unfamiliar parts are shown as compact text rather than hidden.

import { h } from "../dom.js";
import { t } from "../i18n.js";
import { rate } from "../format.js";

function words(value) {
  if (value === null || value === undefined) return "—";
  if (Array.isArray(value)) return value.length ? value.map(words).join("; ") : "—";
  if (typeof value === "object") {
    return Object.entries(value)
      .filter(([, v]) => v !== null && v !== undefined && !(Array.isArray(v) && v.length === 0))
      .map(([k, v]) => `${k.replaceAll("_", " ")}: ${words(v)}`).join(", ");
  }
  return String(value);
}

export function definitionList(summary) {
  const d = summary.definition || {};
  const items = [
    [t("description"), summary.description],
    [t("population"), words(d.population)],
    [t("numerator"), words(d.numerator) === "—" && d.clock ? `${t("clockStop")} ≤ ${t("window")}` : words(d.numerator)],
    [t("exclusions"), words(d.exclusions)],
    d.clock ? [t("clock"), `${t("clockStart")}: ${words(d.clock.start)} · ${t("clockStop")}: ${words(d.clock.stop)} · ${t("window")}: ${words(d.clock.window)}`] : null,
    [t("direction"), t(summary.direction)],
    [t("target"), rate(summary.target, summary.unit)],
    [t("minCases"), d.min_cases ?? "—"],
    [t("source"), summary.source],
    summary.formula_source ? [t("formulaSource"), summary.formula_source] : null,
  ].filter(Boolean);
  return h("dl", { class: "definition" }, items.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}
