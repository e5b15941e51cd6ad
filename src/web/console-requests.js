// Residents' requests (群众点单, issue #20) and members' proposals (创单) on /console.
//
// - The inbox: the community's requests (GET /v1/requests?community_id=), newest first,
//   the open ones (`submitted`) unless "show answered" is ticked; live through the
//   community stream's `request.placed` and `request.updated` frames. Each one opens with
//   its detail (GET /v1/requests/{id}: the resident's phone, to call back) and three
//   answers: dispatch it as an order (POST /v1/requests/{id}/dispatch; the order's fields
//   prefilled from the request), merge it into an order of the community or the order of
//   another request (POST /v1/requests/{id}/merge), or decline it with a reason the
//   resident reads (POST /v1/requests/{id}/decline).
// - The community's QR code (GET /v1/communities/{id}/resident-link): residents scan it to
//   reach /r; printable (residents.css: printing shows only the code and its link).
// - Proposals: the community's (GET /v1/proposals), live through `proposal.made` and
//   `proposal.updated`; approve one (POST /v1/proposals/{id}/approve: an order with the
//   member as its first claimant) or decline it with a reason.
//
// Every refusal is shown from the string tables by its code.

import { t, catalogName } from "/web/i18n.js";
import { api, h, $, fmtTime, say, sayProblem, syncCards, throttle } from "/web/common.js";

