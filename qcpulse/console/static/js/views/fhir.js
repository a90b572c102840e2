// Opening a FHIR resource behind a case: fetched with the key (a plain link could not
// carry it) and shown in a dialog, as stored.

import { api } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";

export function fhirButton(reference) {
  return h("button", {
    type: "button",
    class: "btn-link",
    "aria-label": `${t("openResource")} ${reference}`,
    onClick: () => openResource(reference),
  }, reference);
}

export async function openResource(reference) {
  const dialog = document.getElementById("dialog");
  document.getElementById("dialog-title").textContent = reference;
  const body = document.getElementById("dialog-body");
  body.textContent = t("loading");
  dialog.showModal();
  try {
    body.textContent = JSON.stringify(await api.get(`/fhir/${reference}`), null, 2);
  } catch (error) {
    body.textContent = `${t("error")}${error.message}`;
  }
}
