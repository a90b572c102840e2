import { clear, h } from "../dom.js";
import { t } from "../i18n.js";

export function render(main, { onKey, error }) {
  const keyInput = h("input", {
    id: "key", name: "key", type: "password", autocomplete: "off", required: true,
    spellcheck: "false", "aria-describedby": "key-help",
  });
  const form = h("form", {
    class: "signin card",
    onSubmit: (e) => {
      e.preventDefault();
      const key = keyInput.value.trim();
      if (key) onKey(key);
    },
  },
  h("h1", {}, t("signInTitle")),
  h("p", { id: "key-help", class: "muted" }, t("signInLead")),
  error ? h("p", { class: "error", role: "alert" }, error) : null,
  h("div", { class: "field" }, h("label", { for: "key" }, t("key")), keyInput),
  h("button", { type: "submit", class: "btn" }, t("signIn")));
  clear(main, form);
  keyInput.focus();
}
