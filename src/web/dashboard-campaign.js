// Command's campaigns on /dashboard (issue 19): create one (name, scope, start and end,
// rules), list and open one; its sites (a grid's centre, coordinates typed, or a point
// picked on the city map; edit, close), its shifts, its requirements per site × shift ×
// role (headcount, skills), a CSV import of sites and requirements with every refused row
// shown, the roster (compute and publish; a stale roster is said, with a retry), closing;
// and the site × shift × role table (required, planned, acknowledged, present, gap, the
// binding rule) with the fatigue warnings, kept live from `campaign.progress` frames.
// Refusals are shown by their code from the string tables.

import { t, getLang } from "/web/i18n.js";
import { api, h, $, ask, say, sayProblem, problemKey, throttle, accessToken } from "/web/common.js";

let root = null;
let o = null; // {claims, catalog(), districts(), grids(district_id|null)}
let list = [];
let open = null; // the open campaign's view
let picking = false;

const HOUR = 3_600_000;

/** `datetime-local` value of a time (local clock, minutes). */
function local(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function iso(value) {
  const d = new Date(value);
  return isNaN(d) ? null : d.toISOString();
}

function when(isoText) {
  const d = new Date(isoText);
  if (isNaN(d)) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getMonth() + 1}/${d.getDate()} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

function roleName(id) {
  const r = (o.catalog().campaign_roles || []).find((x) => x.id === id);
  return r ? (getLang() === "en" ? r.en : r.zh) : id;
}

/** A labelled field: [label, control] in a div. */
function field(id, key, control) {
  return h("div", {}, h("label", { for: id, "data-i18n": key }, t(key)), control);
}

function input(id, attrs = {}) {
  return h("input", { id, ...attrs });
}

/** Puts these `[value, text]` choices in `select` (not again if they are there: a choice
 * being made is left alone), keeping the value chosen. */
function options(select, pairs, keep = select.value) {
  const now = [...select.options];
  if (now.length === pairs.length && now.every((x, i) => x.value === pairs[i][0] && x.text === pairs[i][1])) return;
  select.replaceChildren(...pairs.map(([v, text]) => h("option", { value: v }, text)));
  if (pairs.some(([v]) => v === keep)) select.value = keep;
}

/**
 * Mounts the panel in `section`. `opts`: `{claims, catalog(), districts()}` (`[[id, name]]`)
 * and `grids(districtId)` (`[[grid_id, label]]` of that district, or the city's for null).
 */
export function mountCampaigns(section, opts) {
  root = section;
  o = opts;
  root.hidden = false;
  render();
  refreshCampaigns();
}

/** Redraws the panel in the current language (what was typed is kept). */
export function renderCampaigns() {
  if (!root) return;
  const values = [...root.querySelectorAll("input[id], select[id]")]
    .filter((e) => e.type !== "file")
    .map((e) => [e.id, e.multiple ? [...e.selectedOptions].map((x) => x.value) : e.value]);
  render();
  for (const [id, v] of values) {
    const e = root.querySelector("#" + id);
    if (!e) continue;
    if (Array.isArray(v)) for (const x of e.options) x.selected = v.includes(x.value);
    else e.value = v;
  }
  showKind();
  renderList();
  renderOpen();
}

function render() {
  const now = Date.now();
  const start = Math.floor(now / HOUR) * HOUR;
  const scope = h("select", { id: "cmp-scope" });
  fillScope(scope);
  const num = (id, value, min, max, step = "any") => input(id, { type: "number", min, max, step, value, inputmode: "decimal", required: true });
  const create = h(
    "form",
    { id: "cmp-create", novalidate: true, on: { submit: onCreate, focusin: () => fillScope() } },
    h("h3", { "data-i18n": "cmp.create" }, t("cmp.create")),
    h(
      "div",
      { class: "row fill" },
      field("cmp-name", "cmp.name", input("cmp-name", { type: "text", maxlength: 200, required: true, autocomplete: "off" })),
      field("cmp-scope", "cmp.scope", scope),
    ),
    h(
      "div",
      { class: "when-row" },
      field("cmp-start", "cmp.start", input("cmp-start", { type: "datetime-local", value: local(start), required: true })),
      field("cmp-end", "cmp.end", input("cmp-end", { type: "datetime-local", value: local(start + 72 * HOUR), required: true })),
    ),
    h(
      "div",
      { class: "row fill" },
      field("cmp-hours", "cmp.rules.hours", num("cmp-hours", 12, 1, 24)),
      field("cmp-rest", "cmp.rules.rest", num("cmp-rest", 8, 0, 48)),
      field("cmp-days", "cmp.rules.days", num("cmp-days", 3, 1, 120, 1)),
      field("cmp-distance", "cmp.rules.distance", num("cmp-distance", 20000, 100, 100000)),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "cmp-create-submit", "data-i18n": "cmp.create.submit" }, t("cmp.create.submit"))),
  );
  const detail = h(
    "div",
    { id: "cmp-detail", hidden: !open },
    h("h3", { id: "cmp-open-name", tabindex: "-1" }),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "primary", id: "cmp-roster", on: { click: onRoster } }, t("cmp.roster")),
      h("button", { type: "button", id: "cmp-close", on: { click: onClose } }, t("cmp.close")),
    ),
    h("p", { id: "cmp-open-msg", class: "msg", role: "status" }),
    h("p", { id: "cmp-live", class: "msg", role: "status" }),
    h("ul", { id: "cmp-shortfall", class: "plain" }),
    h("h4", { id: "cmp-table-h", "data-i18n": "cmp.table" }, t("cmp.table")),
    h("p", { id: "cmp-table-empty", class: "muted", "data-i18n": "cmp.table.empty" }, t("cmp.table.empty")),
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-labelledby": "cmp-table-h" }, h("table", { id: "cmp-cells", "aria-labelledby": "cmp-table-h" })),
    h("h4", { "data-i18n": "cmp.fatigue" }, t("cmp.fatigue")),
    h("ul", { id: "cmp-fatigue", class: "plain" }),
    h("h4", { id: "cmp-sites-h", "data-i18n": "cmp.sites" }, t("cmp.sites")),
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-labelledby": "cmp-sites-h" }, h("table", { id: "cmp-sites", "aria-labelledby": "cmp-sites-h" })),
    siteForm(),
    h("h4", { id: "cmp-shifts-h", "data-i18n": "cmp.shifts" }, t("cmp.shifts")),
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-labelledby": "cmp-shifts-h" }, h("table", { id: "cmp-shifts", "aria-labelledby": "cmp-shifts-h" })),
    shiftForm(now),
    h("h4", { "data-i18n": "cmp.reqs" }, t("cmp.reqs")),
    reqForm(),
    h("h4", { "data-i18n": "cmp.import" }, t("cmp.import")),
    importForm(),
  );
  root.replaceChildren(
    h("h2", { id: "cmp-h", "data-i18n": "cmp.title" }, t("cmp.title")),
    create,
    h("p", { id: "cmp-msg", class: "msg", role: "status" }),
    h("h3", { id: "cmp-list-h", "data-i18n": "cmp.list" }, t("cmp.list")),
    h("p", { id: "cmp-empty", class: "muted", "data-i18n": "cmp.list.empty", hidden: list.length > 0 }, t("cmp.list.empty")),
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-labelledby": "cmp-list-h" }, h("table", { id: "cmp-list", "aria-labelledby": "cmp-list-h" })),
    detail,
  );
}

