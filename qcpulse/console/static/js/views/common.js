// Pieces several views share: the filter bar, a card's status badge.

import { h, select } from "../dom.js";
import { t } from "../i18n.js";
import { currentMonth } from "../format.js";

export function departmentSelect(ctx, value, onChange) {
  const s = ctx.session;
  const options = [["", s.departments ? t("all") : t("allDepartments")]];
  for (const d of s.department_list) options.push([d.code, d.name ? `${d.name} (${d.code})` : d.code]);
  return select(t("department"), value || "", options, onChange);
}

export function monthInput(value, onChange) {
  const id = "month-filter";
  return h("div", { class: "field" },
    h("label", { for: id }, t("month")),
    h("input", { id, type: "month", value: value || currentMonth(), max: currentMonth(),
      onChange: (e) => e.target.value && onChange(e.target.value) }));
}

export function metBadge(met) {
  if (met === null || met === undefined) return h("span", { class: "badge neutral" }, t("noTarget"));
  return met ? h("span", { class: "badge ok" }, `✓ ${t("met")}`) : h("span", { class: "badge bad" }, `✗ ${t("notMet")}`);
}

export function unitHint(unit) {
  return { percent: "%", per_100: "/100", per_1000: "‰", per_10000: "‱" }[unit] || unit;
}
