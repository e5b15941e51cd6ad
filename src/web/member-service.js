// The member's peacetime service orders on /m (issue 17): the orders of their community
// they may claim (GET /v1/orders), 接单 (claim), check-in and check-out with the phone's
// position (the browser's geolocation; when it fails, the position typed or last known on
// the page), the record of each (hours, flagged stamps, the rating received), and the
// exchange of points and hours. Every `order.*` frame on the member's stream updates the
// list; a refusal is shown from the string tables by its code.

import { t, catalogName } from "/web/i18n.js";
import { api, h, $, fmtTime, fmtDistance, flash, say, sayProblem, syncCards, haversine, throttle } from "/web/common.js";

const GPS_TIMEOUT_MS = 8000;

/**
 * Mounts the service card. `memberId`: who is signed in; `catalog()`: the catalog (names);
 * `fallback()`: the position the page knows ({lat, lng} or null) for when GPS fails;
 * `onMember(view)`: a fresh member record (after an exchange); `onStats()`: reload it;
 * `onAlert()`: sound and vibrate (a hard order kept for this member).
 */
export function mountService({ memberId, catalog, fallback, onMember, onStats, onAlert }) {
  const list = $("#svc-list");
  const orders = new Map(); // id -> order view
  const cards = new Map(); // id -> {li, r, shown}
  let loaded = false;

  const mine = (o) => (o.claims || []).find((c) => c.member_id === memberId);

  /** Where the member's order is: open, claimed, checked_in, checked_out, rated, cancelled, full. */
  function stateOf(o) {
    const c = mine(o);
    if (o.status === "cancelled") return "cancelled";
    if (!c) return o.status === "open" ? "open" : "full";
    if (c.rating) return "rated";
    if (c.checkout) return "checked_out";
    if (c.checkin) return "checked_in";
    return "claimed";
  }

  const ORDER = { checked_in: 0, claimed: 1, open: 2, checked_out: 3, rated: 4, full: 5, cancelled: 6 };

  async function load() {
    try {
      const all = await api("GET", "/v1/orders");
      orders.clear();
      for (const o of all) orders.set(o.id, o);
      loaded = true;
      render();
    } catch (e) {
      sayProblem($("#svc-msg"), e);
    }
  }
  const reload = throttle(load, 500);

  async function loadOne(id) {
    try {
      orders.set(id, await api("GET", `/v1/orders/${encodeURIComponent(id)}`));
    } catch (e) {
      if (e.status === 404) orders.delete(id);
      else return reload();
    }
    render();
  }

  function render(relabel) {
    const shown = [...orders.values()]
      .filter((o) => stateOf(o) !== "full")
      .sort((a, b) => ORDER[stateOf(a)] - ORDER[stateOf(b)] || String(b.posted_at).localeCompare(String(a.posted_at)));
    syncCards(list, cards, shown, (o) => o.id, card, relabel);
    $("#svc-empty").hidden = !loaded || shown.length > 0;
    list.dataset.loaded = String(loaded);
  }

  function card(o) {
    let c = cards.get(o.id);
    if (!c) {
      const r = {};
      r.title = h("span", { class: "title" });
      r.cat = h("span", { class: "chip" });
      r.when = h("p", { class: "when" });
      r.where = h("p", { class: "where" });
      r.nav = h("a", { class: "nav" });
      r.note = h("p", { class: "note" });
      r.status = h("p", { class: "status" });
      r.actions = h("div", { class: "actions" });
      r.msg = h("p", { class: "msg", role: "alert" });
      const li = h(
        "li",
        { class: "svc-order", dataset: { order: o.id } },
        h("div", { class: "card-head" }, r.title, r.cat, h("span", { class: "id" }, o.id)),
        r.when,
        h("div", { class: "place" }, r.where, r.nav),
        r.note,
        r.status,
        r.actions,
        r.msg,
      );
      c = { li, r, shown: null };
      cards.set(o.id, c);
    }
    update(c, o);
    return c;
  }

  function update(c, o) {
    const { li, r } = c;
    const st = stateOf(o);
    li.dataset.state = st;
    r.title.textContent = o.title;
    const cat = catalog().categories.find((x) => x.id === o.category);
    r.cat.textContent = `${catalogName(cat, o.category)} · ${t("svc.difficulty", { d: o.difficulty })}`;
    r.when.textContent = t("svc.window", { from: fmtWhen(o.window_start), to: fmtWhen(o.window_end) });
    const here = fallback();
    const far = here && o.location ? ` · ${t("member.distance", { d: fmtDistance(haversine(here, o.location)) })}` : "";
    r.where.textContent = t("svc.where", { grid: o.grid_id }) + far;
    r.nav.href = `geo:${o.location.lat},${o.location.lng}`;
    r.nav.textContent = t("svc.navigate");
    r.note.textContent = o.note || "";
    r.note.hidden = !o.note;
    r.status.textContent = statusText(o, st);
    r.status.hidden = !r.status.textContent;
    r.status.classList.toggle("warn", !!(mine(o)?.checkin?.flagged || mine(o)?.checkout?.flagged));
    if (c.shown !== st) {
      const hadFocus = li.contains(document.activeElement);
      r.actions.replaceChildren(...actions(o, st, r));
      c.shown = st;
      if (hadFocus) (r.actions.querySelector("button") || r.msg).focus?.();
    }
  }

  function statusText(o, st) {
    const c = mine(o);
    const stamp = (s) => (s.flagged ? t("svc.flagged", { d: fmtDistance(s.distance_m) }) : t("svc.inside", { d: fmtDistance(s.distance_m) }));
    switch (st) {
      case "open":
        return t("svc.slots", { n: o.slots - (o.claims || []).length, all: o.slots });
      case "claimed":
        return c.assigned ? t("svc.assigned") : t("svc.claimed");
      case "checked_in":
        return t("svc.checked_in", { at: fmtTime(c.checkin_at) }) + " · " + stamp(c.checkin);
      case "checked_out":
        return t("svc.checked_out", { h: c.hours.toFixed(2) }) + " · " + stamp(c.checkout) + (c.counted ? "" : ` · ${t("svc.not_counted")}`);
      case "rated":
        return t("svc.rated", { r: t("rating." + c.rating), h: c.hours.toFixed(2) });
      case "cancelled":
        return t("svc.cancelled");
      default:
        return "";
    }
  }

  function actions(o, st, r) {
    const b = (cls, key, f) => h("button", { type: "button", class: cls, on: { click: () => f(o.id, r) } }, t(key));
    if (st === "open") return [b("primary claim", "svc.claim", claim)];
    if (st === "claimed") return [b("primary checkin", "svc.checkin", (id, r) => stamp(id, r, "checkin"))];
    if (st === "checked_in") return [b("primary checkout", "svc.checkout", (id, r) => stamp(id, r, "checkout"))];
    return [];
  }

  async function claim(id, r) {
    flash(r.msg, "");
    try {
      orders.set(id, await api("POST", `/v1/orders/${encodeURIComponent(id)}/claim`, {}));
      render();
    } catch (e) {
      refused(id, r, e);
    }
  }

  async function stamp(id, r, what) {
    say(r.msg, "svc.locating", undefined, "info");
    const fix = await position();
    if (!fix) {
      say(r.msg, "svc.nopos", undefined, "error");
      $("#lat").focus();
      return;
    }
    try {
      const oid = encodeURIComponent(id);
      const path = what === "checkin" ? `/v1/orders/${oid}/checkin` : `/v1/orders/${oid}/checkout`;
      orders.set(id, await api("POST", path, { lat: fix.lat, lng: fix.lng }));
      say(r.msg, fix.gps ? "svc.by_gps" : "svc.by_hand", undefined, "ok");
      render();
      onStats();
    } catch (e) {
      refused(id, r, e);
    }
  }

  function refused(id, r, e) {
    sayProblem(r.msg, e);
    // The order moved on underneath: show it as it is now.
    if (e.status === 404 || e.status === 409) loadOne(id);
  }

  /** The phone's position now; when GPS fails, the one the page has (typed or last known). */
  function position() {
    const byHand = () => {
      const p = fallback();
      return p ? { lat: p.lat, lng: p.lng, gps: false } : null;
    };
    if (!("geolocation" in navigator)) return Promise.resolve(byHand());
    return new Promise((resolve) => {
      navigator.geolocation.getCurrentPosition(
        (p) => resolve({ lat: p.coords.latitude, lng: p.coords.longitude, gps: true }),
        () => resolve(byHand()),
        { enableHighAccuracy: true, maximumAge: 0, timeout: GPS_TIMEOUT_MS },
      );
    });
  }

  // ---- exchange ----

  $("#exchange").addEventListener("submit", async (e) => {
    e.preventDefault();
    const msg = $("#ex-msg");
    const amount = parseFloat($("#ex-amount").value);
    if (!(amount > 0)) {
      say(msg, "svc.ex.amount", undefined, "error");
      $("#ex-amount").focus();
      return;
    }
    const from = $("#ex-from").value;
    try {
      const view = await api("POST", `/v1/members/${encodeURIComponent(memberId)}/exchange`, { from, amount });
      say(msg, "svc.ex.done", undefined, "ok");
      $("#ex-amount").value = "";
      onMember(view);
    } catch (err) {
      sayProblem(msg, err);
    }
  });

  /** A frame of the member's stream; answers whether it was a service one. */
  function onFrame(f) {
    const d = f.data || {};
    switch (f.type) {
      case "order.offer":
        // A hard order kept for this member for a while: say so, and ring.
        say($("#svc-msg"), "svc.offer.note", { title: d.title || d.order_id, until: fmtTime(d.reserved_until) }, "info");
        onAlert();
        loadOne(d.order_id);
        return true;
      case "order.assigned":
      case "order.checked_in":
      case "order.checked_out":
        loadOne(d.order_id);
        if (f.type === "order.checked_out") onStats();
        return true;
      case "order.cancelled": {
        const o = orders.get(d.order_id);
        if (o) o.status = "cancelled";
        render();
        if (o && mine(o)) say($("#svc-msg"), "svc.cancelled.note", { title: o.title, reason: d.reason || "—" }, "info");
        return true;
      }
      case "rating":
        if (d.order_id) loadOne(d.order_id);
        say($("#svc-msg"), "svc.rating.note", { r: { k: "rating." + d.rating }, p: Number(d.points || 0).toFixed(2) }, "ok");
        return false; // member.js reloads the record too
      default:
        return false;
    }
  }

  return { load: reload, onFrame, render };
}

function fmtWhen(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return `${d.getMonth() + 1}/${d.getDate()} ${fmtTime(iso).slice(0, 5)}`;
}
