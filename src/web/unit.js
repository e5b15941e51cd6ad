// Unit admin (/unit): the unit's registration rate and its registration (单位报到) with a
// paired community; register members one at a time or from a CSV (all rows or none; the
// refused row is shown with its line and content); the unit's members with their hours,
// points and tasks from the unit report, which also downloads as CSV; invitations for the
// unit's members; the unit's stream, live.

import { t, onLangChange, getLang } from "/web/i18n.js";
import { api, boot, h, $, fmtTime, say, sayProblem, problemText, setStatus, downloadCsv } from "/web/common.js";
import { Live } from "/web/live.js";
import { mountInvite } from "/web/invite.js";

let unit = null;
let token = null;
let row = null; // the unit's registration row
let members = [];
let report = new Map(); // member id -> report row
const news = [];

boot("unit", ["unit_admin"], start);

async function start(tok, claims) {
  token = tok;
  unit = claims.unit;
  mountInvite($("#invite"), claims);
  $("#ureg-form").addEventListener("submit", registerUnit);
  $("#uadd-form").addEventListener("submit", addMember);
  $("#uimp-form").addEventListener("submit", importCsv);
  $("#uimp-file").addEventListener("change", readFile);
  $("#unit-csv").addEventListener("click", downloadReport);
  onLangChange(() => {
    renderRate();
    renderMembers();
    renderTarget();
    renderNews();
  });
  const live = new Live({ token, key: `unit.${unit}`, onFrame, onHello: refresh, onStatus: setStatus });
  live.start();
}

async function refresh() {
  await Promise.allSettled([loadRate(), loadMembers()]);
}

// ---- registration rate and unit registration ----

async function loadRate() {
  try {
    const r = await api("GET", "/v1/registration");
    row = (r.units || []).find((u) => u.id === unit) || null;
    renderRate();
  } catch (e) {
    sayProblem($("#ureg-msg"), e);
  }
}

function renderRate() {
  if (!row) return;
  const rate = `${(row.rate * 100).toFixed(1)}%`;
  const el = $("#unit-rate");
  el.textContent = t("unit.rate.line", {
    name: row.name,
    registered: row.registered,
    members: row.members,
    rate,
    rc: row.registered_communities.length,
    pc: row.paired_communities.length,
  });
  el.dataset.rate = String(row.rate);
  $("#unit-rate-bar").value = row.rate;
  const sel = $("#ureg-community");
  const keep = sel.value;
  sel.replaceChildren(
    ...row.paired_communities.map((c) =>
      h("option", { value: c }, row.registered_communities.includes(c) ? `${c} · ${t("unit.registered")}` : c),
    ),
  );
  if (row.paired_communities.includes(keep)) sel.value = keep;
}

async function registerUnit(e) {
  e.preventDefault();
  const c = $("#ureg-community").value;
  if (!c) return;
  try {
    await api("POST", `/v1/units/${encodeURIComponent(unit)}/register`, { community_id: c });
    say($("#ureg-msg"), "unit.register.done", { c }, "ok");
    loadRate();
  } catch (err) {
    sayProblem($("#ureg-msg"), err);
  }
}

// ---- members: one, or a CSV ----

async function addMember(e) {
  e.preventDefault();
  const msg = $("#uadd-msg");
  const body = {
    id: $("#uadd-id").value.trim(),
    name: $("#uadd-name").value.trim(),
    unit_id: unit,
    residence_grid_id: $("#uadd-grid").value.trim(),
    skills: $("#uadd-skills").value.split(/[;；,，]/).map((s) => s.trim()).filter(Boolean),
  };
  for (const id of ["#uadd-id", "#uadd-name", "#uadd-grid"]) {
    if (!$(id).value.trim()) {
      $(id).focus();
      return;
    }
  }
  const team = $("#uadd-team").value;
  if (team) body.team_id = team;
  try {
    const m = await api("POST", "/v1/members", body);
    say(msg, "unit.add.done", { name: m.name || body.name }, "ok");
    for (const id of ["#uadd-id", "#uadd-name", "#uadd-skills"]) $(id).value = "";
    refresh();
  } catch (err) {
    sayProblem(msg, err);
  }
}

async function readFile() {
  const f = $("#uimp-file").files[0];
  if (f) $("#uimp-text").value = (await f.text()).replace(/^\uFEFF/, "");
}

async function importCsv(e) {
  e.preventDefault();
  const msg = $("#uimp-msg");
  const rows = $("#uimp-rows");
  rows.replaceChildren();
  const text = $("#uimp-text").value.trim();
  if (!text) {
    $("#uimp-text").focus();
    return;
  }
  try {
    const r = await api("POST", "/v1/members/import", text + "\n", { "Content-Type": "text/csv" });
    say(msg, "unit.import.done", { n: r.registered }, "ok");
    $("#uimp-text").value = "";
    $("#uimp-file").value = "";
    refresh();
  } catch (err) {
    // All or none: nothing was imported. The refusal names its line ("line N: ..."); show
    // that row as it was typed, with the refusal in the page's language.
    say(msg, "unit.import.failed", undefined, "error");
    const line = Number(/line (\d+)/.exec(err.detail || "")?.[1]);
    const lines = text.split(/\r?\n/);
    const shown = line ? `${lines[line - 1] ?? ""}` : "";
    rows.append(
      h(
        "li",
        { dataset: { line: line || "" } },
        line ? t("unit.import.row", { row: line, detail: problemText(err) }) : problemText(err),
        shown ? h("code", {}, shown) : null,
      ),
    );
  }
}

