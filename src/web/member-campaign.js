// The member's campaign shifts on /m, "我的班次" (issue 19): each shift of theirs in an open
// campaign (GET /v1/campaigns/mine: the time, the site, how far it is, directions), with
// acknowledge, check in and check out at the site (the phone's position, or the one the
// page has when GPS fails; outside the geofence the page says how far the member is, in
// its own words), and the times they cannot serve in a campaign. Live from the member's
// `campaign.shift` frames. Refusals are shown by their code from the string tables.

import { t, getLang } from "/web/i18n.js";
import { api, h, $, fmtTime, fmtDistance, haversine, say, sayProblem, syncCards, throttle } from "/web/common.js";

const GPS_WAIT_MS = 8000;

/**
 * Builds the card inside `section` and answers `{load, onFrame, render}`. `roles()`: the
 * catalog's `campaign_roles`; `fallback()`: the position the page knows ({lat, lng} or
 * null); `onAlert()`: sound and vibrate (a new shift).
 */
export function mountShifts(section, { roles, fallback, onAlert }) {
  const shifts = new Map(); // "campaign/shift" -> my shift
  const cards = new Map();
  let loaded = false;
  const key = (s) => `${s.campaign_id}/${s.shift_id}`;

  section.hidden = false;
  const list = h("ul", { id: "shifts", class: "cards", dataset: { loaded: "false" } });
  const msg = h("p", { id: "shifts-msg", class: "msg", role: "status" });
  const empty = h("p", { id: "shifts-empty", class: "muted", "data-i18n": "myshift.empty", hidden: true }, t("myshift.empty"));
  const unavail = unavailForm();
  section.replaceChildren(h("h2", { id: "shifts-h", "data-i18n": "myshift.title" }, t("myshift.title")), msg, empty, list, unavail);

  function roleName(id) {
    const r = (roles() || []).find((x) => x.id === id);
    return r ? (getLang() === "en" ? r.en : r.zh) : id;
  }

  async function load() {
    try {
      const mine = await api("GET", "/v1/campaigns/mine");
      shifts.clear();
      for (const s of mine.shifts) shifts.set(key(s), s);
      loaded = true;
      render();
    } catch (e) {
      sayProblem(msg, e);
    }
  }
  const reload = throttle(load, 300);

  function stateOf(s) {
    if (s.checkout_at) return "checked_out";
    if (s.checkin_at) return "checked_in";
    if (s.acknowledged_at) return "acknowledged";
    return "assigned";
  }

  function render(relabel) {
    const shown = [...shifts.values()];
    syncCards(list, cards, shown, key, card, relabel);
    empty.hidden = !loaded || shown.length > 0;
    list.dataset.loaded = String(loaded);
    fillCampaigns();
  }

  function card(s) {
    let c = cards.get(key(s));
    if (!c) {
      const r = {};
      r.title = h("span", { class: "title" });
      r.role = h("span", { class: "chip" });
      r.when = h("p", { class: "when" });
      r.where = h("p", { class: "where" });
      r.nav = h("a", { class: "nav" });
      r.status = h("p", { class: "status" });
      r.actions = h("div", { class: "actions" });
      r.msg = h("p", { class: "msg", role: "alert" });
      const li = h(
        "li",
        { class: "shift", dataset: { campaign: s.campaign_id, shift: s.shift_id } },
        h("div", { class: "card-head" }, r.title, r.role),
        r.when,
        h("div", { class: "place" }, r.where, r.nav),
        r.status,
        r.actions,
        r.msg,
      );
      c = { li, r, shown: null };
      cards.set(key(s), c);
    }
    update(c, s);
    return c;
  }

  function update(c, s) {
    const { li, r } = c;
    const st = stateOf(s);
    li.dataset.state = st;
    r.title.textContent = s.campaign_name;
    r.role.textContent = roleName(s.role);
    r.when.textContent = t("myshift.when", { from: fmtWhen(s.start), to: fmtWhen(s.end) });
    const here = fallback();
    const d = here ? haversine(here, s.site.location) : s.distance_m;
    r.where.textContent = t("myshift.where", { site: s.site.name, d: fmtDistance(d) });
    r.nav.href = `geo:${s.site.location.lat},${s.site.location.lng}`;
    r.nav.textContent = t("myshift.navigate");
    r.status.textContent =
      st === "checked_in" ? t("myshift.state.checked_in", { at: fmtTime(s.checkin_at) }) : st === "checked_out" ? t("myshift.state.checked_out", { at: fmtTime(s.checkout_at) }) : t("myshift.state." + st);
    if (c.shown !== st) {
      const hadFocus = li.contains(document.activeElement);
      r.actions.replaceChildren(...actions(s, st, r));
      c.shown = st;
      if (hadFocus) (r.actions.querySelector("button") || r.msg).focus?.();
    }
  }

  function actions(s, st, r) {
    const b = (cls, k, f) => h("button", { type: "button", class: cls, on: { click: () => f(s, r) } }, t(k));
    const out = [];
    if (st === "assigned") out.push(b("primary ack", "myshift.ack", ack));
    if (st === "assigned" || st === "acknowledged") out.push(b(st === "assigned" ? "checkin" : "primary checkin", "myshift.checkin", (s, r) => stamp(s, r, "checkin")));
    if (st === "checked_in") out.push(b("primary checkout", "myshift.checkout", (s, r) => stamp(s, r, "checkout")));
    return out;
  }

  async function ack(s, r) {
    try {
      const v = await api("POST", `/v1/campaigns/${encodeURIComponent(s.campaign_id)}/shifts/${encodeURIComponent(s.shift_id)}/ack`, {});
      shifts.set(key(v), v);
      say(r.msg, "myshift.acked", undefined, "ok");
      render();
    } catch (e) {
      refused(r, e);
    }
  }

  async function stamp(s, r, what) {
    say(r.msg, "svc.locating", undefined, "info");
    const fix = await here();
    if (!fix) {
      say(r.msg, "svc.nopos", undefined, "error");
      $("#lat")?.focus();
      return;
    }
    try {
      const body = { lat: fix.lat, lng: fix.lng };
      const v =
        what === "checkin"
          ? await api("POST", `/v1/campaigns/${encodeURIComponent(s.campaign_id)}/shifts/${encodeURIComponent(s.shift_id)}/checkin`, body)
          : await api("POST", `/v1/campaigns/${encodeURIComponent(s.campaign_id)}/shifts/${encodeURIComponent(s.shift_id)}/checkout`, body);
      shifts.set(key(v), v);
      say(r.msg, what === "checkin" ? "myshift.in" : "myshift.out", undefined, "ok");
      render();
    } catch (e) {
      // Outside the geofence: how far the member is, from the page's own figures.
      if (e.code === "outside_geofence") say(r.msg, "myshift.far", { d: fmtDistance(haversine(fix, s.site.location)) }, "error");
      else refused(r, e);
    }
  }

  function refused(r, e) {
    sayProblem(r.msg, e);
    if (e.status === 404 || e.status === 409) reload();
  }

  /** The phone's position now; when GPS fails, the one the page has (typed or last known). */
  function here() {
    const known = () => fallback() && { ...fallback(), gps: false };
    if (!("geolocation" in navigator)) return Promise.resolve(known());
    return new Promise((resolve) =>
      navigator.geolocation.getCurrentPosition(
        (p) => resolve({ lat: p.coords.latitude, lng: p.coords.longitude, gps: true }),
        () => resolve(known()),
        { enableHighAccuracy: true, maximumAge: 0, timeout: GPS_WAIT_MS },
      ),
    );
  }

  // ---- times the member cannot serve ----

  function unavailForm() {
    const field = (id, k, control) => h("div", {}, h("label", { for: id, "data-i18n": k }, t(k)), control);
    return h(
      "form",
      { id: "unavail", novalidate: true, on: { submit: onUnavailable } },
      h("h3", { "data-i18n": "myshift.unavail" }, t("myshift.unavail")),
      h("p", { id: "unavail-none", class: "muted", "data-i18n": "myshift.unavail.none" }, t("myshift.unavail.none")),
      field("unavail-campaign", "myshift.unavail.campaign", h("select", { id: "unavail-campaign" })),
      h(
        "div",
        { class: "when-row" },
        field("unavail-start", "myshift.unavail.start", h("input", { id: "unavail-start", type: "datetime-local" })),
        field("unavail-end", "myshift.unavail.end", h("input", { id: "unavail-end", type: "datetime-local" })),
      ),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "unavail-submit", "data-i18n": "myshift.unavail.submit" }, t("myshift.unavail.submit"))),
      h("p", { id: "unavail-msg", class: "msg", role: "status" }),
    );
  }

  function fillCampaigns() {
    const select = $("#unavail-campaign", section);
    const keep = select.value;
    const seen = new Map([...shifts.values()].map((s) => [s.campaign_id, s.campaign_name]));
    select.replaceChildren(...[...seen].map(([id, name]) => h("option", { value: id }, name)));
    if (seen.has(keep)) select.value = keep;
    // The form once the member has a campaign to mark times in; the hint till then.
    $("#unavail-none", section).hidden = seen.size > 0;
    for (const el of $("#unavail", section).querySelectorAll("div")) el.hidden = seen.size === 0;
  }

  async function onUnavailable(e) {
    e.preventDefault();
    const m = $("#unavail-msg", section);
    const id = $("#unavail-campaign", section).value;
    const start = new Date($("#unavail-start", section).value);
    const end = new Date($("#unavail-end", section).value);
    if (isNaN(start)) return focusNeed(m, "#unavail-start", "myshift.unavail.start");
    if (isNaN(end)) return focusNeed(m, "#unavail-end", "myshift.unavail.end");
    try {
      const v = await api("POST", `/v1/campaigns/${encodeURIComponent(id)}/unavailability`, { start: start.toISOString(), end: end.toISOString() });
      say(m, "myshift.unavail.done", { from: fmtWhen(v.start), to: fmtWhen(v.end) }, "ok");
    } catch (err) {
      sayProblem(m, err);
    }
  }

  function focusNeed(m, sel, k) {
    say(m, "cmp.need", { field: { k } }, "error");
    $(sel, section).focus();
  }

  /** A frame of the member's stream; answers whether it was a campaign one. */
  function onFrame(f) {
    if (f.type !== "campaign.shift") return false;
    const d = f.data || {};
    const change = ["assigned", "changed", "removed"].includes(d.change) ? d.change : "changed";
    say(msg, "myshift." + change, { campaign: d.campaign_name || d.campaign_id, site: d.site?.name || "", when: fmtWhen(d.start) }, "info");
    if (change === "assigned") onAlert();
    reload();
    return true;
  }

  return { load: reload, onFrame, render };
}

function fmtWhen(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return `${d.getMonth() + 1}/${d.getDate()} ${fmtTime(iso).slice(0, 5)}`;
}