/** The scopes command may create a campaign in: the city (city command), its districts. */
function fillScope(select = $("#cmp-scope", root)) {
  const mine = o.claims.district;
  const districts = o.districts().filter(([id]) => !mine || id === mine);
  if (mine && !districts.length) districts.push([mine, mine]);
  options(select, [...(mine ? [] : [["", t("cmp.scope.city")]]), ...districts.map(([id, name]) => [id, `${name} (${id})`])]);
}

function siteForm() {
  const kind = h("select", { id: "cmp-site-kind", on: { change: showKind } });
  options(kind, [["grid", t("cmp.site.kind.grid")], ["point", t("cmp.site.kind.point")]], "grid");
  return h(
    "form",
    { id: "cmp-site-form", novalidate: true, on: { submit: onSite } },
    h(
      "div",
      { class: "row fill" },
      field("cmp-site-id", "cmp.site.id", input("cmp-site-id", { type: "text", maxlength: 64, spellcheck: false, autocomplete: "off", required: true })),
      field("cmp-site-name", "cmp.site.name", input("cmp-site-name", { type: "text", maxlength: 200, autocomplete: "off", required: true })),
      field("cmp-site-kind", "cmp.site.kind", kind),
    ),
    h("div", { class: "row fill", dataset: { kind: "grid" } }, field("cmp-site-grid", "cmp.site.grid", h("select", { id: "cmp-site-grid" }))),
    h(
      "div",
      { class: "row fill", dataset: { kind: "point" }, hidden: true },
      field("cmp-site-lat", "cmp.site.lat", input("cmp-site-lat", { type: "text", inputmode: "decimal" })),
      field("cmp-site-lng", "cmp.site.lng", input("cmp-site-lng", { type: "text", inputmode: "decimal" })),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", id: "cmp-site-pick", "aria-pressed": "false", on: { click: armPick } }, t("cmp.site.pick")),
      h("button", { type: "submit", class: "primary", id: "cmp-site-save" }, t("cmp.site.save")),
    ),
    h("p", { id: "cmp-site-msg", class: "msg", role: "status" }),
  );
}

