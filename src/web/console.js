// Staff console (/console): the community's grids on a map, raising incidents, and each
// incident's live state with escalate, whistle, cancel, resolve and its timeline.

import { t, catalogName, onLangChange, applyI18n } from "/web/i18n.js";
import { api, boot, h, $, fmtTime, levelBadge, throttle, ask, setStatus, flash, ApiError, problemText } from "/web/common.js";
import { Live } from "/web/live.js";
import { mountInvite } from "/web/invite.js";
import { GeoMap } from "/web/map.js";
import { mountConsoleService } from "/web/console-service.js";
import { mountRegistration } from "/web/console-registration.js";
import { mountConsoleRequests } from "/web/console-requests.js";

const LEVELS = ["IV", "III", "II", "I"];
const ACTIVE = new Set(["open", "filled"]);

let catalog = { categories: [], skills: [], levels: [] };
let communityId = null;
let communityName = "";
let gridIds = [];
let map = null;
let live = null;
const incidents = new Map(); // id -> incident view (with open_offers)
const cards = new Map(); // id -> {li, refs}
const timelines = new Set(); // ids whose timeline is open
let idemKey = null;
let service = null;
let requests = null; // residents' requests and members' proposals (console-requests.js)
let unitList = []; // [{id, name}] for whistles to named units

boot("console", ["staff", "command"], start);

function randomKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function start(token, claims) {
  map = new GeoMap($("#map"), {
    focusable: true,
    onPick: pick,
    label: (f) => `${t("console.grid")} ${f.id}`,
    text: (f) => f.id.replace(/^.*-/, ""),
  });
  wireForm();
  service = mountConsoleService(() => catalog);
  requests = mountConsoleRequests(() => catalog);
  mountInvite($("#invite"), claims);
  mountRegistration($("#reg"), claims.community);
  live = new Live({
    token,
    key: `console.${claims.sub || claims.role}`,
    onFrame,
    onHello: () => {
      refresh();
      service.reload();
      requests.reload();
    },
    onStatus: setStatus,
  });
  try {
    catalog = await api("GET", "/v1/catalog");
    fillForm();
    if (claims.role === "staff") {
      communityId = claims.community;
    } else {
      const all = await api("GET", "/v1/communities");
      const mine = all.filter((c) => !claims.district || c.district_id === claims.district);
      const select = $("#community");
      select.replaceChildren(...mine.map((c) => h("option", { value: c.id }, `${c.name} (${c.id})`)));
      $("#community-pick").hidden = false;
      select.addEventListener("change", () => {
        communityId = select.value;
        incidents.clear();
        loadCommunity();
      });
      communityId = mine[0]?.id;
    }
    await loadCommunity();
    loadUnits();
  } catch (e) {
    flash($("#list-msg"), problemText(e), "error");
  }
  live.start();
  onLangChange(() => {
    fillForm();
    map.relabel();
    for (const inc of incidents.values()) updateCard(inc);
    for (const id of timelines) loadTimeline(id);
    service.relabel();
    requests.relabel();
  });
}

async function loadUnits() {
  try {
    // The units whose teams serve this community first, then the others.
    unitList = (await api("GET", "/v1/units")).map((u) => ({
      id: u.id,
      name: u.name,
      paired: (u.teams || []).some((tm) => tm.community_id === communityId),
    }));
    for (const inc of incidents.values()) updateCard(inc);
  } catch (_) {
    unitList = [];
  }
}

async function loadCommunity() {
  if (!communityId) return;
  const geo = await api("GET", `/v1/geo/communities/${encodeURIComponent(communityId)}`);
  map.load(geo);
  gridIds = geo.features.map((f) => f.id);
  communityName = geo.features[0]?.properties?.community_name || communityId;
  $("#community-name").textContent = `${communityName} (${communityId})`;
  const grid = $("#grid");
  grid.replaceChildren(...gridIds.map((id) => h("option", { value: id }, id)));
  selectGrid(gridIds[0]);
  await load();
  await service.setCommunity(communityId, gridIds);
  await requests.setCommunity(communityId);
}

// ---- the raise form ----

