// Command dashboard (/dashboard): the city's H3 cells coloured by supply against demand,
// incidents by level, live counters, mobilization progress, whistles awaiting an answer,
// and each district's mode with its switch, the audit, and outbound webhooks. Live from
// the command stream. City command also loads the city from a GeoJSON file here (a dry
// run with a preview first) and downloads it.

import { t, catalogName, onLangChange, applyI18n, getLang } from "/web/i18n.js";
import { api, boot, h, $, fmtTime, fmtDuration, levelBadge, throttle, ask, setStatus, flash, sayProblem, downloadCsv, download } from "/web/common.js";
import { Live } from "/web/live.js";
import { mountInvite } from "/web/invite.js";
import { mountWebhooks, refreshWebhooks, renderWebhooks } from "/web/webhooks.js";
import { GeoMap } from "/web/map.js";
import { mountMobilize, closeButton, renderProposals } from "/web/dashboard-command.js";
import { mountCampaigns, renderCampaigns, refreshCampaigns, campaignFrame, campaignPick } from "/web/dashboard-campaign.js";

const ACTIVE = new Set(["open", "filled"]);
const LIST_MAX = 50;

let claims = null;
let map = null;
let live = null;
let catalog = { categories: [] };
const incidents = new Map();
const communities = new Map(); // id -> GeoJSON properties
let balances = new Map();
let proposals = [];
let modes = null;
let mobs = [];
const unitNames = new Map();

boot("dashboard", ["command"], start);

async function start(token, c) {
  claims = c;
  map = new GeoMap($("#citymap"), { marker: 1 / 110, label: (f) => balanceTitle(f.id), onPick: campaignPick });
  $("#zoom-in").addEventListener("click", () => map.zoom(1.6));
  $("#zoom-out").addEventListener("click", () => map.zoom(1 / 1.6));
  $("#zoom-reset").addEventListener("click", () => home());
  for (const b of document.querySelectorAll("[data-pan]")) {
    b.addEventListener("click", () => {
      const [dx, dy] = b.dataset.pan.split(",").map(Number);
      map.pan(dx, dy);
    });
  }
  labelPans();
  mountInvite($("#invite"), claims);
  mountAudit();
  mountCityGeo();
  mountWebhooks($("#webhooks"), claims);
  mountMobilize(
    {
      districts: () => (modes?.districts || []).filter((d) => !claims.district || d.id === claims.district).map((d) => [d.id, d.name]),
      units: () => [...unitNames],
      communities: () =>
        [...communities].filter(([, p]) => !claims.district || p.district_id === claims.district).map(([id, p]) => [id, p.name]),
    },
    () => loadMobs(),
  );
  live = new Live({ token, key: `dash.${claims.sub || "command"}`, onFrame, onHello: refreshAll, onStatus: setStatus });
  try {
    catalog = await api("GET", "/v1/catalog");
    await loadGeo();
    loadUnits();
  } catch (e) {
    sayProblem($("#dash-msg"), e);
  }
  mountCampaigns($("#campaigns"), { claims, catalog: () => catalog, districts: () => (modes?.districts || []).map((d) => [d.id, d.name]), grids: (d) => [...communities.values()].filter((p) => !d || p.district_id === d).flatMap((p) => (p.grids || []).map((g) => [g, `${p.name} · ${g}`])) });
  live.start();
  onLangChange(() => {
    labelPans();
    map.relabel();
    renderIncidents();
    renderModes();
    renderMobs();
    renderProposalList();
    renderAudit();
    if (geoReport) renderGeoReport(geoReport);
    renderWebhooks();
    renderCampaigns();
  });
}

function labelPans() {
  for (const [id, dir] of [["pan-w", "w"], ["pan-n", "n"], ["pan-s", "s"], ["pan-e", "e"]])
    $("#" + id).setAttribute("aria-label", t("dash.pan", { dir: t("dash.dir." + dir) }));
}

