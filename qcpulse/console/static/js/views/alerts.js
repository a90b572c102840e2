// The live alert feed: server-sent events from GET /api/v1/alerts/stream, read with
// fetch() because EventSource cannot send the Authorization header. Each event carries
// the whole list; new alerts are highlighted and announced through the page's live
// region. When the stream cannot be opened or drops, the feed polls GET /api/v1/alerts
// until the stream opens again. Admin keys also see each webhook subscription's
// delivery attempts.

import { api, auth } from "../api.js";
import { clear, h, select } from "../dom.js";
import { i18n, t } from "../i18n.js";
import { dateTime } from "../format.js";
import { dataTable } from "../table.js";

export const POLL_MS = 3000;

export async function render(main, ctx, params) {
  const status = params.status || "";
  const department = params.dept || "";
  const feed = h("div", { id: "alert-feed" });
  const state = h("p", { class: "muted live-state" }, h("span", { class: "dot", "aria-hidden": "true" }), t("liveOn"));
  const hooks = h("section", { "aria-labelledby": "hooks-h" });
  clear(main,
    h("div", { class: "page-head" }, h("h1", {}, t("liveFeed")), state),
    h("form", { class: "filters", onSubmit: (e) => e.preventDefault(), "aria-label": t("status") },
      select(t("status"), status, [["", t("allStatuses")], ...["open", "acknowledged", "resolved"].map((s) => [s, t(`alertStatus_${s}`)])],
        (v) => ctx.go("/alerts", { status: v, dept: department }))),
    feed, hooks);

  const seen = new Set();
  let first = true;
  let timer = null;
  let stopped = false;
  let controller = null;
  function show(data) {
    const fresh = data.alerts.filter((a) => !seen.has(a.id));
    data.alerts.forEach((a) => seen.add(a.id));
    if (!first && fresh.length) document.getElementById("live").textContent = t("newAlerts", { n: fresh.length });
    draw(data.alerts, first ? new Set() : new Set(fresh.map((a) => a.id)));
    first = false;
  }
  async function stream() {
    controller = new AbortController();
    const query = new URLSearchParams({ limit: "100" });
    if (status) query.set("status", status);
    if (department) query.set("department", department);
    const response = await fetch(`/api/v1/alerts/stream?${query}`, {
      headers: { Authorization: `Bearer ${auth.key}`, Accept: "text/event-stream" },
      cache: "no-store",
      signal: controller.signal,
    });
    if (!response.ok || !response.body) throw new Error(`stream: HTTP ${response.status}`);
    state.dataset.mode = "stream";
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done || stopped) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) show(JSON.parse(data));
      }
    }
  }
  async function poll() {
    try {
      show(await api.get("/api/v1/alerts", { status, department, limit: 100 }));
    } catch {
      // the next round tries again
    }
  }
  async function live() {
    while (!stopped) {
      try {
        await stream();
      } catch {
        if (stopped) return;
      }
      if (stopped) return;
      state.dataset.mode = "poll";
      await poll();
      await new Promise((resolve) => { timer = setTimeout(resolve, POLL_MS); });
    }
  }
  function draw(alerts, fresh) {
    clear(feed, dataTable({
      caption: t("alertsTitle"),
      filename: "qcpulse-alerts.csv",
      rows: alerts,
      empty: t("noAlerts"),
      rowClass: (a) => (fresh.has(a.id) ? "row-new" : null),
      columns: [
        { key: "created_at", label: t("createdAt"), render: (a) => dateTime(a.created_at) },
        { key: "type", label: t("type"), render: (a) => h("span", { class: `atype atype-${a.type.replace(".", "_")}` }, t(`alertType_${a.type.replace(".", "_")}`)) },
        { key: "indicator", label: t("indicator"), render: (a) => h("a", { href: `#/indicator/${encodeURIComponent(a.indicator.code)}` }, `${a.indicator.code}`), csv: (a) => a.indicator.code },
        { key: "department", label: t("department") },
        { key: "message", label: t("message"), render: (a) => (a.message ? a.message[i18n.lang] || a.message.zh : ""), csv: (a) => (a.message ? a.message[i18n.lang] : "") },
        { key: "status", label: t("status"), render: (a) => t(`alertStatus_${a.status}`) },
        { key: "ack", label: t("acknowledge"), csv: (a) => a.acknowledged_at, render: (a) => (a.status === "open"
          ? h("button", { type: "button", class: "btn-small", "aria-label": `${t("acknowledge")} ${a.id}`, onClick: async (e) => {
            e.target.disabled = true;
            await api.post(`/api/v1/alerts/${a.id}/ack`);
            await poll(); // the stream follows within a second
          } }, t("acknowledge"))
          : a.acknowledged_at ? `${t("acknowledged")} ${dateTime(a.acknowledged_at)}` : "—") },
      ],
    }));
  }
  await poll();
  live();
  if (ctx.session.permissions.includes("admin")) await webhooks(hooks);
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (controller) controller.abort();
  };
}

async function webhooks(slot) {
  const subs = (await api.get("/api/v1/subscriptions")).subscriptions;
  const detail = h("div", { id: "deliveries" });
  clear(slot, h("h2", { id: "hooks-h" }, t("webhooks")), dataTable({
    caption: t("subscription"),
    filename: "qcpulse-subscriptions.csv",
    rows: subs,
    columns: [
      { key: "id", label: "id" },
      { key: "url", label: "URL" },
      { key: "description", label: t("description") },
      { key: "enabled", label: "enabled", render: (s) => (s.enabled ? "✓" : `✗ ${s.disabled_reason || ""}`) },
      { key: "show", label: t("deliveries"), csv: () => "", render: (s) => h("button", { type: "button", class: "btn-small",
        onClick: () => deliveries(detail, s) }, t("showDeliveries")) },
    ],
  }), detail);
}

async function deliveries(slot, sub) {
  const data = await api.get(`/api/v1/subscriptions/${sub.id}/deliveries`, { limit: 50 });
  const attempts = data.deliveries.flatMap((d) => d.attempts.map((a) => ({ delivery: d.id, type: d.type, status: d.status, ...a })));
  clear(slot, dataTable({
    caption: `${t("deliveries")} · ${sub.url}`,
    filename: `${sub.id}-attempts.csv`,
    rows: attempts,
    columns: [
      { key: "delivery", label: "delivery" },
      { key: "type", label: t("type") },
      { key: "number", label: "#", num: true },
      { key: "at", label: t("time"), render: (a) => dateTime(a.at) },
      { key: "outcome", label: t("outcome") },
      { key: "status_code", label: t("statusCode"), num: true },
      { key: "latency_ms", label: t("latency"), num: true, render: (a) => (a.latency_ms === null ? "—" : `${a.latency_ms} ms`) },
      { key: "next_retry_at", label: t("nextRetry"), render: (a) => dateTime(a.next_retry_at) },
      { key: "error", label: t("error") },
    ],
  }));
}