function fillForm() {
  const cat = $("#category");
  const keep = cat.value;
  cat.replaceChildren(...catalog.categories.map((c) => h("option", { value: c.id }, catalogName(c))));
  if (keep) cat.value = keep;

  const levels = $("#levels");
  const checked = levels.querySelector("input:checked")?.value || "IV";
  levels.replaceChildren(
    ...LEVELS.map((l) =>
      h(
        "label",
        { class: `lvl-${l}` },
        h("input", { type: "radio", name: "level", value: l, checked: l === checked, id: `level-${l}` }),
        h("span", {}, t("level.short." + l), h("br"), h("small", {}, t("level.name." + l))),
      ),
    ),
  );

  const skills = $("#skills");
  const on = new Set([...skills.querySelectorAll("input:checked")].map((i) => i.value));
  skills.replaceChildren(
    ...catalog.skills.map((s) =>
      h(
        "label",
        { class: "choice" },
        h("input", { type: "checkbox", name: "skill", value: s.id, checked: on.has(s.id) }),
        catalogName(s),
      ),
    ),
  );
}

function placeMode() {
  return $("#place-point-radio").checked ? "point" : "grid";
}

function showPlace() {
  const point = placeMode() === "point";
  $("#place-grid").hidden = point;
  $("#place-point").hidden = !point;
  const lat = parseFloat($("#lat").value);
  const lng = parseFloat($("#lng").value);
  map.setPin(point && isFinite(lat) && isFinite(lng) ? { lat, lng } : null);
}

function selectGrid(id) {
  if (!id) return;
  $("#grid").value = id;
  for (const g of gridIds) map.paint(g, g === id ? "selected" : "");
}

function pick(p) {
  if (p.id) selectGrid(p.id);
  if (isFinite(p.lat) && isFinite(p.lng)) {
    $("#lat").value = p.lat.toFixed(6);
    $("#lng").value = p.lng.toFixed(6);
  }
  if (!p.id) {
    $("#place-point-radio").checked = true;
  }
  showPlace();
  idemKey = null;
  $("#category").focus();
}

function wireForm() {
  for (const r of document.querySelectorAll('input[name="place"]')) r.addEventListener("change", showPlace);
  $("#grid").addEventListener("change", () => selectGrid($("#grid").value));
  for (const id of ["lat", "lng"]) $("#" + id).addEventListener("input", showPlace);
  $("#raise").addEventListener("input", () => (idemKey = null));
  $("#raise").addEventListener("submit", raise);
  $("#show-closed").addEventListener("change", renderList);
}

async function raise(e) {
  e.preventDefault();
  const msg = $("#raise-msg");
  const body = {
    category: $("#category").value,
    level: $("#levels input:checked")?.value || "IV",
    headcount: parseInt($("#headcount").value, 10),
    skills: [...document.querySelectorAll('#skills input:checked')].map((i) => i.value),
  };
  const note = $("#note").value.trim();
  if (note) body.note = note;
  if (placeMode() === "point") {
    const lat = parseFloat($("#lat").value);
    const lng = parseFloat($("#lng").value);
    if (!isFinite(lat) || !isFinite(lng)) {
      flash(msg, t("error.generic", { detail: `${t("console.lat")} / ${t("console.lng")}` }), "error");
      $("#lat").focus();
      return;
    }
    body.location = { lat, lng };
  } else {
    body.grid_id = $("#grid").value;
  }
  if (!(body.headcount >= 1)) {
    flash(msg, t("error.generic", { detail: t("console.headcount") }), "error");
    $("#headcount").focus();
    return;
  }
  idemKey = idemKey || randomKey();
  const button = $("#raise-submit");
  button.disabled = true;
  try {
    const inc = await api("POST", "/v1/incidents", body, { "Idempotency-Key": idemKey });
    idemKey = null;
    setIncident(inc);
    renderList();
    const n = inc.offers.filter((o) => o.state === "offered").length;
    flash(msg, t("console.raised", { id: inc.id, n }), "ok");
    $("#note").value = "";
  } catch (err) {
    // A network failure or 503 keeps the key, so pressing again is a safe retry.
    if (!(err instanceof ApiError && (err.status === 0 || err.status === 503))) idemKey = null;
    flash(msg, problemText(err), "error");
  } finally {
    button.disabled = false;
  }
}

