// The console's shell: sign-in, the top bar, and a hash router that renders one view
// at a time. Views are modules under views/, each `render(main, ctx, params)` returning
// an optional cleanup (stop polling, dispose charts). A region's key (the session's
// `kind: "region"`) gets the region's routes only: aggregates, never cases, timelines
// or FHIR resources.

import { api, auth, whenUnauthorized } from "./api.js";
import { clear, h } from "./dom.js";
import { i18n, t } from "./i18n.js";
import { setTimeZone } from "./format.js";
import { disposeCharts } from "./charts.js";
import * as overview from "./views/overview.js";
import * as indicator from "./views/indicator.js";
import * as cases from "./views/cases.js";
import * as timeline from "./views/timeline.js";
import * as alerts from "./views/alerts.js";
import * as manual from "./views/manual.js";
import * as report from "./views/report.js";
import * as bulletin from "./views/bulletin.js";
import * as signin from "./views/signin.js";
import * as region from "./views/region.js";
import * as league from "./views/league.js";

const ROUTES = [
  [/^\/$/, overview],
  [/^\/indicator\/([^/]+)$/, indicator],
  [/^\/cases\/([^/]+)$/, cases],
  [/^\/case\/([^/]+)\/([^/]+)$/, timeline],
  [/^\/alerts$/, alerts],
  [/^\/manual$/, manual],
  [/^\/report$/, report],
  [/^\/bulletin$/, bulletin],
];

const REGION_ROUTES = [
  [/^\/$/, region],
  [/^\/league\/([^/]+)$/, league],
  [/^\/bulletin$/, bulletin],
];

const main = document.getElementById("main");
const ctx = { session: null, indicators: null, go, refresh: route };
let cleanup = null;

function go(path, params = {}) {
  const qs = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== ""));
  const hash = `#${path}${qs.toString() ? `?${qs}` : ""}`;
  if (location.hash === hash) route();
  else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  return { path, params: Object.fromEntries(new URLSearchParams(query || "")) };
}

async function loadSession() {
  ctx.session = await api.get("/console/api/session");
  if (ctx.session.kind === "region") {
    const path = `/api/v1/regions/${encodeURIComponent(ctx.session.region.id)}/indicators`;
    ctx.indicators = (await api.get(path)).indicators;
  } else {
    ctx.indicators = await api.get("/api/v1/indicators");
  }
  setTimeZone(ctx.session.timezone);
  i18n.defaultFor(ctx.session.timezone);
}

function topbar() {
  const bar = document.getElementById("topbar");
  const signedIn = Boolean(ctx.session);
  bar.hidden = !signedIn;
  document.documentElement.lang = i18n.lang === "zh" ? "zh-CN" : "en";
  document.title = t("appTitle");
  document.querySelector(".skip").textContent = t("skip");
  document.getElementById("lang").textContent = t("switchLang");
  document.getElementById("lang").setAttribute("lang", i18n.lang === "zh" ? "en" : "zh-CN");
  document.getElementById("signout").textContent = t("signOut");
  document.getElementById("dialog-close").textContent = t("close");
  if (!signedIn) return;
  const { path } = parseHash();
  const s = ctx.session;
  const links = s.region
    ? [["/", "navRegion"], ["/bulletin", "navBulletin"]]
    : [["/", "navOverview"], ["/alerts", "navAlerts"], ["/report", "navReport"], ["/bulletin", "navBulletin"]];
  if (s.permissions.includes("manual")) links.splice(2, 0, ["/manual", "navManual"]);
  const current = (href) => path === href || (href === "/" && s.region && path.startsWith("/league/"));
  clear(document.getElementById("nav"),
    links.map(([href, key]) => h("a", { href: `#${href}`, "aria-current": current(href) ? "page" : null }, t(key))),
    h("a", { href: "/docs", target: "_blank", rel: "noopener" }, t("navApi")));
  const scope = s.region ? t("regionCentre") : s.departments ? s.departments.join(", ") : t("allDepartments");
  clear(document.getElementById("who"), `${s.tenant_name} · ${s.role} · ${scope}`);
}

async function route() {
  if (cleanup) cleanup();
  cleanup = null;
  disposeCharts();
  if (!auth.key) {
    ctx.session = null;
    topbar();
    signin.render(main, { onKey: signIn });
    return;
  }
  if (!ctx.session) {
    clear(main, h("p", { class: "muted" }, t("loading")));
    try {
      await loadSession();
    } catch (error) {
      auth.clear();
      ctx.session = null;
      topbar();
      signin.render(main, { onKey: signIn, error: error.status === 401 ? t("signInFailed") : `${t("error")}${error.message}` });
      return;
    }
  }
  topbar();
  const { path, params } = parseHash();
  for (const [pattern, view] of ctx.session.region ? REGION_ROUTES : ROUTES) {
    const match = path.match(pattern);
    if (match) {
      clear(main);
      try {
        cleanup = (await view.render(main, ctx, params, ...match.slice(1).map(decodeURIComponent))) || null;
      } catch (error) {
        clear(main, h("p", { class: "error", role: "alert" }, `${t("error")}${error.message}`));
      }
      return;
    }
  }
  go("/");
}

async function signIn(key) {
  auth.set(key);
  ctx.session = null;
  await route();
  if (ctx.session) main.focus();
}

whenUnauthorized(() => {
  auth.clear();
  ctx.session = null;
  route();
});

document.getElementById("signout").addEventListener("click", () => {
  auth.clear();
  ctx.session = null;
  location.hash = "#/";
  route();
});

document.getElementById("lang").addEventListener("click", () => {
  i18n.set(i18n.lang === "zh" ? "en" : "zh");
  route();
});

document.getElementById("dialog-close").addEventListener("click", () => document.getElementById("dialog").close());

window.addEventListener("hashchange", route);
route();
