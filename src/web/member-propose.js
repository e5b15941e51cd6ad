// 创单 on /m (issue #20): a member proposes a service for a community they serve
// (POST /v1/proposals: category, title, description, grid, for whom, time window, members
// it takes) and follows their proposals (GET /v1/proposals; live through the member
// stream's `proposal.updated`): proposed, approved (the order it became, which they hold)
// or declined with the community's reason. Refusals are shown from the string tables by
// their code.

import { t, catalogName } from "/web/i18n.js";
import { api, h, fmtTime, say, sayProblem, syncCards, throttle } from "/web/common.js";

function localInput(ms) {
  const d = new Date(ms);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

/** Fills `root` (a hidden <section>) for member `memberId`; answers {load(), onFrame(f), relabel()}. */
export function mountPropose(root, { memberId }) {
  let cat = null; // the catalog (GET /v1/catalog), read here: /m reads its own later
  const catalog = () => cat;
  if (!document.querySelector('link[href="/web/residents.css"]')) document.head.append(h("link", { rel: "stylesheet", href: "/web/residents.css" }));
  const proposals = new Map();
  const cards = new Map();
  const label = (id, key) => h("label", { for: id, dataset: { i18n: key } }, t(key));
  const opt = () => h("span", { class: "muted", dataset: { i18n: "optional" } }, t("optional"));

  const category = h("select", { id: "mp-category", required: true });
  const title = h("input", { id: "mp-title", type: "text", maxlength: 200, required: true });
  const desc = h("textarea", { id: "mp-desc", maxlength: 1000, rows: 2 });
  const grid = h("select", { id: "mp-grid", required: true });
  const forWhom = h("input", { id: "mp-for", type: "text", maxlength: 200, required: true });
  const start = h("input", { id: "mp-start", type: "datetime-local", required: true });
  const end = h("input", { id: "mp-end", type: "datetime-local", required: true });
  const slots = h("input", { id: "mp-slots", type: "number", min: 1, max: 500, step: 1, value: "1", required: true });
  const msg = h("p", { id: "mp-msg", class: "msg", role: "status" });
  const list = h("ul", { id: "mp-list", class: "cards", dataset: { loaded: "false" } });
  const none = h("p", { id: "mp-none", class: "muted", dataset: { i18n: "mp.empty" } }, t("mp.empty"));
  const form = h(
    "form",
    { id: "mp-form", novalidate: true },
    label("mp-category", "res.category"),
    category,
    label("mp-title", "svc.post.name"),
    title,
    h("label", { for: "mp-desc" }, h("span", { dataset: { i18n: "mp.desc" } }, t("mp.desc")), " ", opt()),
    desc,
    h("div", { class: "row fill" }, h("div", {}, label("mp-grid", "console.grid"), grid), h("div", {}, label("mp-slots", "mp.slots"), slots)),
    label("mp-for", "mp.for"),
    forWhom,
    h("div", { class: "when-row" }, h("div", {}, label("mp-start", "svc.post.start"), start), h("div", {}, label("mp-end", "svc.post.end"), end)),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "mp-submit", dataset: { i18n: "mp.submit" } }, t("mp.submit"))),
    msg,
  );
  root.replaceChildren(
    h("h2", { id: "propose-h", dataset: { i18n: "mp.title" } }, t("mp.title")),
    // Folded until wanted: the form is long on a phone, and most visits only follow.
    h("details", { id: "mp-fold" }, h("summary", { id: "mp-open", dataset: { i18n: "mp.new" } }, t("mp.new")), form),
    h("h3", { dataset: { i18n: "mp.mine" } }, t("mp.mine")),
    none,
    list,
  );
  root.hidden = false;

  function fillCategories() {
    const keep = category.value;
    category.replaceChildren(...(catalog()?.categories || []).map((c) => h("option", { value: c.id }, catalogName(c))));
    if (keep) category.value = keep;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!title.value.trim()) {
      say(msg, "code.bad_title", undefined, "error");
      title.focus();
      return;
    }
    if (!forWhom.value.trim()) {
      say(msg, "code.bad_text", undefined, "error");
      forWhom.focus();
      return;
    }
    const s = new Date(start.value);
    const en = new Date(end.value);
    if (isNaN(s) || isNaN(en) || en <= s) {
      say(msg, "code.bad_window", undefined, "error");
      end.focus();
      return;
    }
    const body = {
      category: category.value,
      title: title.value.trim(),
      grid_id: grid.value,
      for_whom: forWhom.value.trim(),
      window_start: s.toISOString(),
      window_end: en.toISOString(),
      slots: parseInt(slots.value, 10) || 0,
    };
    if (desc.value.trim()) body.description = desc.value.trim();
    try {
      const p = await api("POST", "/v1/proposals", body);
      proposals.set(p.id, p);
      render();
      say(msg, "mp.sent", { title: p.title }, "ok");
      title.value = "";
      desc.value = "";
      forWhom.value = "";
    } catch (err) {
      sayProblem(msg, err);
    }
  });

  async function loadGrids() {
    try {
      const me = await api("GET", `/v1/members/${encodeURIComponent(memberId)}`);
      const geo = await api("GET", `/v1/geo/communities/${encodeURIComponent(me.home_community_id)}`);
      const ids = geo.features.map((f) => f.id);
      grid.replaceChildren(...ids.map((id) => h("option", { value: id }, id)));
      if (ids.includes(me.residence_grid_id)) grid.value = me.residence_grid_id;
    } catch (e) {
      sayProblem(msg, e);
    }
  }

  async function load() {
    try {
      const all = await api("GET", "/v1/proposals");
      proposals.clear();
      for (const p of all) proposals.set(p.id, p);
      list.dataset.loaded = "true";
      render();
    } catch (e) {
      sayProblem(msg, e);
    }
  }

  function render(relabel) {
    const shown = [...proposals.values()].sort((a, b) => String(b.proposed_at).localeCompare(String(a.proposed_at)) || b.id.localeCompare(a.id));
    syncCards(list, cards, shown, (p) => p.id, card, relabel);
    none.hidden = shown.length > 0;
  }

  function card(p) {
    let c = cards.get(p.id);
    if (!c) {
      const refs = { title: h("span", { class: "title" }), status: h("span", { class: "badge" }), meta: h("p", { class: "muted" }), more: h("p", { class: "status" }) };
      const li = h("li", { class: "proposal", dataset: { proposal: p.id } }, h("div", { class: "card-head" }, refs.title, refs.status), refs.meta, refs.more);
      c = { li, refs };
      cards.set(p.id, c);
    }
    const { li, refs } = c;
    li.dataset.status = p.status;
    refs.title.textContent = p.title;
    refs.status.textContent = t("cp.status." + p.status);
    const cat = catalog()?.categories.find((x) => x.id === p.category);
    refs.meta.textContent = [catalogName(cat, p.category), t("cp.for", { w: p.for_whom }), t("svc.where", { grid: p.grid_id }), `${fmtTime(p.window_start)} – ${fmtTime(p.window_end)}`].join(" · ");
    refs.more.textContent = p.order_id ? t("mp.approved", { id: p.order_id }) : p.reason ? t("res.reason", { r: p.reason }) : t("mp.waiting");
    return c;
  }

  const now = Date.now();
  start.value = localInput(now + 3600000);
  end.value = localInput(now + 3 * 3600000);
  api("GET", "/v1/catalog")
    .then((c) => {
      cat = c;
      fillCategories();
      render(true);
    })
    .catch((e) => sayProblem(msg, e));
  loadGrids();
  load();
  const reload = throttle(load, 500);

  return {
    load: reload,
    onFrame(f) {
      if (f.type !== "proposal.made" && f.type !== "proposal.updated") return false;
      const p = f.data || {};
      if (p.member_id === memberId) {
        proposals.set(p.id, p);
        render();
      }
      return true;
    },
    relabel() {
      fillCategories();
      render(true);
    },
  };
}