// ---- incidents ----

function setIncident(view) {
  const inc = { ...view };
  inc.open_offers = (view.offers || []).filter((o) => o.state === "offered").length;
  incidents.set(inc.id, inc);
  updateCard(inc);
}

async function load() {
  try {
    const list = await api("GET", "/v1/incidents");
    const seen = new Set();
    for (const v of list) {
      if (v.community_id !== communityId) continue;
      seen.add(v.id);
      setIncident(v);
    }
    for (const id of [...incidents.keys()]) if (!seen.has(id)) incidents.delete(id);
    renderList();
    for (const id of timelines) loadTimeline(id);
    flash($("#list-msg"), "");
  } catch (e) {
    flash($("#list-msg"), problemText(e), "error");
  }
}

const refresh = throttle(load, 400);

function onFrame(f) {
  if (service.onFrame(f) || requests.onFrame(f)) return;
  if (!f.type.startsWith("incident.")) return;
  const id = f.data?.incident_id;
  const inc = incidents.get(id);
  if (!inc) {
    refresh();
    return;
  }
  if (f.data.incident) Object.assign(inc, f.data.incident);
  updateCard(inc);
  renderList();
  if (timelines.has(id)) loadTimelineSoon(id);
  // Whistles, offers and times are not in the frame: read the incident again soon.
  refresh();
}

function visible(inc) {
  return ACTIVE.has(inc.status) || $("#show-closed").checked;
}

function renderList() {
  const ul = $("#incidents");
  const order = [...incidents.values()]
    .filter((i) => i.community_id === communityId && visible(i))
    .sort((a, b) => (a.raised_at < b.raised_at ? 1 : a.raised_at > b.raised_at ? -1 : b.id.localeCompare(a.id)));
  const want = order.map((i) => cards.get(i.id)?.li || ensureCard(i).li);
  const now = [...ul.children];
  const same = want.length === now.length && want.every((li, i) => li === now[i]);
  if (!same) ul.replaceChildren(...want);
  $("#list-empty").hidden = order.length > 0;
  map.setMarkers(
    [...incidents.values()]
      .filter((i) => ACTIVE.has(i.status))
      .map((i) => ({
        id: i.id,
        lat: i.location.lat,
        lng: i.location.lng,
        cls: `lvl-${i.level} ${i.status}`,
        title: `${i.id} ${t("level." + i.level)} ${t("status." + i.status)}`,
      })),
  );
}

function ensureCard(inc) {
  let c = cards.get(inc.id);
  if (c) return c;
  const r = {};
  const btn = (key, cls, onclick) => {
    const b = h("button", { type: "button", class: "small " + (cls || ""), dataset: { action: key } }, t("console." + key));
    b.addEventListener("click", onclick);
    return b;
  };
  r.badge = h("span");
  r.title = h("span", { class: "title" });
  r.status = h("span", { class: "chip" });
  r.offered = h("b", { class: "n-offered" });
  r.accepted = h("b", { class: "n-accepted" });
  r.headcount = h("b", { class: "n-headcount" });
  r.arrived = h("b", { class: "n-arrived" });
  r.lOffered = h("span");
  r.lAccepted = h("span");
  r.lArrived = h("span");
  r.meter = h("meter", { min: 0, max: 1, value: 0 });
  r.meta = h("p", { class: "muted" });
  r.whistle = h("p", { class: "muted whistle" });
  r.msg = h("p", { class: "msg", role: "status" });
  r.timeline = h("ol", { class: "timeline", hidden: true });
  r.escalate = btn("escalate", "", () => act(inc.id, "escalate"));
  r.whistleBtn = btn("whistle", "", () => act(inc.id, "whistle"));
  r.whistleTo = h("select", { id: `whistle-to-${inc.id}`, class: "whistle-to" });
  r.whistleLabel = h("label", { for: r.whistleTo.id, class: "sr-label" });
  r.cancel = btn("cancel", "", () => act(inc.id, "cancel"));
  r.resolve = btn("resolve", "go", () => act(inc.id, "resolve"));
  r.tl = btn("timeline", "", () => toggleTimeline(inc.id));
  r.tl.setAttribute("aria-expanded", "false");
  const li = h(
    "li",
    { class: "incident", dataset: { id: inc.id } },
    h("div", { class: "card-head" }, r.badge, r.title, r.status, h("span", { class: "id" }, inc.id)),
    h(
      "div",
      { class: "counts" },
      h("span", {}, r.lOffered, " ", r.offered),
      h("span", {}, r.lAccepted, " ", r.accepted, "/", r.headcount),
      h("span", {}, r.lArrived, " ", r.arrived),
    ),
    r.meter,
    r.meta,
    r.whistle,
    h("div", { class: "actions" }, r.escalate, r.whistleLabel, r.whistleTo, r.whistleBtn, r.cancel, r.resolve, r.tl),
    r.msg,
    r.timeline,
  );
  c = { li, r };
  cards.set(inc.id, c);
  return c;
}

