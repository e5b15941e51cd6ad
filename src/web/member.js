// Member app (/m): duty switch, position (geolocation or by hand), live offers with sound
// and vibration, accept / decline / arrive, mobilization orders (ack, report), and the
// member's duties, load and hours. Everything live arrives on the member's own stream.

import { t, catalogName, onLangChange, applyI18n } from "/web/i18n.js";
import { api, boot, h, $, fmtTime, fmtDuration, fmtDistance, haversine, levelBadge, throttle, setStatus, flash, say, sayProblem, problemText } from "/web/common.js";
import { Live } from "/web/live.js";
import { mountDevices } from "/web/invite.js";
import { mountService } from "/web/member-service.js";
import { mountPush } from "/web/member-push.js";
import { mountPropose } from "/web/member-propose.js";
import { mountOffline } from "/web/member-offline.js";
import { mountShifts } from "/web/member-campaign.js";

const LOCATION_EVERY_MS = 10000;
const LOCATION_MOVE_M = 25;

let memberId = null;
let live = null;
let catalog = { categories: [], skills: [] };
let me = null;
let stateKey = "";
let state = { offers: {}, orders: {} };
let position = null; // {lat, lng, sent}
let lastSent = null;
let watchId = null;
let audio = null;
let service = null;
let propose = null; // 创单 (member-propose.js)
let offline = null; // the last state kept, the offline banner and the queue of answers
let fromCache = false;
let shifts = null; // the campaign shifts card (member-campaign.js)
const cards = new Map(); // "offer:<id>" | "order:<id>" -> {li, r}

boot("m", ["member"], start);

function save() {
  try {
    sessionStorage.setItem(stateKey, JSON.stringify(state));
  } catch (_) {
    /* memory only */
  }
  offline?.save({ state, me, position: position || offline.restore()?.position || null });
}

async function start(token, claims) {
  memberId = claims.member;
  const sub = claims.sub || "member:" + memberId;
  stateKey = "muster.mstate." + sub;
  const seqKey = "muster.seq.m." + sub;
  offline = mountOffline({ member: sub, live: () => live, onRefused });
  let resuming = false;
  try {
    const saved = sessionStorage.getItem(stateKey);
    if (saved) state = { offers: {}, orders: {}, ...JSON.parse(saved) };
    else sessionStorage.removeItem(seqKey); // no state to resume onto: start fresh
    resuming = Boolean(saved);
  } catch (_) {
    state = { offers: {}, orders: {} };
  }
  const kept = offline.restore();
  if (kept) {
    // Shown until the server answers (a new tab, or offline): the state kept last.
    if (!resuming && kept.state) {
      state = { offers: {}, orders: {}, ...kept.state };
      fromCache = true;
    }
    me = kept.me || null;
  }
  wire();
  render();
  showMe();
  const p = kept?.position;
  if (p) {
    // The last position, shown only: it is not sent again as the member's current one.
    $("#pos-text").removeAttribute("data-i18n");
    $("#pos-text").textContent = t("member.pos", { lat: p.lat.toFixed(5), lng: p.lng.toFixed(5) });
  }
  service = mountService({
    memberId,
    catalog: () => catalog,
    fallback: () => position,
    onMember: (view) => {
      me = { ...me, ...view };
      showMe();
    },
    onStats: () => reloadMe(),
    onAlert: () => alertUser(),
  });
  shifts = mountShifts($("#shifts-card"), { roles: () => catalog.campaign_roles, fallback: () => position, onAlert: () => alertUser() });
  mountDevices($("#devices-card"), claims);
  mountPush();
  propose = mountPropose($("#propose-card"), { memberId });
  live = new Live({
    token,
    key: "m." + sub,
    onFrame,
    onHello,
    onStatus: (s) => {
      setStatus(s);
      offline.status(s);
    },
    onReset: () => {
      state = { offers: {}, orders: {} };
      save();
      render();
    },
  });
  live.start();
  setInterval(tick, 1000);
  onLangChange(() => {
    render(true);
    service.render(true);
    propose.relabel();
    shifts.render(true);
    showMe();
    if (position) showPosition();
  });
  try {
    catalog = await api("GET", "/v1/catalog");
    render(true);
    service.render(true);
    shifts.render(true);
  } catch (_) {
    /* names fall back to ids */
  }
  await loadMe();
}