function shiftForm(now) {
  const start = Math.ceil(now / HOUR) * HOUR;
  return h(
    "form",
    { id: "cmp-shift-form", novalidate: true, on: { submit: onShift } },
    h(
      "div",
      { class: "row fill" },
      field("cmp-shift-id", "cmp.shift.id", input("cmp-shift-id", { type: "text", maxlength: 64, spellcheck: false, autocomplete: "off", required: true })),
      field("cmp-shift-site", "cmp.shift.site", h("select", { id: "cmp-shift-site" })),
    ),
    h(
      "div",
      { class: "when-row" },
      field("cmp-shift-start", "cmp.start", input("cmp-shift-start", { type: "datetime-local", value: local(start), required: true })),
      field("cmp-shift-end", "cmp.end", input("cmp-shift-end", { type: "datetime-local", value: local(start + 6 * HOUR), required: true })),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "cmp-shift-save" }, t("cmp.shift.save"))),
    h("p", { id: "cmp-shift-msg", class: "msg", role: "status" }),
  );
}

function reqForm() {
  const skills = h("select", { id: "cmp-req-skills", multiple: true, size: 3 });
  options(skills, (o.catalog().skills || []).map((s) => [s.id, s.name]));
  const role = h("select", { id: "cmp-req-role" });
  options(role, (o.catalog().campaign_roles || []).map((r) => [r.id, roleName(r.id)]));
  return h(
    "form",
    { id: "cmp-req-form", novalidate: true, on: { submit: onReq } },
    h(
      "div",
      { class: "row fill" },
      field("cmp-req-site", "cmp.col.site", h("select", { id: "cmp-req-site" })),
      field("cmp-req-shift", "cmp.col.shift", h("select", { id: "cmp-req-shift" })),
      field("cmp-req-role", "cmp.req.role", role),
      field("cmp-req-n", "cmp.req.headcount", input("cmp-req-n", { type: "number", min: 0, max: 500, step: 1, value: 1, inputmode: "numeric" })),
    ),
    field("cmp-req-skills", "cmp.req.skills", skills),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "cmp-req-save" }, t("cmp.req.save"))),
    h("p", { id: "cmp-req-msg", class: "msg", role: "status" }),
  );
}

function importForm() {
  return h(
    "form",
    { id: "cmp-import-form", novalidate: true, on: { submit: onImport } },
    h("p", { class: "muted", "data-i18n": "cmp.import.help" }, t("cmp.import.help")),
    field("cmp-import-file", "cmp.import.file", input("cmp-import-file", { type: "file", accept: ".csv,text/csv" })),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "cmp-import-submit" }, t("cmp.import.submit"))),
    h("p", { id: "cmp-import-msg", class: "msg", role: "status" }),
    h("ul", { id: "cmp-import-errors", class: "plain" }),
  );
}