/** Local `datetime-local` text of an RFC 3339 time (or a Date). */
function localInput(v) {
  const d = new Date(v);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

/** The page's own stylesheet for the inbox and the printable QR code. */
function addStyle() {
  if (document.querySelector('link[href="/web/residents.css"]')) return;
  document.head.append(h("link", { rel: "stylesheet", href: "/web/residents.css" }));
}

/** Fills the sections `#req` and `#prop`; answers {setCommunity(id), onFrame(f), reload(), relabel()}. */
export function mountConsoleRequests(catalog) {
  addStyle();
  const reqRoot = $("#req");
  const propRoot = $("#prop");
  let community = null;
  let opened = null; // the request whose detail is open
  const requests = new Map();
  const reqCards = new Map();
  const proposals = new Map();
  const propCards = new Map();
  let orders = []; // the community's orders, for merging

  const catName = (id) => catalogName(catalog().categories.find((c) => c.id === id), id);
  const tx = (key, attrs = {}, tag = "span") => h(tag, { ...attrs, dataset: { ...(attrs.dataset || {}), i18n: key } }, t(key));

  // ---- the inbox ----

  const qrMsg = h("p", { id: "req-qr-msg", class: "msg", role: "status" });
  const qrOut = h("figure", { id: "req-qr", class: "req-qr", hidden: true });
  const qrShow = h("button", { type: "button", id: "req-qr-show", dataset: { i18n: "rq.qr.show" }, on: { click: showQr } }, t("rq.qr.show"));
  const qrPrint = h("button", { type: "button", id: "req-qr-print", hidden: true, dataset: { i18n: "rq.qr.print" }, on: { click: printQr } }, t("rq.qr.print"));
  const showAll = h("input", { type: "checkbox", id: "req-all", on: { change: () => render() } });
  const listMsg = h("p", { id: "req-list-msg", class: "msg", role: "status" });
  const none = tx("rq.empty", { id: "req-none", class: "muted" }, "p");
  const list = h("ul", { id: "req-list", class: "cards", dataset: { loaded: "false" } });
  const detail = h("div", { id: "req-detail", class: "req-detail", hidden: true, tabindex: "-1", role: "region", "aria-labelledby": "req-detail-h" });

  reqRoot.replaceChildren(
    h("h2", { id: "req-h", dataset: { i18n: "rq.title" } }, t("rq.title")),
    h("div", { class: "actions" }, qrShow, qrPrint),
    qrMsg,
    qrOut,
    h("div", { class: "row" }, tx("rq.inbox", {}, "h3"), h("label", { class: "choice" }, showAll, tx("rq.all"))),
    listMsg,
    none,
    list,
    detail,
  );
  reqRoot.hidden = false;

  async function showQr() {
    if (!community) return;
    try {
      const link = await api("GET", `/v1/communities/${encodeURIComponent(community)}/resident-link`);
      qrOut.replaceChildren(
        h("img", {
          class: "qr",
          alt: t("rq.qr.alt", { c: community }),
          src: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(link.qr_svg),
        }),
        h("figcaption", {}, h("strong", { class: "req-qr-title", dataset: { i18n: "rq.qr.caption" } }, t("rq.qr.caption")), h("span", { id: "req-qr-link", class: "req-link" }, link.link)),
      );
      qrOut.hidden = false;
      qrPrint.hidden = false;
      say(qrMsg, "rq.qr.ready", undefined, "ok");
    } catch (e) {
      sayProblem(qrMsg, e);
    }
  }

  function printQr() {
    document.body.classList.add("print-qr");
    window.print();
  }
  window.addEventListener("afterprint", () => document.body.classList.remove("print-qr"));

  async function load() {
    if (!community) return;
    try {
      const [reqs, props] = await Promise.all([
        api("GET", `/v1/requests?community_id=${encodeURIComponent(community)}`),
        api("GET", "/v1/proposals"),
      ]);
      requests.clear();
      for (const r of reqs) requests.set(r.id, r);
      proposals.clear();
      for (const p of props) if (p.community_id === community) proposals.set(p.id, p);
      list.dataset.loaded = "true";
      propList.dataset.loaded = "true";
      render();
      renderProposals();
      if (opened && requests.has(opened)) drawDetail(requests.get(opened));
    } catch (e) {
      sayProblem(listMsg, e);
    }
  }
  const reload = throttle(load, 400);

  function render(relabel) {
    const all = showAll.checked;
    const shown = [...requests.values()]
      .filter((r) => all || r.status === "submitted" || r.id === opened)
      .sort((a, b) => String(b.placed_at).localeCompare(String(a.placed_at)) || b.id.localeCompare(a.id));
    syncCards(list, reqCards, shown, (r) => r.id, reqCard, relabel);
    none.hidden = shown.length > 0;
  }

  function reqCard(r) {
    let c = reqCards.get(r.id);
    if (!c) {
      const refs = {
        title: h("span", { class: "title" }),
        status: h("span", { class: "badge" }),
        desc: h("p", {}),
        meta: h("p", { class: "muted" }),
        open: h("button", { type: "button", class: "open", on: { click: () => open(r.id) } }),
      };
      const li = h(
        "li",
        { class: "req", dataset: { request: r.id } },
        h("div", { class: "card-head" }, refs.title, refs.status, h("span", { class: "id" }, r.id)),
        refs.desc,
        refs.meta,
        h("div", { class: "actions" }, refs.open),
      );
      c = { li, refs };
      reqCards.set(r.id, c);
    }
    const { li, refs } = c;
    li.dataset.status = r.status;
    refs.title.textContent = catName(r.category);
    refs.status.textContent = t("res.status." + r.status);
    refs.desc.textContent = r.description;
    refs.meta.textContent = [t("svc.where", { grid: r.grid_id }), t("res.when", { from: fmtTime(r.preferred_start), to: fmtTime(r.preferred_end) }), t("rq.placed", { at: fmtTime(r.placed_at) })].join(" · ");
    refs.open.textContent = t("rq.open");
    refs.open.setAttribute("aria-label", t("rq.open.label", { what: catName(r.category), id: r.id }));
    refs.open.setAttribute("aria-expanded", String(opened === r.id));
    return c;
  }

  async function open(id) {
    opened = id;
    render();
    detail.hidden = false;
    detail.replaceChildren(h("p", { class: "muted" }, t("rq.loading")));
    try {
      const [r, all] = await Promise.all([api("GET", `/v1/requests/${encodeURIComponent(id)}`), api("GET", "/v1/orders")]);
      orders = all.filter((o) => o.community_id === community && o.status !== "cancelled");
      requests.set(r.id, r);
      render();
      drawDetail(r, true);
      detail.focus();
    } catch (e) {
      detail.replaceChildren(h("p", { id: "req-detail-msg", class: "msg", role: "alert" }));
      sayProblem($("#req-detail-msg", detail), e);
    }
  }

  function close() {
    const id = opened;
    opened = null;
    detail.hidden = true;
    detail.replaceChildren();
    render();
    reqCards.get(id)?.refs.open.focus();
  }

  function field(id, key, input) {
    return h("div", {}, h("label", { for: id, dataset: { i18n: key } }, t(key)), input);
  }

  /** The detail of request `r`; `fresh`: new, so the forms are filled again. */
  function drawDetail(r, fresh) {
    const keepMsg = $("#req-detail-msg", detail);
    const msg = keepMsg && !fresh ? keepMsg : h("p", { id: "req-detail-msg", class: "msg", role: "alert" });
    const facts = h(
      "dl",
      { class: "req-facts" },
      h("div", {}, tx("rq.status", {}, "dt"), h("dd", { id: "req-detail-status", dataset: { status: r.status } }, t("res.status." + r.status))),
      h("div", {}, tx("res.category", {}, "dt"), h("dd", {}, catName(r.category))),
      h("div", {}, tx("res.grid", {}, "dt"), h("dd", {}, r.grid_id)),
      h("div", {}, tx("res.desc", {}, "dt"), h("dd", {}, r.description)),
      h("div", {}, tx("rq.window", {}, "dt"), h("dd", {}, `${fmtTime(r.preferred_start)} – ${fmtTime(r.preferred_end)}`)),
      h("div", {}, tx("rq.phone", {}, "dt"), h("dd", {}, r.phone ? h("a", { href: `tel:${r.phone}`, id: "req-phone" }, r.phone) : "—")),
    );
    if (r.order_id) facts.append(h("div", {}, tx("rq.order", {}, "dt"), h("dd", { id: "req-detail-order" }, r.order_id + (r.merged ? ` (${t("rq.merged")})` : ""))));
    if (r.reason) facts.append(h("div", {}, tx("rq.reason", {}, "dt"), h("dd", {}, r.reason)));
    if (r.rating) facts.append(h("div", {}, tx("rq.rating", {}, "dt"), h("dd", {}, t("res.rating." + r.rating) + (r.comment ? ` · ${r.comment}` : ""))));
    const parts = [
      h("div", { class: "card-head" }, h("h3", { id: "req-detail-h" }, t("rq.detail", { id: r.id })), h("button", { type: "button", id: "req-close", class: "small", on: { click: close } }, t("rq.close"))),
      facts,
    ];
    if (r.status === "submitted") {
      if (fresh || !$("#req-dispatch-form", detail)) parts.push(...answerForms(r, msg));
      else parts.push($("#req-dispatch-form", detail), $("#req-merge-form", detail), $("#req-decline-form", detail));
    }
    parts.push(msg);
    detail.replaceChildren(...parts);
  }

  function answerForms(r, msg) {
    const title = h("input", { id: "req-d-title", type: "text", maxlength: 200, required: true, value: `${catName(r.category)}：${r.description.slice(0, 40)}` });
    const slots = h("input", { id: "req-d-slots", type: "number", min: 1, max: 500, step: 1, value: "1", required: true });
    const diff = h(
      "select",
      { id: "req-d-difficulty" },
      h("option", { value: "" }, t("svc.difficulty.auto")),
      // Not below the category's own difficulty (the server refuses that).
      ...[1, 2, 3, 4, 5]
        .filter((n) => n >= (catalog().categories.find((c) => c.id === r.category)?.difficulty || 1))
        .map((n) => h("option", { value: String(n) }, t("svc.difficulty", { d: n }))),
    );
    const now = Date.now();
    const from = Math.max(new Date(r.preferred_start).getTime(), now);
    const until = Math.max(new Date(r.preferred_end).getTime(), from + 3600000);
    const start = h("input", { id: "req-d-start", type: "datetime-local", required: true, value: localInput(from) });
    const end = h("input", { id: "req-d-end", type: "datetime-local", required: true, value: localInput(until) });
    const note = h("textarea", { id: "req-d-note", maxlength: 1000 });
    note.value = r.description;
    const dispatchForm = h(
      "form",
      { id: "req-dispatch-form", novalidate: true },
      tx("rq.dispatch.title", {}, "h4"),
      field("req-d-title", "svc.post.name", title),
      h("div", { class: "row fill" }, field("req-d-slots", "console.headcount", slots), field("req-d-difficulty", "svc.post.difficulty", diff)),
      h("div", { class: "when-row" }, field("req-d-start", "svc.post.start", start), field("req-d-end", "svc.post.end", end)),
      field("req-d-note", "console.note", note),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "req-dispatch", dataset: { i18n: "rq.dispatch" } }, t("rq.dispatch"))),
    );
    dispatchForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const s = new Date(start.value);
      const en = new Date(end.value);
      if (isNaN(s) || isNaN(en) || en <= s) {
        say(msg, "code.bad_window", undefined, "error");
        end.focus();
        return;
      }
      const body = { title: title.value.trim() || undefined, window_start: s.toISOString(), window_end: en.toISOString(), slots: parseInt(slots.value, 10) || 0 };
      if (note.value.trim()) body.note = note.value.trim();
      if (diff.value) body.difficulty = parseInt(diff.value, 10);
      await answer(r.id, api("POST", `/v1/requests/${encodeURIComponent(r.id)}/dispatch`, body), msg, "rq.dispatched");
    });

    const into = h("select", { id: "req-m-order" });
    const choices = [];
    for (const o of orders) choices.push(h("option", { value: o.id }, t("rq.merge.order", { title: o.title, id: o.id })));
    for (const other of requests.values()) {
      if (other.id === r.id || !other.order_id || other.merged) continue;
      if (choices.some((c) => c.value === other.order_id)) continue;
      choices.push(h("option", { value: other.order_id }, t("rq.merge.request", { id: other.id, order: other.order_id })));
    }
    into.replaceChildren(...choices);
    const mergeForm = h(
      "form",
      { id: "req-merge-form", novalidate: true },
      tx("rq.merge.title", {}, "h4"),
      choices.length
        ? h("div", { class: "row" }, field("req-m-order", "rq.merge.into", into), h("button", { type: "submit", id: "req-merge", dataset: { i18n: "rq.merge" } }, t("rq.merge")))
        : tx("rq.merge.none", { class: "muted" }, "p"),
    );
    mergeForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!into.value) return;
      await answer(r.id, api("POST", `/v1/requests/${encodeURIComponent(r.id)}/merge`, { order_id: into.value }), msg, "rq.merged.into");
    });

    const reason = h("input", { id: "req-reason", type: "text", maxlength: 1000, required: true });
    const declineForm = h(
      "form",
      { id: "req-decline-form", novalidate: true },
      tx("rq.decline.title", {}, "h4"),
      h("div", { class: "row" }, field("req-reason", "rq.reason.label", reason), h("button", { type: "submit", class: "danger", id: "req-decline", dataset: { i18n: "rq.decline" } }, t("rq.decline"))),
    );
    declineForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!reason.value.trim()) {
        say(msg, "code.reason_required", undefined, "error");
        reason.focus();
        return;
      }
      await answer(r.id, api("POST", `/v1/requests/${encodeURIComponent(r.id)}/decline`, { reason: reason.value.trim() }), msg, "rq.declined");
    });
    return [dispatchForm, mergeForm, declineForm];
  }

  /** The answer `sent` (the API call under way) to request `id`, said in `msg`. */
  async function answer(id, sent, msg, done) {
    try {
      const r = await sent;
      requests.set(r.id, { ...requests.get(r.id), ...r });
      render();
      if (opened === id) drawDetail(requests.get(id), true);
      say($("#req-detail-msg", detail), done, { order: r.order_id || "" }, "ok");
    } catch (e) {
      sayProblem(msg, e);
    }
  }

  // ---- proposals (创单) ----

  const propAll = h("input", { type: "checkbox", id: "prop-all", on: { change: () => renderProposals() } });
  const propMsg = h("p", { id: "prop-msg", class: "msg", role: "status" });
  const propNone = tx("cp.empty", { id: "prop-none", class: "muted" }, "p");
  const propList = h("ul", { id: "prop-list", class: "cards", dataset: { loaded: "false" } });
  propRoot.replaceChildren(
    h("div", { class: "row" }, h("h2", { id: "prop-h", dataset: { i18n: "cp.title" } }, t("cp.title")), h("label", { class: "choice" }, propAll, tx("rq.all"))),
    propMsg,
    propNone,
    propList,
  );
  propRoot.hidden = false;

  function renderProposals(relabel) {
    const all = propAll.checked;
    const shown = [...proposals.values()]
      .filter((p) => all || p.status === "proposed")
      .sort((a, b) => String(b.proposed_at).localeCompare(String(a.proposed_at)) || b.id.localeCompare(a.id));
    syncCards(propList, propCards, shown, (p) => p.id, propCard, relabel);
    propNone.hidden = shown.length > 0;
  }

  function propCard(p) {
    let c = propCards.get(p.id);
    if (!c) {
      const reasonId = `prop-reason-${p.id}`;
      const refs = {
        title: h("span", { class: "title" }),
        status: h("span", { class: "badge" }),
        meta: h("p", { class: "muted" }),
        desc: h("p", {}),
        reasonLabel: h("label", { for: reasonId }),
        reason: h("input", { id: reasonId, class: "reason", type: "text", maxlength: 1000 }),
        approve: h("button", { type: "button", class: "approve primary", on: { click: () => decide(p.id, "approve") } }),
        decline: h("button", { type: "button", class: "decline danger", on: { click: () => decide(p.id, "decline") } }),
        msg: h("p", { class: "msg", role: "alert" }),
      };
      refs.answer = h("div", { class: "row" }, refs.approve, h("div", {}, refs.reasonLabel, refs.reason), refs.decline);
      const li = h(
        "li",
        { class: "proposal", dataset: { proposal: p.id } },
        h("div", { class: "card-head" }, refs.title, refs.status, h("span", { class: "id" }, p.id)),
        refs.meta,
        refs.desc,
        refs.answer,
        refs.msg,
      );
      c = { li, refs };
      propCards.set(p.id, c);
    }
    const { li, refs } = c;
    li.dataset.status = p.status;
    refs.title.textContent = p.title;
    refs.status.textContent = t("cp.status." + p.status);
    refs.meta.textContent = [
      catName(p.category),
      t("cp.by", { m: p.member_id }),
      t("cp.for", { w: p.for_whom }),
      t("svc.where", { grid: p.grid_id }),
      `${fmtTime(p.window_start)} – ${fmtTime(p.window_end)}`,
      t("cp.slots", { n: p.slots }),
    ].join(" · ");
    refs.desc.textContent = [p.description, p.order_id && t("cp.order", { id: p.order_id }), p.reason && t("res.reason", { r: p.reason })].filter(Boolean).join(" · ");
    refs.reasonLabel.textContent = t("rq.reason.label");
    refs.approve.textContent = t("cp.approve");
    refs.decline.textContent = t("cp.decline");
    refs.approve.setAttribute("aria-label", t("cp.approve.label", { title: p.title }));
    refs.decline.setAttribute("aria-label", t("cp.decline.label", { title: p.title }));
    refs.answer.hidden = p.status !== "proposed";
    return c;
  }

  async function decide(id, verb) {
    const { refs } = propCards.get(id);
    let body;
    if (verb === "decline") {
      const reason = refs.reason.value.trim();
      if (!reason) {
        say(refs.msg, "code.reason_required", undefined, "error");
        refs.reason.focus();
        return;
      }
      body = { reason };
    }
    try {
      const path = encodeURIComponent(id);
      const p = await (verb === "approve"
        ? api("POST", `/v1/proposals/${path}/approve`)
        : api("POST", `/v1/proposals/${path}/decline`, body));
      proposals.set(p.id, p);
      renderProposals();
      say(propCards.get(id)?.refs.msg || propMsg, verb === "approve" ? "cp.approved" : "cp.declined", { id: p.order_id || "" }, "ok");
    } catch (e) {
      sayProblem(refs.msg, e);
    }
  }

  return {
    async setCommunity(id) {
      community = id;
      opened = null;
      detail.hidden = true;
      qrOut.hidden = true;
      qrPrint.hidden = true;
      requests.clear();
      proposals.clear();
      await load();
    },
    onFrame(f) {
      const d = f.data || {};
      if (f.type === "request.placed" || f.type === "request.updated") {
        if (d.community_id !== community) return true;
        requests.set(d.id, { ...requests.get(d.id), ...d });
        render();
        if (opened === d.id) drawDetail(requests.get(d.id), false);
        return true;
      }
      if (f.type === "proposal.made" || f.type === "proposal.updated") {
        if (d.community_id !== community) return true;
        proposals.set(d.id, d);
        renderProposals();
        return true;
      }
      return false;
    },
    reload,
    relabel() {
      const img = $("#req-qr img.qr");
      if (img) img.alt = t("rq.qr.alt", { c: community });
      render(true);
      renderProposals(true);
      if (opened && requests.has(opened)) drawDetail(requests.get(opened), false);
    },
  };
}