async function loadMe() {
  try {
    me = await api("GET", `/v1/members/${encodeURIComponent(memberId)}`);
    if (!position && me.position) {
      position = { lat: me.position.lat, lng: me.position.lng };
      $("#lat").value = position.lat.toFixed(6);
      $("#lng").value = position.lng.toFixed(6);
      showPosition();
    }
    showMe();
    save();
  } catch (e) {
    if (e?.status !== 0 || !me) sayProblem($("#me-msg"), e);
  }
}

const reloadMe = throttle(loadMe, 1000);

function showMe() {
  if (!me) return;
  $("#me-name").textContent = `${me.name} (${me.id})`;
  const on = !!me.on_call;
  const duty = $("#duty");
  duty.setAttribute("aria-pressed", String(on));
  duty.setAttribute("aria-label", t("member.duty"));
  const label = $("#duty-label");
  label.dataset.i18n = on ? "member.duty.on" : "member.duty.off";
  label.textContent = t(label.dataset.i18n);
  $("#wartime").hidden = !me.wartime_on_call;
  $("#stat-duties").textContent = me.duties ?? t("none");
  $("#stat-load").textContent = typeof me.load === "number" ? me.load.toFixed(1) : t("none");
  $("#stat-hours").textContent = typeof me.duty_hours === "number" ? me.duty_hours.toFixed(1) : t("none");
  $("#stat-points").textContent = typeof me.points_balance === "number" ? me.points_balance.toFixed(1) : t("none");
  $("#stat-service-hours").textContent = typeof me.hours_balance === "number" ? me.hours_balance.toFixed(1) : t("none");
}

function wire() {
  $("#duty").addEventListener("click", async () => {
    unlockAudio();
    if (!me) return;
    const want = !me.on_call;
    try {
      await live.send("duty", { on_call: want });
      me.on_call = want;
      showMe();
    } catch (e) {
      sayProblem($("#me-msg"), e);
    }
  });
  $("#share").addEventListener("click", () => {
    unlockAudio();
    if (watchId !== null) stopSharing();
    else startSharing();
  });
  $("#manual").addEventListener("submit", (e) => {
    e.preventDefault();
    unlockAudio();
    const lat = parseFloat($("#lat").value);
    const lng = parseFloat($("#lng").value);
    if (!isFinite(lat) || !isFinite(lng) || Math.abs(lat) > 90 || Math.abs(lng) > 180) {
      say($("#pos-msg"), "member.pos.invalid", undefined, "error");
      return;
    }
    position = { lat, lng };
    showPosition();
    sendLocation(true);
  });
  document.addEventListener("pointerdown", unlockAudio, { once: true });
  document.addEventListener("keydown", unlockAudio, { once: true });
}

// ---- position ----

function showPosition() {
  const p = $("#pos-text");
  if (position) {
    p.removeAttribute("data-i18n");
    p.textContent = t("member.pos", { lat: position.lat.toFixed(5), lng: position.lng.toFixed(5) });
  }
  renderOffers();
  service?.render();
}

async function sendLocation(force) {
  if (!position || !live?.connected) return;
  const now = Date.now();
  if (!force && lastSent) {
    const moved = haversine(lastSent, position);
    if (now - lastSent.at < LOCATION_EVERY_MS && moved < LOCATION_MOVE_M) return;
  }
  lastSent = { ...position, at: now };
  try {
    await live.send("location", { lat: position.lat, lng: position.lng });
    say($("#pos-msg"), "member.pos.sent", undefined, "ok");
  } catch (e) {
    lastSent = null;
    sayProblem($("#pos-msg"), e);
  }
}