function showKind() {
  const kind = $("#cmp-site-kind", root)?.value || "grid";
  for (const el of root.querySelectorAll("[data-kind]")) el.hidden = el.dataset.kind !== kind;
}

// ---- the list ----

/** Reloads the list and the open campaign (on a hello, a frame, after each action). */
export async function refreshCampaigns() {
  if (!root) return;
  try {
    list = (await api("GET", "/v1/campaigns")).campaigns;
    fillScope();
    renderList();
    if (open) await loadOpen(open.id);
  } catch (e) {
    sayProblem($("#cmp-msg", root), e);
  }
}
const refreshSoon = throttle(refreshCampaigns, 300);

function renderList() {
  const table = $("#cmp-list", root);
  $("#cmp-empty", root).hidden = list.length > 0;
  if (!list.length) {
    table.replaceChildren();
    return;
  }
  const th = (k) => h("th", { scope: "col" }, t(k));
  const rows = [...list]
    .sort((a, b) => String(b.start).localeCompare(String(a.start)))
    .map((c) =>
      h(
        "tr",
        { dataset: { campaign: c.id } },
        h("th", { scope: "row" }, c.name),
        h("td", {}, c.district_id || t("cmp.scope.city")),
        h("td", {}, `${when(c.start)} – ${when(c.end)}`),
        h("td", {}, c.closed ? t("cmp.closed") : c.roster_version ? `v${c.roster_version}` : t("cmp.none")),
        h("td", { class: "num" }, `${c.required} / ${c.planned} / ${c.gap}`),
        h(
          "td",
          {},
          h("button", { type: "button", class: "cmp-open", "aria-label": t("cmp.open.label", { name: c.name }), on: { click: () => openCampaign(c.id, true) } }, t("cmp.open")),
        ),
      ),
    );
  table.replaceChildren(
    h("thead", {}, h("tr", {}, th("cmp.col.name"), th("cmp.scope"), th("cmp.col.time"), th("cmp.col.roster"), th("cmp.col.fill"), th("cmp.col.actions"))),
    h("tbody", {}, ...rows),
  );
}

async function onCreate(e) {
  e.preventDefault();
  const msg = $("#cmp-msg", root);
  const name = $("#cmp-name", root).value.trim();
  if (!name) return need(msg, "#cmp-name", "cmp.name");
  const start = iso($("#cmp-start", root).value);
  if (!start) return need(msg, "#cmp-start", "cmp.start");
  const end = iso($("#cmp-end", root).value);
  if (!end) return need(msg, "#cmp-end", "cmp.end");
  const body = {
    name,
    start,
    end,
    rules: {
      max_hours_in_24h: Number($("#cmp-hours", root).value),
      min_rest_h: Number($("#cmp-rest", root).value),
      max_consecutive_days: Number($("#cmp-days", root).value),
      max_distance_m: Number($("#cmp-distance", root).value),
    },
  };
  const scope = $("#cmp-scope", root).value;
  if (scope) body.district_id = scope;
  try {
    const c = await api("POST", "/v1/campaigns", body);
    say(msg, "cmp.created", { name: c.name }, "ok");
    $("#cmp-name", root).value = "";
    await refreshCampaigns();
    await openCampaign(c.id, true);
  } catch (err) {
    sayProblem(msg, err);
  }
}

function need(msg, sel, key) {
  say(msg, "cmp.need", { field: { k: key } }, "error");
  $(sel, root).focus();
}

// ---- one campaign ----

async function openCampaign(id, focus) {
  await loadOpen(id);
  if (focus) $("#cmp-open-name", root).focus();
}

async function loadOpen(id) {
  try {
    open = await api("GET", `/v1/campaigns/${encodeURIComponent(id)}`);
    renderOpen();
  } catch (e) {
    if (e.status === 404) open = null;
    renderOpen();
    sayProblem($("#cmp-msg", root), e);
  }
}