async function loadGeo() {
  const geo = await api("GET", "/v1/geo/city");
  communities.clear();
  for (const f of geo.features) communities.set(f.id, f.properties);
  map.load(geo);
  home();
  paintBalance();
}

/** The whole city, or a district command's own district. */
function home() {
  if (!claims.district) {
    map.reset();
    return;
  }
  const mine = [...communities.values()].filter((p) => p.district_id === claims.district && p.center);
  if (!mine.length) {
    map.reset();
    return;
  }
  const lats = mine.map((p) => p.center.lat);
  const lngs = mine.map((p) => p.center.lng);
  const span = Math.max(Math.max(...lats) - Math.min(...lats), (Math.max(...lngs) - Math.min(...lngs)) * 0.75) + 0.02;
  map.focus((Math.max(...lats) + Math.min(...lats)) / 2, (Math.max(...lngs) + Math.min(...lngs)) / 2, span);
}

/** Unit names for the whistles (only /v1/fairness lists units; city command sees them all). */
async function loadUnits() {
  try {
    const f = await api("GET", "/v1/fairness");
    for (const u of f.units || []) unitNames.set(u.id, u.name);
    renderIncidents();
  } catch (_) {
    /* ids then */
  }
}

async function refreshAll() {
  await Promise.allSettled([loadIncidents(), loadBalance(), loadModes(), loadMobs(), refreshCampaigns()]);
}

async function guarded(f) {
  try {
    await f();
  } catch (e) {
    sayProblem($("#dash-msg"), e);
  }
}

// ---- incidents and counters ----

async function loadIncidents() {
  await guarded(async () => {
    const list = await api("GET", "/v1/incidents");
    incidents.clear();
    for (const v of list) {
      v.open_offers = (v.offers || []).filter((o) => o.state === "offered").length;
      delete v.offers;
      incidents.set(v.id, v);
    }
    renderIncidents();
  });
}

const refreshIncidents = throttle(loadIncidents, 800);

function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function renderCounters() {
  let open = 0;
  let offered = 0;
  let accepted = 0;
  let arrived = 0;
  const fills = [];
  for (const i of incidents.values()) {
    if (i.status === "open") open++;
    if (ACTIVE.has(i.status)) {
      offered += i.open_offers || 0;
      accepted += i.accepted || 0;
      arrived += i.arrived || 0;
    }
    if (i.filled_at && i.raised_at) fills.push(Date.parse(i.filled_at) - Date.parse(i.raised_at));
  }
  $("#count-open").textContent = open;
  $("#count-offered").textContent = offered;
  $("#count-accepted").textContent = accepted;
  $("#count-arrived").textContent = arrived;
  const m = median(fills);
  $("#median-fill").textContent = m === null ? t("none") : fmtDuration(m);
}

function communityName(id) {
  return communities.get(id)?.name || id;
}

function renderIncidents() {
  renderCounters();
  const active = [...incidents.values()].filter((i) => ACTIVE.has(i.status));
  map.setMarkers(
    active.map((i) => ({
      id: i.id,
      lat: i.location.lat,
      lng: i.location.lng,
      cls: `lvl-${i.level} ${i.status}`,
      title: `${i.id} · ${communityName(i.community_id)} · ${t("level." + i.level)} · ${t("status." + i.status)}`,
    })),
  );
  active.sort((a, b) => (a.raised_at < b.raised_at ? 1 : -1));
  $("#incidents").replaceChildren(
    ...active.slice(0, LIST_MAX).map((i) => {
      const cat = catalog.categories.find((c) => c.id === i.category);
      return h(
        "li",
        { class: `lvl-${i.level}`, dataset: { id: i.id, status: i.status } },
        h(
          "div",
          { class: "card-head" },
          levelBadge(i.level),
          h("span", { class: "title" }, catalogName(cat, i.category)),
          h("span", { class: "chip", dataset: { status: i.status } }, t("status." + i.status)),
          h("span", { class: "id" }, i.id),
        ),
        h(
          "div",
          { class: "counts" },
          h("span", {}, communityName(i.community_id)),
          h("span", {}, t("counts.offered"), " ", h("b", {}, i.open_offers ?? 0)),
          h("span", {}, t("counts.accepted"), " ", h("b", {}, `${i.accepted}/${i.headcount}`)),
          h("span", {}, t("counts.arrived"), " ", h("b", {}, i.arrived)),
        ),
      );
    }),
  );
  $("#inc-empty").hidden = active.length > 0;
  renderWhistles(active);
}