function startSharing() {
  if (!("geolocation" in navigator)) {
    say($("#pos-msg"), "member.geo.none", undefined, "error");
    return;
  }
  watchId = navigator.geolocation.watchPosition(
    (p) => {
      position = { lat: p.coords.latitude, lng: p.coords.longitude };
      $("#lat").value = position.lat.toFixed(6);
      $("#lng").value = position.lng.toFixed(6);
      showPosition();
      sendLocation(false);
    },
    (err) => {
      stopSharing();
      // The browser's own message is in its language, not the page's: say it by its code.
      say($("#pos-msg"), "member.geo.err." + ([1, 2, 3].includes(err.code) ? err.code : 2), undefined, "error");
    },
    { enableHighAccuracy: true, maximumAge: 10000, timeout: 30000 },
  );
  const b = $("#share");
  b.setAttribute("aria-pressed", "true");
  b.dataset.i18n = "member.share.stop";
  b.textContent = t("member.share.stop");
}

function stopSharing() {
  if (watchId !== null) navigator.geolocation.clearWatch(watchId);
  watchId = null;
  const b = $("#share");
  b.setAttribute("aria-pressed", "false");
  b.dataset.i18n = "member.share";
  b.textContent = t("member.share");
}

// ---- alerts ----

function unlockAudio() {
  if (audio || !window.AudioContext) return;
  try {
    audio = new AudioContext();
  } catch (_) {
    audio = null;
  }
}

function alertUser() {
  if (audio && navigator.userActivation?.hasBeenActive !== false) {
    try {
      if (audio.state === "suspended") audio.resume();
      const now = audio.currentTime;
      for (const [i, f] of [880, 1175].entries()) {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.frequency.value = f;
        gain.gain.setValueAtTime(0.0001, now + i * 0.22);
        gain.gain.exponentialRampToValueAtTime(0.25, now + i * 0.22 + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.22 + 0.2);
        osc.connect(gain).connect(audio.destination);
        osc.start(now + i * 0.22);
        osc.stop(now + i * 0.22 + 0.21);
      }
    } catch (_) {
      /* no sound here */
    }
  }
  if (navigator.vibrate && navigator.userActivation?.hasBeenActive) {
    try {
      navigator.vibrate([200, 100, 200]);
    } catch (_) {
      /* no vibration here */
    }
  }
}

function notice(text) {
  const n = $("#notice");
  n.textContent = text;
  n.hidden = !text;
}

function reasonText(r) {
  const k = "reason." + r;
  const s = t(k);
  return s === k ? r : s;
}

// ---- the stream ----

function onHello() {
  if (fromCache) {
    // The kept state was a stand-in: what is open follows this hello.
    fromCache = false;
    state = { offers: {}, orders: {} };
    save();
    render();
  }
  offline.flush();
  if (position) sendLocation(true);
  reloadMe();
  service.load();
  propose.load();
  shifts.load();
}

function onFrame(f) {
  const d = f.data || {};
  if (service.onFrame(f) || propose.onFrame(f)) return;
  if (shifts.onFrame(f)) return;
  switch (f.type) {
    case "offer": {
      const isNew = !state.offers[d.offer_id];
      state.offers[d.offer_id] = { ...state.offers[d.offer_id], ...d, state: state.offers[d.offer_id]?.state || "offered" };
      if (isNew) {
        state.offers[d.offer_id].fresh = true;
        alertUser();
      }
      break;
    }
    case "assignment":
      state.offers[d.offer_id] = { offer_id: d.offer_id, incident_id: d.incident_id, ...state.offers[d.offer_id], state: "accepted" };
      reloadMe();
      break;
    case "arrival":
      if (state.offers[d.offer_id]) Object.assign(state.offers[d.offer_id], { state: "arrived", arrived_m: d.distance_m });
      reloadMe();
      break;
    case "rating":
    case "balance":
      reloadMe();
      break;
    case "offer.revoked":
      delete state.offers[d.offer_id];
      notice(t("member.revoked", { id: d.incident_id, reason: reasonText(d.reason) }));
      break;
    case "assignment.closed":
      delete state.offers[d.offer_id];
      notice(t("member.closed", { id: d.incident_id, reason: reasonText(d.reason) }));
      reloadMe();
      break;
    case "duty":
      if (me) {
        me.on_call = !!d.on_call;
        showMe();
      }
      break;
    case "mobilization.order":
      if (!state.orders[d.mobilization_id]) alertUser();
      state.orders[d.mobilization_id] = { state: "ordered", ...state.orders[d.mobilization_id], ...d };
      break;
    case "mobilization.closed":
      delete state.orders[d.mobilization_id];
      notice(t("member.order.closed", { id: d.mobilization_id, reason: reasonText(d.reason) }));
      break;
    case "transfer":
      notice(t("member.transfer", { name: d.community?.name || d.to }));
      reloadMe();
      break;
    default:
      return;
  }
  save();
  render();
}