function updateCard(inc) {
  const { li, r } = ensureCard(inc);
  li.className = `incident lvl-${inc.level}` + (ACTIVE.has(inc.status) ? "" : " closed");
  li.dataset.status = inc.status;
  li.dataset.level = inc.level;
  r.badge.replaceWith((r.badge = levelBadge(inc.level)));
  const cat = catalog.categories.find((c) => c.id === inc.category);
  r.title.textContent = catalogName(cat, inc.category);
  r.status.textContent = t("status." + inc.status);
  r.status.dataset.status = inc.status;
  r.lOffered.textContent = t("counts.offered");
  r.lAccepted.textContent = t("counts.accepted");
  r.lArrived.textContent = t("counts.arrived");
  r.offered.textContent = inc.open_offers ?? 0;
  r.accepted.textContent = inc.accepted;
  r.headcount.textContent = inc.headcount;
  r.arrived.textContent = inc.arrived;
  r.meter.max = Math.max(1, inc.headcount);
  r.meter.value = inc.accepted;
  r.meter.setAttribute("aria-label", t("counts.progress"));
  const bits = [t("incident.grid", { grid: inc.grid_id })];
  if (inc.raised_at) bits.push(t("incident.raised", { at: fmtTime(inc.raised_at) }));
  if (inc.note) bits.push(inc.note);
  r.meta.textContent = bits.join(" · ");
  const ws = inc.whistles || [];
  if (ws.length) {
    const units = ws.flatMap((w) => w.units);
    const done = units.filter((u) => u.reported).length;
    const overdue = ws.some((w) => w.overdue && w.units.some((u) => !u.reported));
    r.whistle.textContent = t("console.whistles", { done, all: units.length }) + (overdue ? ` · ${t("console.overdue")}` : "");
    r.whistle.hidden = false;
  } else {
    r.whistle.hidden = true;
  }
  const active = ACTIVE.has(inc.status);
  r.escalate.disabled = inc.status !== "open" || inc.level === "I";
  r.whistleBtn.disabled = inc.status !== "open";
  r.whistleLabel.textContent = t("console.whistle.to");
  const to = r.whistleTo.value;
  r.whistleTo.replaceChildren(
    h("option", { value: "paired_units" }, t("console.whistle.paired")),
    h("option", { value: "street_units" }, t("console.whistle.street")),
    ...[true, false].map((paired) =>
      h(
        "optgroup",
        { label: t(paired ? "console.whistle.group.paired" : "console.whistle.group.other") },
        unitList.filter((u) => u.paired === paired).map((u) => h("option", { value: "unit:" + u.id }, t("console.whistle.unit", { name: u.name }))),
      ),
    ),
  );
  if (to) r.whistleTo.value = to;
  r.whistleTo.disabled = r.whistleBtn.disabled;
  r.cancel.disabled = !active;
  r.resolve.disabled = !active;
  for (const b of [r.escalate, r.whistleBtn, r.cancel, r.resolve]) b.textContent = t("console." + b.dataset.action);
  r.tl.textContent = t(timelines.has(inc.id) ? "console.timeline.hide" : "console.timeline");
}