function siteName(id) {
  return open?.sites.find((s) => s.id === id)?.name || id;
}

function renderOpen() {
  const detail = $("#cmp-detail", root);
  detail.hidden = !open;
  if (!open) return;
  detail.dataset.campaign = open.id;
  detail.dataset.closed = String(open.closed);
  $("#cmp-open-name", root).textContent = `${open.name} · ${open.closed ? t("cmp.closed") : t("cmp.running")}${open.roster_version ? ` · v${open.roster_version}` : ""}`;
  for (const id of ["#cmp-roster", "#cmp-close", "#cmp-site-save", "#cmp-shift-save", "#cmp-req-save", "#cmp-import-submit"]) $(id, root).disabled = open.closed;
  renderCells();
  renderSites();
  renderShifts();
  // The choices of the forms.
  options($("#cmp-site-grid", root), o.grids(open.district_id));
  options($("#cmp-shift-site", root), [["", t("cmp.shift.shared")], ...open.sites.map((s) => [s.id, `${s.name} (${s.id})`])]);
  options($("#cmp-req-site", root), open.sites.filter((s) => !s.closed).map((s) => [s.id, `${s.name} (${s.id})`]));
  options($("#cmp-req-shift", root), open.shifts.map((s) => [s.id, `${s.id} · ${when(s.start)}`]));
  const sid = $("#cmp-site-id", root);
  if (!sid.value) sid.value = nextId("s", open.sites);
  const shid = $("#cmp-shift-id", root);
  if (!shid.value) shid.value = nextId("shift", open.shifts);
}

function nextId(prefix, items) {
  let n = items.length + 1;
  while (items.some((x) => x.id === `${prefix}${n}`)) n++;
  return `${prefix}${n}`;
}

function renderCells() {
  const table = $("#cmp-cells", root);
  $("#cmp-table-empty", root).hidden = open.cells.length > 0;
  const th = (k) => h("th", { scope: "col" }, t(k));
  const shiftStart = (id) => open.shifts.find((s) => s.id === id)?.start || "";
  const cells = [...open.cells].sort(
    (a, b) => a.site_id.localeCompare(b.site_id) || String(shiftStart(a.shift_id)).localeCompare(String(shiftStart(b.shift_id))) || a.role.localeCompare(b.role),
  );
  const num = (v, k) => h("td", { class: "num", dataset: { col: k } }, String(v));
  table.replaceChildren(
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        th("cmp.col.site"), th("cmp.col.shift"), th("cmp.col.role"), th("cmp.col.required"), th("cmp.col.planned"),
        th("cmp.col.acknowledged"), th("cmp.col.present"), th("cmp.col.gap"), th("cmp.col.binding"),
      ),
    ),
    h(
      "tbody",
      {},
      ...cells.map((c) =>
        h(
          "tr",
          { dataset: { site: c.site_id, shift: c.shift_id, role: c.role }, class: c.gap > 0 ? "short" : "" },
          h("th", { scope: "row" }, siteName(c.site_id)),
          h("td", {}, `${c.shift_id} · ${when(shiftStart(c.shift_id))}`),
          h("td", {}, roleName(c.role)),
          num(c.required, "required"),
          num(c.planned, "planned"),
          num(c.acknowledged, "acknowledged"),
          num(c.present, "present"),
          num(c.gap, "gap"),
          h("td", {}, c.binding ? t("cmp.rule." + c.binding) : "—"),
        ),
      ),
    ),
  );
  const f = $("#cmp-fatigue", root);
  const rows = open.fatigue.map((x) =>
    h(
      "li",
      { class: "warn" },
      t("cmp.fatigue.row", {
        member: x.member_id,
        hours: x.most_hours_in_24h.toFixed(1),
        days: x.consecutive_days,
        rest: x.least_rest_h == null ? "—" : `${x.least_rest_h.toFixed(1)} h`,
        near: x.near.map((n) => t("cmp.near." + n)).join(getLang() === "en" ? ", " : "、"),
      }),
    ),
  );
  f.replaceChildren(...(rows.length ? rows : [h("li", { class: "muted" }, t("cmp.fatigue.none"))]));
}