function renderWhistles(active) {
  const rows = [];
  for (const i of active) {
    for (const w of i.whistles || []) {
      const pending = w.units.filter((u) => !u.reported).map((u) => unitNames.get(u.unit_id) || u.unit_id);
      if (!pending.length) continue;
      rows.push(
        h(
          "li",
          { class: `lvl-${i.level}`, dataset: { id: i.id, whistle: w.whistle_id } },
          h(
            "div",
            { class: "card-head" },
            levelBadge(i.level),
            h("span", { class: "title" }, communityName(i.community_id)),
            w.overdue ? h("span", { class: "chip warn" }, t("console.overdue")) : null,
            h("span", { class: "id" }, `${i.id} · ${w.whistle_id}`),
          ),
          h("p", {}, t("dash.whistle.units", { units: pending.join("、") })),
          h("p", { class: "muted" }, t("dash.whistle.deadline", { t: fmtTime(w.deadline) })),
        ),
      );
    }
  }
  $("#whistles").replaceChildren(...rows);
  $("#wh-empty").hidden = rows.length > 0;
}

// ---- supply against demand ----

async function loadBalance() {
  await guarded(async () => {
    showBalance(await api("GET", "/v1/balance"));
  });
}

/** A balance as GET /v1/balance (or an applied proposal) answers it: the map recoloured. */
function showBalance(b) {
  balances = new Map(b.communities.map((c) => [c.community_id, c]));
  proposals = b.proposals || [];
  paintBalance();
  renderProposalList();
}

function renderProposalList() {
  renderProposals(proposals, communityName, showBalance, () => refreshBalance());
}

const refreshBalance = throttle(loadBalance, 1500);

function bucket(n) {
  if (n <= -10) return "b-d3";
  if (n <= -3) return "b-d2";
  if (n < 0) return "b-d1";
  if (n === 0) return "b-0";
  if (n < 5) return "b-s1";
  if (n < 20) return "b-s2";
  return "b-s3";
}

function balanceTitle(id) {
  const b = balances.get(id);
  const name = communityName(id);
  return b ? t("dash.balance.title", { name, available: b.available, demand: b.demand, balance: b.balance }) : name;
}

function paintBalance() {
  for (const id of communities.keys()) {
    const b = balances.get(id);
    map.paint(id, (b ? bucket(b.balance) : "b-none") + (b?.wartime ? " wartime" : ""), balanceTitle(id));
    map.areas.get(id)?.path.setAttribute("data-balance", b ? String(b.balance) : "");
  }
}

// ---- modes ----

async function loadModes() {
  await guarded(async () => {
    modes = await api("GET", "/v1/modes");
    renderModes();
  });
}

const refreshModes = throttle(loadModes, 800);

function modeCell(mode) {
  return h("span", { class: "mode", dataset: { mode } }, t("dash.mode." + mode));
}