/** Each action's path, written out (the coverage test looks for each in the page's code). */
const ACTIONS = {
  escalate: (id, body) => api("POST", `/v1/incidents/${id}/escalate`, body),
  whistle: (id, body) => api("POST", `/v1/incidents/${id}/whistle`, body),
  cancel: (id, body) => api("POST", `/v1/incidents/${id}/cancel`, body),
  resolve: (id, body) => api("POST", `/v1/incidents/${id}/resolve`, body),
};

async function act(id, action) {
  const inc = incidents.get(id);
  if (!inc) return;
  const { r } = ensureCard(inc);
  let body = {};
  if (action === "cancel") {
    const reason = await ask(t("console.cancel.ask", { id }), { input: true });
    if (reason === null) return;
    if (reason) body = { reason };
  } else if (action === "resolve") {
    const note = await ask(t("console.resolve.ask", { id }), { input: true });
    if (note === null) return;
    if (note) body = { note };
  } else if (action === "whistle") {
    const to = r.whistleTo.value || "paired_units";
    const whom = r.whistleTo.selectedOptions[0]?.textContent || t("console.whistle.paired");
    if ((await ask(t("console.whistle.ask.to", { id, whom }))) === null) return;
    body = { to: to.startsWith("unit:") ? [to.slice(5)] : to };
  }
  try {
    const view = await ACTIONS[action](encodeURIComponent(id), body);
    setIncident(view);
    renderList();
    flash(r.msg, t("console.done", { what: t("console." + action) }), "ok");
    if (timelines.has(id)) loadTimelineSoon(id);
  } catch (e) {
    flash(r.msg, problemText(e), "error");
  }
}

// ---- timelines ----

function toggleTimeline(id) {
  const { r } = cards.get(id);
  if (timelines.has(id)) {
    timelines.delete(id);
    r.timeline.hidden = true;
  } else {
    timelines.add(id);
    r.timeline.hidden = false;
    loadTimeline(id);
  }
  r.tl.setAttribute("aria-expanded", String(timelines.has(id)));
  r.tl.textContent = t(timelines.has(id) ? "console.timeline.hide" : "console.timeline");
}

const timelineTimers = new Map();
function loadTimelineSoon(id) {
  if (timelineTimers.has(id)) return;
  timelineTimers.set(
    id,
    setTimeout(() => {
      timelineTimers.delete(id);
      loadTimeline(id);
    }, 300),
  );
}

function describe(e) {
  const d = e.data || {};
  const parts = [];
  if (d.member_id) parts.push(d.member_id);
  if (d.from && d.to) parts.push(`${d.from} → ${d.to}`);
  if (d.level && e.type === "incident_raised") parts.push(t("level." + d.level));
  if (d.headcount && e.type === "incident_raised") parts.push(t("member.need", { n: d.headcount }));
  if (Array.isArray(d.units)) parts.push(d.units.join(", "));
  if (d.distance_m !== undefined && e.type === "member_arrived") parts.push(`${Math.round(d.distance_m)} m`);
  if (d.reason) parts.push(typeof d.reason === "string" ? d.reason : JSON.stringify(d.reason));
  if (d.note) parts.push(d.note);
  return parts.join(" · ");
}

async function loadTimeline(id) {
  const c = cards.get(id);
  if (!c) return;
  try {
    const entries = await api("GET", `/v1/incidents/${encodeURIComponent(id)}/timeline`);
    c.r.timeline.replaceChildren(
      ...entries.map((e) =>
        h(
          "li",
          { dataset: { type: e.type } },
          h("time", { dateTime: e.at }, fmtTime(e.at)),
          h("strong", {}, t("tl." + e.type)),
          " ",
          h("span", { class: "muted" }, [e.actor, describe(e)].filter(Boolean).join(" · ")),
        ),
      ),
    );
  } catch (e) {
    flash(c.r.msg, problemText(e), "error");
  }
}

applyI18n(document);