function renderSites() {
  const th = (k) => h("th", { scope: "col" }, t(k));
  const rows = open.sites.map((s) =>
    h(
      "tr",
      { dataset: { site: s.id } },
      h("th", { scope: "row" }, `${s.name} (${s.id})`),
      h("td", {}, s.community_id || "—"),
      h("td", {}, s.grid_id || `${s.location.lat.toFixed(5)}, ${s.location.lng.toFixed(5)}`),
      h("td", {}, s.closed ? t("cmp.site.closed") : t("cmp.running")),
      h(
        "td",
        {},
        h("button", { type: "button", class: "cmp-site-edit", "aria-label": t("cmp.site.edit.label", { name: s.name }), on: { click: () => editSite(s) } }, t("cmp.site.edit")),
        s.closed || open.closed
          ? null
          : h("button", { type: "button", class: "cmp-site-close", "aria-label": t("cmp.site.close.label", { name: s.name }), on: { click: () => closeSite(s) } }, t("cmp.site.close")),
      ),
    ),
  );
  $("#cmp-sites", root).replaceChildren(
    h("thead", {}, h("tr", {}, th("cmp.col.site"), th("cmp.col.community"), th("cmp.col.place"), th("cmp.col.state"), th("cmp.col.actions"))),
    h("tbody", {}, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, t("cmp.sites.empty")))])),
  );
}

function renderShifts() {
  const th = (k) => h("th", { scope: "col" }, t(k));
  const rows = open.shifts.map((s) =>
    h(
      "tr",
      { dataset: { shift: s.id } },
      h("th", { scope: "row" }, s.id),
      h("td", {}, s.site_id ? siteName(s.site_id) : t("cmp.shift.shared")),
      h("td", {}, when(s.start)),
      h("td", {}, when(s.end)),
      h("td", {}, h("button", { type: "button", class: "cmp-shift-edit", "aria-label": `${t("cmp.site.edit")} ${s.id}`, on: { click: () => editShift(s) } }, t("cmp.site.edit"))),
    ),
  );
  $("#cmp-shifts", root).replaceChildren(
    h("thead", {}, h("tr", {}, th("cmp.col.shift"), th("cmp.shift.site"), th("cmp.col.start"), th("cmp.col.end"), th("cmp.col.actions"))),
    h("tbody", {}, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, t("cmp.shifts.empty")))])),
  );
}

function editSite(s) {
  $("#cmp-site-id", root).value = s.id;
  $("#cmp-site-name", root).value = s.name;
  $("#cmp-site-kind", root).value = s.grid_id ? "grid" : "point";
  if (s.grid_id) $("#cmp-site-grid", root).value = s.grid_id;
  $("#cmp-site-lat", root).value = s.location.lat.toFixed(6);
  $("#cmp-site-lng", root).value = s.location.lng.toFixed(6);
  showKind();
  $("#cmp-site-name", root).focus();
}

function editShift(s) {
  $("#cmp-shift-id", root).value = s.id;
  $("#cmp-shift-site", root).value = s.site_id || "";
  $("#cmp-shift-start", root).value = local(Date.parse(s.start));
  $("#cmp-shift-end", root).value = local(Date.parse(s.end));
  $("#cmp-shift-start", root).focus();
}

async function closeSite(s) {
  if ((await ask(t("cmp.site.close.ask", { name: s.name }))) === null) return;
  const msg = $("#cmp-site-msg", root);
  try {
    await api("POST", `/v1/campaigns/${encodeURIComponent(open.id)}/sites/${encodeURIComponent(s.id)}/close`, {});
    await refreshCampaigns();
  } catch (e) {
    sayProblem(msg, e);
  }
}

function armPick() {
  picking = !picking;
  $("#cmp-site-pick", root).setAttribute("aria-pressed", String(picking));
  if (picking) {
    say($("#cmp-site-msg", root), "cmp.site.picking", undefined, "info");
    document.getElementById("citymap")?.scrollIntoView({ block: "center" });
  }
}