// ---- rendering ----

function render(relabel) {
  if (relabel) {
    for (const c of cards.values()) c.li.remove();
    cards.clear();
  }
  renderOffers();
  renderOrders();
}

function sortedOffers() {
  return Object.values(state.offers).sort((a, b) => String(a.offer_id).localeCompare(String(b.offer_id), undefined, { numeric: true }));
}

function renderOffers() {
  const ul = $("#offers");
  const list = sortedOffers();
  const want = list.map((o) => offerCard(o).li);
  for (const [k, c] of cards) if (k.startsWith("offer:") && !state.offers[k.slice(6)]) {
    c.li.remove();
    cards.delete(k);
  }
  const now = [...ul.children];
  if (!(want.length === now.length && want.every((li, i) => li === now[i]))) ul.replaceChildren(...want);
  $("#offers-empty").hidden = list.length > 0;
  tick();
}

function offerCard(o) {
  const key = "offer:" + o.offer_id;
  let c = cards.get(key);
  if (!c) {
    const r = {};
    r.badge = o.level ? levelBadge(o.level) : h("span");
    r.title = h("span", { class: "title" });
    r.whistle = h("span", { class: "chip warn", hidden: !o.whistle }, t("member.whistle"));
    r.distance = h("span", { class: "distance" });
    r.need = h("span", { class: "headcount" });
    r.skills = h("span", { class: "skills" });
    r.countdown = h("span", { class: "countdown" });
    r.note = h("p", { class: "note" });
    r.why = h("p", { class: "why muted" });
    r.status = h("p", { class: "status" });
    r.actions = h("div", { class: "actions" });
    r.msg = h("p", { class: "msg", role: "alert" });
    const li = h(
      "li",
      { class: `offer lvl-${o.level || "IV"}` + (o.fresh ? " new" : ""), dataset: { offer: o.offer_id, incident: o.incident_id || "" } },
      h("div", { class: "card-head" }, r.badge, r.title, r.whistle, h("span", { class: "id" }, o.incident_id || "")),
      h("div", { class: "need" }, r.distance, r.need, r.skills, r.countdown),
      r.note,
      r.why,
      r.status,
      r.actions,
      r.msg,
    );
    c = { li, r, shown: null };
    cards.set(key, c);
    delete o.fresh;
  }
  updateOffer(c, o);
  return c;
}

function updateOffer(c, o) {
  const { li, r } = c;
  li.dataset.state = o.state;
  const cat = catalog.categories.find((x) => x.id === o.category);
  r.title.textContent = o.category ? catalogName(cat, o.category) : o.incident_id;
  const dist = position && o.location ? haversine(position, o.location) : o.distance_m;
  r.distance.textContent = dist !== undefined ? t("member.distance", { d: fmtDistance(dist) }) : "";
  r.need.textContent = o.headcount ? t("member.need", { n: o.headcount }) : "";
  const skills = (o.skills || []).map((s) => catalogName(catalog.skills.find((x) => x.id === s), s));
  r.skills.textContent = skills.length ? t("member.skills", { s: skills.join("、") }) : "";
  r.skills.hidden = !skills.length;
  r.note.textContent = o.note || "";
  r.note.hidden = !o.note;
  // "Why you": the reasons the dispatcher chose this member, in words.
  const why = (o.why || []).map((code) => {
    const k = "why." + code;
    const s = t(k);
    return s === k ? code : s;
  });
  r.why.textContent = why.length ? t("member.why", { s: why.join("、") }) : "";
  r.why.hidden = !why.length;
  r.countdown.hidden = o.state !== "offered";
  if (o.state === "accepted") r.status.textContent = t("member.accepted");
  else if (o.state === "arrived") r.status.textContent = t("member.arrived", { d: fmtDistance(o.arrived_m) });
  else r.status.textContent = "";
  r.status.hidden = !r.status.textContent;
  if (c.shown !== o.state) {
    const hadFocus = li.contains(document.activeElement);
    r.actions.replaceChildren(...offerActions(o, r));
    c.shown = o.state;
    if (hadFocus) r.actions.querySelector("button, select")?.focus();
  }
}

