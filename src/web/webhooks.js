// The outbound webhooks panel of /dashboard (command): the endpoints the caller manages
// with their delivery state, registering one (its signing secret is shown once), enabling,
// disabling and deleting, and an endpoint's dead letters with their replay.

import { t } from "/web/i18n.js";
import { api, h, $, flash, ask } from "/web/common.js";

let root = null;
let claims = null;
let types = [];
let hooks = [];
let deadFor = null;

/**
 * @param {HTMLElement} section  the panel's <section>
 * @param {object} c             the caller's token claims
 */
export function mountWebhooks(section, c) {
  root = section;
  claims = c;
  root.hidden = false;
  render();
  refreshWebhooks();
}

/** Reloads the endpoints (on a `webhook.changed` frame, and after each action). */
export async function refreshWebhooks() {
  if (!root) return;
  try {
    const list = await api("GET", "/v1/webhooks");
    const fresh = types.length === 0;
    types = list.event_types;
    hooks = list.webhooks;
    if (fresh) render();
    renderTable();
    if (deadFor) loadDead(deadFor);
  } catch (e) {
    flash($("#hook-msg"), e.detail || e.message, "error");
  }
}

/** Redraws the panel in the current language. */
export function renderWebhooks() {
  if (root) {
    render();
    renderTable();
  }
}

function fmt(at) {
  return at ? new Date(at).toLocaleString() : "—";
}

function render() {
  const city = !claims.district;
  const url = h("input", { id: "hook-url", type: "url", required: true, spellcheck: false, autocomplete: "off", placeholder: "https://" });
  const boxes = types.map((ty) =>
    h(
      "label",
      { class: "check" },
      h("input", { type: "checkbox", name: "hook-type", value: ty }),
      " ",
      t("hook.t." + ty),
    ),
  );
  const district = city
    ? h("div", {}, h("label", { for: "hook-district" }, t("hook.district")),
        h("input", { id: "hook-district", type: "text", spellcheck: false, autocomplete: "off", placeholder: t("hook.district.hint") }))
    : null;
  const form = h(
    "form",
    { id: "hook-form", novalidate: true },
    h("div", { class: "row fill" }, h("div", {}, h("label", { for: "hook-url" }, t("hook.url")), url), district),
    h("fieldset", { id: "hook-types" }, h("legend", {}, t("hook.types")), ...boxes),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "hook-add" }, t("hook.add"))),
    h("p", { id: "hook-msg", class: "msg", role: "status" }),
    h("div", { id: "hook-secret", hidden: true },
      h("label", { for: "hook-secret-value" }, t("hook.secret")),
      h("input", { id: "hook-secret-value", type: "text", readOnly: true }),
      h("p", { class: "muted" }, t("hook.secret.once"))),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    register();
  });
  root.replaceChildren(
    h("h2", { id: "hook-h" }, t("hook.title")),
    form,
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-labelledby": "hook-h" }, h("table", { id: "hook-table" })),
    h("p", { id: "hook-empty", class: "muted" }, t("hook.empty")),
    h("div", { id: "hook-dead", hidden: true }),
  );
}

async function register() {
  const msg = $("#hook-msg");
  const url = $("#hook-url").value.trim();
  const chosen = [...root.querySelectorAll("input[name=hook-type]:checked")].map((b) => b.value);
  if (!url || chosen.length === 0) {
    flash(msg, t("hook.need"), "error");
    return;
  }
  const body = { url, types: chosen };
  const d = $("#hook-district");
  if (d && d.value.trim()) body.district_id = d.value.trim();
  try {
    const made = await api("POST", "/v1/webhooks", body);
    $("#hook-secret-value").value = made.secret;
    $("#hook-secret").hidden = false;
    $("#hook-url").value = "";
    flash(msg, t("hook.made", { id: made.id }), "ok");
    await refreshWebhooks();
  } catch (e) {
    flash(msg, e.detail || e.message, "error");
  }
}