/** A click on the dashboard's city map: the site's place, when a pick was asked for. */
export function campaignPick(p) {
  if (!root || !picking) return;
  picking = false;
  $("#cmp-site-pick", root).setAttribute("aria-pressed", "false");
  $("#cmp-site-kind", root).value = "point";
  $("#cmp-site-lat", root).value = p.lat.toFixed(6);
  $("#cmp-site-lng", root).value = p.lng.toFixed(6);
  showKind();
  say($("#cmp-site-msg", root), "cmp.site.picked", { lat: p.lat.toFixed(5), lng: p.lng.toFixed(5) }, "ok");
  $("#cmp-site-name", root).scrollIntoView({ block: "center" });
  $("#cmp-site-name", root).focus();
}

async function onSite(e) {
  e.preventDefault();
  const msg = $("#cmp-site-msg", root);
  const id = $("#cmp-site-id", root).value.trim();
  if (!id) return need(msg, "#cmp-site-id", "cmp.site.id");
  const name = $("#cmp-site-name", root).value.trim();
  if (!name) return need(msg, "#cmp-site-name", "cmp.site.name");
  const body = { name };
  if ($("#cmp-site-kind", root).value === "grid") {
    const grid = $("#cmp-site-grid", root).value;
    if (!grid) return need(msg, "#cmp-site-grid", "cmp.site.grid");
    body.grid_id = grid;
  } else {
    const lat = parseFloat($("#cmp-site-lat", root).value);
    const lng = parseFloat($("#cmp-site-lng", root).value);
    if (!Number.isFinite(lat)) return need(msg, "#cmp-site-lat", "cmp.site.lat");
    if (!Number.isFinite(lng)) return need(msg, "#cmp-site-lng", "cmp.site.lng");
    body.location = { lat, lng };
  }
  try {
    await api("PUT", `/v1/campaigns/${encodeURIComponent(open.id)}/sites/${encodeURIComponent(id)}`, body);
    say(msg, "cmp.site.saved", { id }, "ok");
    $("#cmp-site-id", root).value = "";
    $("#cmp-site-name", root).value = "";
    await refreshCampaigns();
  } catch (err) {
    sayProblem(msg, err);
  }
}

async function onShift(e) {
  e.preventDefault();
  const msg = $("#cmp-shift-msg", root);
  const id = $("#cmp-shift-id", root).value.trim();
  if (!id) return need(msg, "#cmp-shift-id", "cmp.shift.id");
  const start = iso($("#cmp-shift-start", root).value);
  if (!start) return need(msg, "#cmp-shift-start", "cmp.start");
  const end = iso($("#cmp-shift-end", root).value);
  if (!end) return need(msg, "#cmp-shift-end", "cmp.end");
  const body = { start, end };
  const site = $("#cmp-shift-site", root).value;
  if (site) body.site_id = site;
  try {
    await api("PUT", `/v1/campaigns/${encodeURIComponent(open.id)}/shifts/${encodeURIComponent(id)}`, body);
    say(msg, "cmp.shift.saved", { id }, "ok");
    $("#cmp-shift-id", root).value = "";
    await refreshCampaigns();
  } catch (err) {
    sayProblem(msg, err);
  }
}

async function onReq(e) {
  e.preventDefault();
  const msg = $("#cmp-req-msg", root);
  const site = $("#cmp-req-site", root).value;
  if (!site) return need(msg, "#cmp-req-site", "cmp.col.site");
  const shift = $("#cmp-req-shift", root).value;
  if (!shift) return need(msg, "#cmp-req-shift", "cmp.col.shift");
  const role = $("#cmp-req-role", root).value;
  const n = parseInt($("#cmp-req-n", root).value, 10);
  if (!(n >= 0)) return need(msg, "#cmp-req-n", "cmp.req.headcount");
  const skills = [...$("#cmp-req-skills", root).selectedOptions].map((x) => x.value);
  try {
    await api("PUT", `/v1/campaigns/${encodeURIComponent(open.id)}/requirements`, { site_id: site, shift_id: shift, role, headcount: n, skills });
    say(msg, "cmp.req.saved", { site: siteName(site), shift, role: roleName(role), n }, "ok");
    await refreshCampaigns();
  } catch (err) {
    sayProblem(msg, err);
  }
}