function renderModes() {
  if (!modes) return;
  const rows = [];
  const cityWide = !claims.district;
  const switchBtn = (id, name, mode, allowed) => {
    const to = mode === "wartime" ? "peacetime" : "wartime";
    return allowed
      ? h(
          "button",
          { type: "button", class: "small switch", dataset: { district: id || "city", to }, on: { click: () => switchMode(id, name, to) } },
          t("dash.switch." + to),
        )
      : null;
  };
  rows.push(
    h(
      "tr",
      { dataset: { district: "city" } },
      h("th", { scope: "row" }, t("dash.city")),
      h("td", {}, modeCell(modes.city)),
      h("td", {}),
      h("td", {}, switchBtn(null, t("dash.city"), modes.city, cityWide)),
    ),
  );
  for (const d of modes.districts) {
    if (claims.district && d.id !== claims.district) continue;
    rows.push(
      h(
        "tr",
        { dataset: { district: d.id, mode: d.mode, effective: d.effective } },
        h("th", { scope: "row" }, d.name),
        h("td", {}, modeCell(d.mode)),
        h("td", { class: "muted" }, d.effective !== d.mode ? t("dash.mode.effective", { m: t("dash.mode." + d.effective) }) : ""),
        h("td", {}, switchBtn(d.id, d.name, d.mode, true)),
      ),
    );
  }
  const focused = document.activeElement?.dataset?.district;
  $("#modes tbody").replaceChildren(...rows);
  if (focused) $(`#modes button[data-district="${CSS.escape(focused)}"]`)?.focus();
}

async function switchMode(districtId, name, to) {
  const reason = await ask(t("dash.switch.ask", { name, mode: t("dash.mode." + to) }), { input: true, required: true });
  if (!reason) return;
  const path = districtId ? `/v1/districts/${encodeURIComponent(districtId)}/mode` : "/v1/city/mode";
  try {
    modes = await api("PUT", path, { mode: to, reason });
    renderModes();
    flash($("#modes-msg"), t("console.done", { what: `${name} → ${t("dash.mode." + to)}` }), "ok");
    refreshBalance();
  } catch (e) {
    sayProblem($("#modes-msg"), e);
  }
}

// ---- mobilizations ----

async function loadMobs() {
  await guarded(async () => {
    const open = await api("GET", "/v1/mobilizations?status=open");
    mobs = await Promise.all(open.map((m) => api("GET", `/v1/mobilizations/${encodeURIComponent(m.id)}`).catch(() => m)));
    renderMobs();
  });
}

const refreshMobs = throttle(loadMobs, 1500);

function progressRow(label, p) {
  return h(
    "tr",
    {},
    h("th", { scope: "row" }, label),
    h("td", {}, h("progress", { max: Math.max(1, p.ordered), value: p.reported, "aria-label": label })),
    h("td", { class: "num" }, `${p.reported}/${p.ordered}`),
    h("td", { class: "num muted" }, p.missing ? `−${p.missing}` : ""),
  );
}

function breakdown(titleKey, slices, name) {
  if (!slices?.length) return null;
  const sorted = [...slices].sort((a, b) => b.missing - a.missing || a.id.localeCompare(b.id));
  return h(
    "details",
    {},
    h("summary", {}, `${t(titleKey)} (${slices.length})`),
    h("div", { class: "table-wrap" }, h("table", {}, h("tbody", {}, sorted.map((s) => progressRow(name(s.id), s))))),
  );
}

function renderMobs() {
  const box = $("#mobs");
  const open = box.querySelectorAll("details[open]");
  const keep = new Set([...open].map((d) => d.closest("[data-mobilization]")?.dataset.mobilization + ":" + d.dataset.kind));
  box.replaceChildren(
    ...mobs.map((m) => {
      const teams = breakdown("dash.mob.teams", m.teams, (id) => id);
      const comms = breakdown("dash.mob.communities", m.communities, (id) => (id === "site" ? m.site?.name || id : communityName(id)));
      if (teams) teams.dataset.kind = "teams";
      if (comms) comms.dataset.kind = "communities";
      for (const d of [teams, comms]) if (d && keep.has(m.id + ":" + d.dataset.kind)) d.open = true;
      return h(
        "article",
        { class: "mob", dataset: { mobilization: m.id } },
        h("h3", {}, `${m.id}${m.note ? " · " + m.note : ""}`),
        h("p", { class: "muted" }, t("dash.mob.deadline", { t: fmtTime(m.deadline) })),
        h("progress", { max: Math.max(1, m.ordered), value: m.reported, "aria-label": m.id }),
        h("p", { class: "counts" }, t("dash.mob.counts", m)),
        h("div", { class: "actions" }, closeButton(m, () => loadMobs())),
        teams,
        comms,
      );
    }),
  );
  $("#mob-empty").hidden = mobs.length > 0;
}

