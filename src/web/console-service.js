// Peacetime service on the staff console (issue 17): post an order (catalog category,
// grid, headcount, time window, difficulty, note), the community's orders with their
// claims, assign a member (社区派单), cancel, and rate each claimant's work once it is
// done (一事一评: 很好 / 好 / 一般). The console's stream carries `order.*` frames; each one
// reads the list again. Refusals are shown from the string tables by their code.

import { t, catalogName } from "/web/i18n.js";
import { api, ask, h, $, fmtTime, flash, say, syncCards, sayProblem, throttle } from "/web/common.js";

const RATINGS = ["very_good", "good", "fair"];

/** Mounts the service card; answers {setCommunity(id, grids), onFrame(f), relabel()}. */
export function mountConsoleService(catalog) {
  let community = null;
  let grids = [];
  let members = []; // [{id, name}] of the community, for names and assigning
  const orders = new Map();
  const cards = new Map();

  const nameOf = (id) => {
    const m = members.find((x) => x.id === id);
    return m ? `${m.name} (${id})` : id;
  };

  function fillForm() {
    const cat = $("#svc-category");
    const keep = cat.value;
    cat.replaceChildren(...catalog().categories.map((c) => h("option", { value: c.id }, catalogName(c))));
    if (keep) cat.value = keep;
    const grid = $("#svc-grid");
    const g = grid.value;
    grid.replaceChildren(...grids.map((id) => h("option", { value: id }, id)));
    if (grids.includes(g)) grid.value = g;
    const diff = $("#svc-difficulty");
    const d = diff.value;
    diff.replaceChildren(
      h("option", { value: "" }, t("svc.difficulty.auto")),
      ...[1, 2, 3, 4, 5].map((n) => h("option", { value: String(n) }, t("svc.difficulty", { d: n }))),
    );
    diff.value = d;
    if (!$("#svc-start").value) {
      const now = new Date(Date.now() - new Date().getTimezoneOffset() * 60000);
      $("#svc-start").value = now.toISOString().slice(0, 16);
      $("#svc-end").value = new Date(now.getTime() + 3 * 3600000).toISOString().slice(0, 16);
    }
  }

  $("#svc-post").addEventListener("submit", async (e) => {
    e.preventDefault();
    const msg = $("#svc-post-msg");
    const title = $("#svc-title").value.trim();
    if (!title) {
      say(msg, "code.bad_title", undefined, "error");
      $("#svc-title").focus();
      return;
    }
    const start = new Date($("#svc-start").value);
    const end = new Date($("#svc-end").value);
    if (isNaN(start) || isNaN(end) || end <= start) {
      say(msg, "code.bad_window", undefined, "error");
      $("#svc-end").focus();
      return;
    }
    const body = {
      grid_id: $("#svc-grid").value,
      category: $("#svc-category").value,
      title,
      window_start: start.toISOString(),
      window_end: end.toISOString(),
      slots: parseInt($("#svc-slots").value, 10) || 0,
    };
    const note = $("#svc-note").value.trim();
    if (note) body.note = note;
    const d = $("#svc-difficulty").value;
    if (d) body.difficulty = parseInt(d, 10);
    try {
      const o = await api("POST", "/v1/orders", body);
      orders.set(o.id, o);
      render();
      say(msg, "svc.posted", { title: o.title }, "ok");
      $("#svc-title").value = "";
      $("#svc-note").value = "";
    } catch (err) {
      sayProblem(msg, err);
    }
  });
  $("#svc-show-closed").addEventListener("change", () => render());

  async function load() {
    if (!community) return;
    try {
      const all = await api("GET", "/v1/orders");
      orders.clear();
      for (const o of all) if (o.community_id === community) orders.set(o.id, o);
      render();
      flash($("#svc-list-msg"), "");
    } catch (e) {
      sayProblem($("#svc-list-msg"), e);
    }
  }
  const reload = throttle(load, 400);

  function render(relabel) {
    const all = $("#svc-show-closed").checked;
    const shown = [...orders.values()]
      .filter((o) => all || o.status !== "cancelled")
      .sort((a, b) => String(b.posted_at).localeCompare(String(a.posted_at)));
    syncCards($("#svc-orders"), cards, shown, (o) => o.id, card, relabel);
    $("#svc-none").hidden = shown.length > 0;
  }

  function card(o) {
    let c = cards.get(o.id);
    if (!c) {
      const r = {};
      r.title = h("span", { class: "title" });
      r.meta = h("p", { class: "muted" });
      r.count = h("p", { class: "status" });
      r.claims = h("ul", { class: "claims" });
      const sel = `svc-assign-${o.id}`;
      r.who = h("select", { id: sel, class: "assign-who" });
      r.assign = h("button", { type: "button", class: "assign", on: { click: () => assign(o.id, r) } }, "");
      r.cancel = h("button", { type: "button", class: "cancel danger", on: { click: () => cancel(o.id, r) } }, "");
      r.whoLabel = h("label", { for: sel, class: "sr-label" });
      r.assignRow = h("div", { class: "row" }, r.whoLabel, r.who, r.assign);
      r.msg = h("p", { class: "msg", role: "alert" });
      const li = h(
        "li",
        { class: "svc-order", dataset: { order: o.id } },
        h("div", { class: "card-head" }, r.title, h("span", { class: "id" }, o.id)),
        r.meta,
        r.count,
        r.claims,
        h("div", { class: "actions" }, r.assignRow, r.cancel),
        r.msg,
      );
      c = { li, r };
      cards.set(o.id, c);
    }
    update(c, o);
    return c;
  }

  function update(c, o) {
    const { li, r } = c;
    li.dataset.status = o.status;
    r.title.textContent = o.title;
    const cat = catalog().categories.find((x) => x.id === o.category);
    r.meta.textContent = [
      catalogName(cat, o.category),
      t("svc.difficulty", { d: o.difficulty }),
      t("svc.where", { grid: o.grid_id }),
      `${fmtTime(o.window_start)} – ${fmtTime(o.window_end)}`,
      o.note,
    ]
      .filter(Boolean)
      .join(" · ");
    r.count.textContent = t("svc.count", { n: o.claims.length, all: o.slots, status: t("svc.status." + o.status) });
    r.claims.replaceChildren(...o.claims.map((cl) => claimRow(o, cl)));
    const open = o.status === "open";
    r.whoLabel.textContent = t("svc.assign.who");
    const keep = r.who.value;
    const taken = new Set(o.claims.map((cl) => cl.member_id));
    r.who.replaceChildren(...members.filter((m) => !taken.has(m.id)).map((m) => h("option", { value: m.id }, `${m.name} (${m.id})`)));
    if (keep) r.who.value = keep;
    r.assign.textContent = t("svc.assign");
    r.cancel.textContent = t("svc.cancel");
    r.assignRow.hidden = !open || r.who.options.length === 0;
    r.cancel.hidden = o.status === "cancelled";
  }

  function claimRow(o, cl) {
    const parts = [nameOf(cl.member_id)];
    if (cl.assigned) parts.push(t("svc.by_community"));
    if (cl.checkout) parts.push(t("svc.checked_out", { h: cl.hours.toFixed(2) }));
    else if (cl.checkin) parts.push(t("svc.checked_in", { at: fmtTime(cl.checkin_at) }));
    else parts.push(t("svc.waiting"));
    if ((cl.checkin && cl.checkin.flagged) || (cl.checkout && cl.checkout.flagged)) parts.push(t("svc.not_counted"));
    if (cl.rating) parts.push(t("svc.rated.short", { r: t("rating." + cl.rating) }));
    const li = h("li", { dataset: { member: cl.member_id, rated: cl.rating || "" } }, h("span", {}, parts.join(" · ")));
    if (cl.checkout && !cl.rating) {
      const id = `svc-rate-${o.id}-${cl.member_id}`;
      const sel = h("select", { id, class: "rating" }, RATINGS.map((k) => h("option", { value: k }, t("rating." + k))));
      const msg = h("span", { class: "msg", role: "alert" });
      li.append(
        h(
          "div",
          { class: "row" },
          h("label", { for: id, class: "sr-label" }, t("svc.rate.label", { who: nameOf(cl.member_id) })),
          sel,
          h("button", { type: "button", class: "rate", on: { click: () => rate(o.id, cl.member_id, sel.value, msg) } }, t("svc.rate")),
          msg,
        ),
      );
    }
    return li;
  }

  async function assign(id, r) {
    flash(r.msg, "");
    const who = r.who.value;
    if (!who) return;
    try {
      orders.set(id, await api("POST", `/v1/orders/${encodeURIComponent(id)}/assign`, { member_id: who }));
      render();
      say(cards.get(id).r.msg, "svc.assigned.to", { who: nameOf(who) }, "ok");
    } catch (e) {
      sayProblem(r.msg, e);
    }
  }

  async function cancel(id, r) {
    const reason = await ask(t("svc.cancel.ask", { title: orders.get(id)?.title || id }), { input: true });
    if (reason === null) return;
    try {
      orders.set(id, await api("POST", `/v1/orders/${encodeURIComponent(id)}/cancel`, reason ? { reason } : {}));
      render();
    } catch (e) {
      sayProblem(r.msg, e);
    }
  }

  async function rate(id, member, rating, msg) {
    try {
      const got = await api("POST", "/v1/ratings", { order_id: id, member_id: member, rating });
      say(msg, "svc.rate.done", { r: { k: "rating." + got.rating }, p: Number(got.points).toFixed(2) }, "ok");
      reload();
    } catch (e) {
      sayProblem(msg, e);
    }
  }

  return {
    async setCommunity(id, gridIds) {
      community = id;
      grids = gridIds;
      orders.clear();
      fillForm();
      try {
        members = (await api("GET", `/v1/members?community_id=${encodeURIComponent(id)}`)).map((m) => ({ id: m.id, name: m.name }));
      } catch (_) {
        members = [];
      }
      await load();
    },
    onFrame(f) {
      if (!f.type.startsWith("order.")) return false;
      reload();
      return true;
    },
    reload,
    relabel() {
      fillForm();
      render(true);
    },
  };
}