/** The import: sent as it is (the server reads UTF-8 or GB18030); a refusal lists every row. */
async function onImport(e) {
  e.preventDefault();
  const msg = $("#cmp-import-msg", root);
  const errors = $("#cmp-import-errors", root);
  errors.replaceChildren();
  const file = $("#cmp-import-file", root).files[0];
  if (!file) {
    say(msg, "cmp.import.none", undefined, "error");
    $("#cmp-import-file", root).focus();
    return;
  }
  try {
    const resp = await fetch(`/v1/campaigns/${encodeURIComponent(open.id)}/import`, {
      method: "POST",
      headers: { Authorization: "Bearer " + accessToken(), "Content-Type": "text/csv", Accept: "application/json" },
      body: await file.arrayBuffer(),
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      if (data.code === "invalid_csv" && Array.isArray(data.errors)) {
        say(msg, "cmp.import.refused", { n: data.errors.length }, "error");
        errors.replaceChildren(
          ...data.errors.map((r) => {
            const [key, vars] = problemKey({ code: r.code });
            const text = key === "error.code" ? r.detail : t(key, vars);
            return h("li", { class: "warn", dataset: { line: r.line, code: r.code } }, t("cmp.import.row", { line: r.line, text }));
          }),
        );
      } else {
        sayProblem(msg, { status: resp.status, code: data.code });
      }
      return;
    }
    say(msg, "cmp.import.done", { sites: data.sites, requirements: data.requirements }, "ok");
    await refreshCampaigns();
  } catch (err) {
    sayProblem(msg, err);
  }
}

async function onRoster() {
  const msg = $("#cmp-open-msg", root);
  const button = $("#cmp-roster", root);
  const short = $("#cmp-shortfall", root);
  short.replaceChildren();
  button.disabled = true;
  say(msg, "cmp.roster.running", undefined, "info");
  try {
    const r = await api("POST", `/v1/campaigns/${encodeURIComponent(open.id)}/roster`, {});
    say(msg, "cmp.roster.done", r, "ok");
    button.textContent = t("cmp.roster");
    if (r.shortfall.length) {
      short.replaceChildren(
        h("li", { class: "warn" }, t("cmp.roster.short", { n: r.shortfall.length })),
        ...r.shortfall.map((s) =>
          h("li", { class: "warn" }, `${siteName(s.site_id)} · ${s.shift_id} · ${roleName(s.role)}: −${s.missing} (${t("cmp.rule." + s.binding)})`),
        ),
      );
    }
    await refreshCampaigns();
  } catch (err) {
    sayProblem(msg, err);
    // Changed while computed: say so, and offer the retry on the same button.
    if (err.code === "roster_stale") button.textContent = t("cmp.roster.retry");
  } finally {
    button.disabled = !!open?.closed;
  }
}

async function onClose() {
  if ((await ask(t("cmp.close.ask", { name: open.name }))) === null) return;
  const msg = $("#cmp-open-msg", root);
  try {
    const c = await api("POST", `/v1/campaigns/${encodeURIComponent(open.id)}/close`, {});
    say(msg, "cmp.closed.done", { name: c.name }, "ok");
    await refreshCampaigns();
  } catch (err) {
    sayProblem(msg, err);
  }
}

/** A `campaign.progress` frame: the open campaign's table and the list, reloaded. */
export function campaignFrame(f) {
  if (!root || f.type !== "campaign.progress") return false;
  const d = f.data || {};
  if (open && d.campaign_id === open.id) {
    const vars = { member: d.member_id, shift: d.shift_id, version: d.version, n: (d.members || []).length };
    if (["acknowledged", "checked_in", "checked_out", "no_shows", "roster_published", "closed"].includes(d.op))
      say($("#cmp-live", root), "cmp.live." + d.op, vars, "info");
  }
  refreshSoon();
  return true;
}