// ---- the unit's members with their figures ----

// The year so far (from 1 January, China time): the unit's figures against the yearly
// target of service hours (dispatch.service.yearly_hours_target, prorated by the server).
function yearQuery() {
  const year = new Date(Date.now() + 8 * 3600e3).getUTCFullYear(); // the year in China time
  return `from=${encodeURIComponent(`${year}-01-01T00:00:00+08:00`)}`;
}

let total = null;

async function loadMembers() {
  const msg = $("#umem-msg");
  try {
    const [list, rep] = await Promise.all([
      api("GET", `/v1/members?unit_id=${encodeURIComponent(unit)}`),
      api("GET", `/v1/reports/units/${encodeURIComponent(unit)}?${yearQuery()}`),
    ]);
    members = list;
    report = new Map((rep.members || []).map((r) => [r.id, r]));
    total = { ...rep.total, yearly: rep.yearly_hours_target };
    renderTarget();
    renderMembers();
    fillTeams();
    if (!members.length) say(msg, "unit.members.empty");
    else if (msg.dataset.kind !== "error") msg.textContent = "";
  } catch (e) {
    sayProblem(msg, e);
  }
}

function fillTeams() {
  const sel = $("#uadd-team");
  const keep = sel.value;
  const teams = [...new Set(members.map((m) => m.team_id).filter(Boolean))].sort();
  sel.replaceChildren(h("option", { value: "" }, "—"), ...teams.map((id) => h("option", { value: id }, id)));
  if (teams.includes(keep)) sel.value = keep;
}

const COLUMNS = [
  ["id", (m) => m.id],
  ["name", (m) => m.name],
  ["team", (m) => m.team_id || "—"],
  ["registered", (m) => t(m.registered ? "unit.yes" : "unit.no")],
  ["hours", (m, r) => (r ? r.hours.toFixed(2) : "—")],
  ["points", (m, r) => (r ? r.points.toFixed(2) : "—")],
  ["tasks", (m, r) => (r ? r.tasks_by_difficulty.reduce((a, b) => a + b, 0) : "—")],
  ["target", (m, r) => (r && r.target_hours != null ? t(r.members_below_target ? "unit.target.below" : "unit.target.met", { owed: r.target_hours.toFixed(1) }) : "—")],
];

function renderTarget() {
  const p = $("#umem-target");
  if (!total || total.target_hours == null) {
    p.textContent = "";
    return;
  }
  p.textContent = t("unit.target.summary", {
    hours: total.hours.toFixed(1),
    owed: total.target_hours.toFixed(1),
    yearly: total.yearly,
    below: total.members_below_target,
    members: total.members,
  });
}

function renderMembers() {
  const table = $("#unit-members");
  table.replaceChildren(
    h("thead", {}, h("tr", {}, COLUMNS.map(([k]) => h("th", { scope: "col" }, t("unit.col." + k))))),
    h(
      "tbody",
      {},
      members.map((m) => h("tr", { dataset: { member: m.id } }, COLUMNS.map(([, f]) => h("td", {}, String(f(m, report.get(m.id))))))),
    ),
  );
}

// The unit report as CSV.
function downloadReport() {
  const lang = getLang() === "en" ? "en" : "zh";
  return downloadCsv(`/v1/reports/units/${encodeURIComponent(unit)}?format=csv&lang=${lang}&${yearQuery()}`, `muster-unit-${unit}.csv`, $("#umem-msg"));
}

// ---- the unit's stream ----

function onFrame(f) {
  f.received = new Date().toISOString();
  news.unshift(f);
  news.length = Math.min(news.length, 50);
  renderNews();
}

function newsText(f) {
  const d = f.data || {};
  if (f.type === "unit.whistled")
    return t("unit.frame.whistled", {
      place: d.community || d.community_id,
      level: t("level." + d.level),
      id: d.incident_id,
      t: fmtTime(d.deadline),
    });
  if (f.type === "unit.mobilized")
    return t("unit.frame.mobilized", {
      id: d.mobilization_id,
      teams: (d.teams || []).map((x) => x.team_id).join("、"),
      t: fmtTime(d.deadline),
      note: d.note || "",
    });
  return f.type;
}

function renderNews() {
  $("#unit-live").replaceChildren(
    ...news.map((f) =>
      h("li", { dataset: { type: f.type, seq: f.seq } }, h("span", { class: "muted" }, fmtTime(f.received)), " ", newsText(f)),
    ),
  );
  $("#ulive-empty").hidden = news.length > 0;
}