function offerActions(o, r) {
  if (o.state === "offered") {
    const reason = h(
      "select",
      { id: `reason-${o.offer_id}`, class: "reason" },
      ["busy", "far", "unwell", "other"].map((k) => h("option", { value: k }, t("member.reason." + k))),
    );
    return [
      h("button", { type: "button", class: "go accept", on: { click: () => accept(o.offer_id, r) } }, t("member.accept")),
      h(
        "div",
        { class: "row" },
        h("label", { for: reason.id, class: "sr-label" }, t("member.decline.reason")),
        reason,
        h("button", { type: "button", class: "decline", on: { click: () => decline(o.offer_id, reason.value, r) } }, t("member.decline")),
      ),
    ];
  }
  if (o.state === "accepted") {
    return [h("button", { type: "button", class: "primary arrive", on: { click: () => arrive(o.offer_id, r) } }, t("member.arrive"))];
  }
  return [];
}

async function accept(id, r) {
  unlockAudio();
  flash(r.msg, "");
  try {
    const sent = await offline.answer("accept", { offer_id: id });
    const o = state.offers[id];
    if (o && o.state === "offered") o.state = "accepted";
    save();
    render();
    if (sent.queued) notice(t("member.offline.saved"));
  } catch (e) {
    answerError(id, r, e);
  }
}

async function decline(id, reason, r) {
  flash(r.msg, "");
  try {
    const sent = await offline.answer("decline", { offer_id: id, reason: t("member.reason." + reason) });
    delete state.offers[id];
    save();
    render();
    if (sent.queued) notice(t("member.offline.saved"));
  } catch (e) {
    answerError(id, r, e);
  }
}

async function arrive(id, r) {
  flash(r.msg, "");
  if (!position) {
    say(r.msg, "member.nopos", undefined, "error");
    $("#lat").focus();
    return;
  }
  try {
    const sent = await offline.answer("arrive", { offer_id: id, lat: position.lat, lng: position.lng });
    if (sent.queued) notice(t("member.offline.saved"));
  } catch (e) {
    // Outside the geofence: how far the page reckons the member is, from its own figures.
    const o = state.offers[id];
    const far = e.code === "outside_geofence" && o?.location ? ` ${t("member.distance", { d: fmtDistance(haversine(position, o.location)) })}` : "";
    flash(r.msg, problemText(e) + far, "error");
  }
}

function answerError(id, r, e) {
  sayProblem(r.msg, e);
  if (["offer_expired", "offer_revoked", "offer_declined", "unknown_offer", "incident_closed"].includes(e.code)) {
    setTimeout(() => {
      delete state.offers[id];
      save();
      render();
    }, 4000);
  }
}

/** An answer made offline that the server refused on reconnect: what it changed here is undone. */
function onRefused(item, e) {
  const d = item.data || {};
  if (d.offer_id && ["offer_expired", "offer_revoked", "offer_declined", "unknown_offer", "incident_closed"].includes(e.code)) {
    delete state.offers[d.offer_id];
  } else if (d.offer_id && item.type === "accept" && state.offers[d.offer_id]?.state === "accepted") {
    state.offers[d.offer_id].state = "offered";
  }
  if (d.mobilization_id && ["mobilization_closed", "unknown_mobilization"].includes(e.code)) delete state.orders[d.mobilization_id];
  save();
  render();
}