function renderTable() {
  const table = $("#hook-table");
  if (!table) return;
  $("#hook-empty").hidden = hooks.length > 0;
  const cols = ["id", "url", "types", "state", "last", "failed", "dead", "backlog", "actions"];
  table.replaceChildren(
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, t("hook.col." + c))))),
    h(
      "tbody",
      {},
      hooks.map((w) => {
        const on = w.state === "active";
        const state = on ? t("hook.state.active") : `${t("hook.state.disabled")}${w.disabled_reason ? ": " + w.disabled_reason : ""}`;
        return h(
          "tr",
          { dataset: { id: w.id } },
          h("td", {}, w.id),
          h("td", { class: "wrap" }, w.url),
          h("td", {}, w.types.map((ty) => t("hook.t." + ty)).join(", ")),
          h("td", { class: on ? "" : "warn" }, state),
          h("td", {}, fmt(w.last_success_at)),
          h("td", { title: w.last_error || "" }, String(w.failed)),
          h("td", {}, String(w.dead_letters)),
          h("td", {}, String(w.backlog)),
          h(
            "td",
            { class: "actions" },
            h("button", { type: "button", class: "hook-toggle", onclick: () => toggle(w) }, on ? t("hook.disable") : t("hook.enable")),
            h("button", { type: "button", class: "hook-dead", onclick: () => loadDead(w.id) }, t("hook.dead")),
            h("button", { type: "button", class: "hook-rotate", onclick: () => rotate(w) }, t("hook.rotate")),
            h("button", { type: "button", class: "hook-delete danger", onclick: () => remove(w) }, t("hook.delete")),
          ),
        );
      }),
    ),
  );
}

async function toggle(w) {
  try {
    const id = encodeURIComponent(w.id);
    if (w.state === "active") await api("POST", `/v1/webhooks/${id}/disable`);
    else await api("POST", `/v1/webhooks/${id}/enable`);
    await refreshWebhooks();
  } catch (e) {
    flash($("#hook-msg"), e.detail || e.message, "error");
  }
}

// A new secret for an endpoint (the old one stops signing at once): shown this once, in
// the same box as a new endpoint's.
async function rotate(w) {
  if ((await ask(t("hook.rotate.ask", { id: w.id }))) === null) return;
  try {
    const made = await api("POST", `/v1/webhooks/${encodeURIComponent(w.id)}/rotate`);
    $("#hook-secret-value").value = made.secret;
    $("#hook-secret").hidden = false;
    flash($("#hook-msg"), t("hook.rotated", { id: w.id }), "ok");
  } catch (e) {
    flash($("#hook-msg"), e.detail || e.message, "error");
  }
}

async function remove(w) {
  if ((await ask(t("hook.delete.ask", { id: w.id }))) === null) return;
  try {
    await api("DELETE", `/v1/webhooks/${encodeURIComponent(w.id)}`);
    if (deadFor === w.id) deadFor = null;
    await refreshWebhooks();
  } catch (e) {
    flash($("#hook-msg"), e.detail || e.message, "error");
  }
}

async function loadDead(id) {
  deadFor = id;
  const box = $("#hook-dead");
  try {
    const letters = await api("GET", `/v1/webhooks/${encodeURIComponent(id)}/dead-letters`);
    const replay = h("button", { type: "button", id: "hook-replay", disabled: letters.length === 0 }, t("hook.replay"));
    replay.addEventListener("click", async () => {
      try {
        const r = await api("POST", `/v1/webhooks/${encodeURIComponent(id)}/dead-letters/replay`);
        flash($("#hook-dead-msg"), t("hook.replayed", { n: r.replayed }), "ok");
        loadDead(id);
      } catch (e) {
        flash($("#hook-dead-msg"), e.detail || e.message, "error");
      }
    });
    const cols = ["seq", "type", "message", "attempts", "error", "at"];
    box.replaceChildren(
      h("h3", { id: "hook-dead-h" }, t("hook.dead.title", { id })),
      letters.length === 0 ? h("p", { class: "muted" }, t("hook.dead.empty")) : null,
      h(
        "div",
        { class: "table-wrap", tabindex: "0", role: "region", "aria-labelledby": "hook-dead-h" },
        h(
          "table",
          { id: "hook-dead-table" },
          h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, t("hook.dcol." + c))))),
          h(
            "tbody",
            {},
            letters.map((l) =>
              h(
                "tr",
                {},
                h("td", {}, String(l.seq)),
                h("td", {}, t("hook.t." + l.type)),
                h("td", {}, l.message_id),
                h("td", {}, String(l.attempts)),
                h("td", { class: "wrap" }, l.error + (l.replay ? ` (${t("hook.replaying")})` : "")),
                h("td", {}, fmt(l.dead_at)),
              ),
            ),
          ),
        ),
      ),
      h("div", { class: "actions" }, replay),
      h("p", { id: "hook-dead-msg", class: "msg", role: "status" }),
    );
    box.hidden = false;
  } catch (e) {
    deadFor = null;
    box.hidden = true;
    flash($("#hook-msg"), e.detail || e.message, "error");
  }
}