// ---- the stream ----

function onFrame(f) {
  const d = f.data || {};
  if (f.type.startsWith("incident.")) {
    const inc = incidents.get(d.incident_id);
    if (inc && d.incident) {
      Object.assign(inc, d.incident);
      if (f.type === "incident.filled" && !inc.filled_at) inc.filled_at = new Date().toISOString();
      renderIncidents();
    }
    refreshIncidents();
    refreshBalance();
  } else if (f.type.startsWith("mobilization.")) {
    const m = mobs.find((x) => x.id === d.mobilization_id);
    if (m && d.progress) {
      Object.assign(m, d.progress);
      renderMobs();
    }
    refreshMobs();
  } else if (f.type === "mode.switched") {
    refreshModes();
    refreshBalance();
  } else if (f.type === "balance.transferred") {
    refreshBalance();
  } else if (f.type === "webhook.changed") {
    refreshWebhooks();
  } else if (campaignFrame(f)) {
    /* the campaign panel's */
  } else if (f.type === "city.imported") {
    guarded(loadGeo).then(refreshAll);
  }
}

applyI18n(document);

// ---------------------------------------------------------------- audit (审计)

const AUDIT_KINDS = [
  "mode_switched", "mobilization_ordered", "mobilization_closed", "units_whistled", "members_transferred",
  "members_registered", "unit_registered", "rated", "exchanged", "tokens_revoked", "invitation_issued",
  "invitation_revoked", "session_revoked", "webhook_registered", "webhook_enabled", "webhook_disabled",
  "webhook_secret_rotated", "webhook_deleted",
];
let auditRows = [];
let auditNext = null;

function mountAudit() {
  const select = $("#audit-kind");
  for (const k of AUDIT_KINDS) select.append(h("option", { value: k, dataset: { i18n: "audit.k." + k } }, t("audit.k." + k)));
  $("#audit-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadAudit(false);
  });
  $("#audit-more").addEventListener("click", () => loadAudit(true));
  $("#audit-csv").addEventListener("click", downloadAudit);
  loadAudit(false);
}

// The filters as a query (times from the local datetime inputs, sent as UTC).
function auditQuery(extra) {
  const q = new URLSearchParams();
  const kind = $("#audit-kind").value;
  const actor = $("#audit-actor").value.trim();
  const from = $("#audit-from").value;
  const to = $("#audit-to").value;
  if (kind) q.set("kind", kind);
  if (actor) q.set("actor", actor);
  if (from) q.set("from", new Date(from).toISOString());
  if (to) q.set("to", new Date(to).toISOString());
  for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
  return "/v1/audit?" + q.toString();
}

async function loadAudit(more) {
  const msg = $("#audit-msg");
  try {
    const page = await api("GET", auditQuery(more && auditNext !== null ? { after: auditNext } : {}));
    auditRows = more ? auditRows.concat(page.entries) : page.entries;
    auditNext = page.next;
    renderAudit();
    flash(msg, auditRows.length ? "" : t("audit.empty"));
  } catch (e) {
    sayProblem(msg, e);
  }
}

function placeText(p) {
  if (p.city_wide) return t("audit.city");
  return [...p.district_ids, ...p.community_ids].join(" / ") || "—";
}

function renderAudit() {
  const table = $("#audit-table");
  if (!table) return;
  const cols = ["seq", "at", "kind", "actor", "place", "summary"];
  table.replaceChildren(
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, t("audit.col." + c))))),
    h(
      "tbody",
      {},
      auditRows.map((e) =>
        h(
          "tr",
          {},
          h("td", {}, String(e.seq)),
          h("td", {}, h("time", { dateTime: e.at }, new Date(e.at).toLocaleString())),
          h("td", {}, t("audit.k." + e.kind)),
          h("td", {}, e.actor),
          h("td", {}, placeText(e.place)),
          h("td", {}, e.summary),
        ),
      ),
    ),
  );
  $("#audit-more").hidden = auditNext === null;
}