// ---- mobilization orders ----

function renderOrders() {
  const ul = $("#orders");
  const list = Object.values(state.orders);
  for (const [k, c] of cards) if (k.startsWith("order:") && !state.orders[k.slice(6)]) {
    c.li.remove();
    cards.delete(k);
  }
  const want = list.map((o) => orderCard(o).li);
  const now = [...ul.children];
  if (!(want.length === now.length && want.every((li, i) => li === now[i]))) ul.replaceChildren(...want);
  $("#orders-card").hidden = list.length === 0;
}

function orderCard(o) {
  const key = "order:" + o.mobilization_id;
  let c = cards.get(key);
  if (!c) {
    const r = {};
    r.to = h("p");
    r.deadline = h("p", { class: "countdown" });
    r.note = h("p", { class: "note" });
    r.status = h("p", { class: "status" });
    r.ack = h("button", { type: "button", class: "ack", on: { click: () => order(o.mobilization_id, "ack", r) } });
    r.report = h("button", { type: "button", class: "primary report", on: { click: () => order(o.mobilization_id, "report", r) } });
    r.msg = h("p", { class: "msg", role: "alert" });
    const li = h(
      "li",
      { class: "order lvl-I", dataset: { mobilization: o.mobilization_id } },
      h("div", { class: "card-head" }, h("span", { class: "title" }, t("member.orders")), h("span", { class: "id" }, o.mobilization_id)),
      r.to,
      r.deadline,
      r.note,
      r.status,
      h("div", { class: "actions" }, r.ack, r.report),
      r.msg,
    );
    c = { li, r };
    cards.set(key, c);
  }
  const { li, r } = c;
  li.dataset.state = o.state;
  r.to.textContent = t("member.order.to", { name: o.report_to?.name || o.report_to?.community_id || t("none") });
  r.note.textContent = o.note || "";
  r.note.hidden = !o.note;
  r.status.textContent = o.state === "reported" ? t("member.reported") : o.state === "acknowledged" ? t("member.acked") : "";
  r.status.hidden = !r.status.textContent;
  r.ack.textContent = t("member.ack");
  r.report.textContent = t("member.report");
  r.ack.disabled = o.state !== "ordered";
  r.report.disabled = o.state === "reported";
  return c;
}

async function order(id, what, r) {
  flash(r.msg, "");
  let queued = false;
  try {
    if (what === "ack") {
      queued = (await offline.answer("mobilization.ack", { mobilization_id: id })).queued;
      if (state.orders[id]?.state === "ordered") state.orders[id].state = "acknowledged";
    } else {
      if (!position) {
        say(r.msg, "member.nopos", undefined, "error");
        return;
      }
      const sent = await offline.answer("mobilization.report", { mobilization_id: id, lat: position.lat, lng: position.lng });
      queued = sent.queued;
      if (state.orders[id]) state.orders[id].state = "reported";
    }
    save();
    render();
    if (queued) notice(t("member.offline.saved"));
  } catch (e) {
    sayProblem(r.msg, e);
  }
}

// ---- every second: countdowns ----

function tick() {
  const now = Date.now();
  for (const [k, c] of cards) {
    if (k.startsWith("offer:")) {
      const o = state.offers[k.slice(6)];
      if (!o || o.state !== "offered" || !o.expires_at) continue;
      const left = Date.parse(o.expires_at) - now;
      c.r.countdown.textContent = left > 0 ? t("member.expires", { t: fmtDuration(left) }) : t("member.expired");
      c.r.countdown.classList.toggle("late", left < 15000);
    } else {
      const o = state.orders[k.slice(6)];
      if (!o || !o.deadline) continue;
      const left = Date.parse(o.deadline) - now;
      c.r.deadline.textContent =
        t("member.order.deadline", { t: fmtTime(o.deadline) }) + (left > 0 ? ` · ${t("member.expires", { t: fmtDuration(left) })}` : "");
      c.r.deadline.classList.toggle("late", left < 60000);
    }
  }
}

applyI18n(document);