function downloadAudit() {
  const lang = getLang() === "en" ? "en" : "zh";
  return downloadCsv(auditQuery({ format: "csv", lang, limit: 500 }), "muster-audit.csv", $("#audit-msg"));
}

// ---- the city as GeoJSON (city command only: the API refuses a district's command)

let geoText = null;
let geoReport = null;
let geoPreview = null;
const GEO_FIGURES = ["districts", "streets", "communities", "grids", "cells", "units", "teams", "members"];

function mountCityGeo() {
  if (claims.district) return;
  $("#city-geo").hidden = false;
  geoPreview = new GeoMap($("#geo-preview"), {
    label: (f) => t("geo.grid", { id: f.properties?.id, n: f.properties?.cells }),
  });
  $("#geo-file").addEventListener("change", checkGeo);
  $("#geo-apply").addEventListener("click", applyGeo);
  $("#geo-export").addEventListener("click", downloadGeo);
}

/** The dry run of the chosen file: its report and the grids as tiled, nothing changed. */
async function checkGeo() {
  const msg = $("#geo-msg");
  const file = $("#geo-file").files[0];
  geoText = null;
  $("#geo-apply").disabled = true;
  $("#geo-report").hidden = true;
  if (!file) return;
  try {
    const text = await file.text();
    const r = await api("POST", "/v1/city/geojson?dry_run=true", text, { "Content-Type": "application/geo+json" });
    renderGeoReport(r);
    if (r.ok) geoText = text;
    $("#geo-apply").disabled = !r.ok;
    flash(msg, r.ok ? t("geo.checked") : t("geo.has_errors", { n: r.errors.length }), r.ok ? "ok" : "error");
  } catch (e) {
    flash(msg, e.detail || e.message, "error");
  }
}

function findingItem(f) {
  const where = f.feature ? `「${f.feature}」` : "";
  const cells = f.count ? " " + t("geo.cells", { n: f.count, sample: f.sample.slice(0, 3).join(", ") }) : "";
  return h("li", { dataset: { code: f.code, feature: f.feature || "" } }, `${t("geo.code." + f.code)}${where}: ${f.message}${cells}`);
}

function renderGeoReport(r) {
  geoReport = r;
  $("#geo-report").hidden = false;
  $("#geo-figures").replaceChildren(
    ...GEO_FIGURES.map((k) =>
      h("div", {}, h("dt", {}, t("geo.fig." + k)), h("dd", { id: "geo-fig-" + k }, String(r[k]))),
    ),
  );
  $("#geo-errors").replaceChildren(...(r.errors.length ? r.errors.map(findingItem) : [h("li", { class: "muted" }, t("geo.none"))]));
  $("#geo-warnings").replaceChildren(
    ...(r.warnings.length ? r.warnings.map(findingItem) : [h("li", { class: "muted" }, t("geo.none"))]),
  );
  geoPreview.load({ type: "FeatureCollection", features: r.preview.features.filter((f) => f.geometry) });
}

async function applyGeo() {
  const msg = $("#geo-msg");
  if (!geoText) return;
  const grids = $("#geo-fig-grids")?.textContent;
  const members = $("#geo-fig-members")?.textContent;
  if ((await ask(t("geo.confirm", { grids, members }))) === null) return;
  try {
    const r = await api("POST", "/v1/city/geojson", geoText, { "Content-Type": "application/geo+json" });
    flash(msg, t("geo.applied", { grids: r.grids, members: r.members }), "ok");
    geoText = null;
    $("#geo-apply").disabled = true;
    await loadGeo();
    loadUnits();
    refreshAll();
  } catch (e) {
    flash(msg, e.detail || e.message, "error");
  }
}

// The export with the signed-in token (a plain link would carry none).
function downloadGeo() {
  return download("/v1/city/geojson", "application/geo+json", "muster-city.geojson", $("#geo-msg"));
}
