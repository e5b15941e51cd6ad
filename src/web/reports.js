// Reports (考核评价): hours, points, tasks by difficulty, ratings, reliability and the
// registration rate, for a member, a unit or a community over a period; as a table, or
// the same figures as CSV from the API.

import { t } from "/web/i18n.js";
import { api, boot, h, $, flash, setStatus, downloadCsv } from "/web/common.js";
import { mountInvite } from "/web/invite.js";


boot("reports", ["command", "staff", "unit_admin", "member"], (_token, claims) => {
  // Start where the token's scope points.
  const [kind, id] = {
    member: ["members", claims.member],
    unit_admin: ["units", claims.unit],
    staff: ["communities", claims.community],
  }[claims.role] || ["communities", ""];
  $("#rep-kind").value = kind;
  $("#rep-id").value = id || "";
  $("#rep-form").addEventListener("submit", (e) => {
    e.preventDefault();
    show();
  });
  $("#rep-csv").addEventListener("click", download);
  // A unit admin's page: invite the unit's members to sign in.
  if (claims.role === "unit_admin") mountInvite($("#invite"), claims);
  if (id) show();
  else setStatus("connected");
});

function query(format) {
  const q = new URLSearchParams();
  const from = $("#rep-from").value;
  const to = $("#rep-to").value;
  if (from) q.set("from", new Date(from + "T00:00:00").toISOString());
  if (to) q.set("to", new Date(to + "T23:59:59").toISOString());
  if (format) q.set("format", format);
  const s = q.toString();
  const id = encodeURIComponent($("#rep-id").value.trim());
  const path = {
    members: `/v1/reports/members/${id}`,
    units: `/v1/reports/units/${id}`,
    communities: `/v1/reports/communities/${id}`,
  }[$("#rep-kind").value];
  return path + (s ? "?" + s : "");
}

const COLUMNS = [
  ["id", (r) => r.id],
  ["name", (r) => r.name],
  ["registration_rate", (r) => (r.registration_rate * 100).toFixed(1) + "%"],
  ["hours", (r) => r.hours.toFixed(2)],
  ["points", (r) => r.points.toFixed(2)],
  ["tasks", (r) => r.tasks_by_difficulty.join(" / ")],
  ["ratings", (r) => `${r.ratings.very_good} / ${r.ratings.good} / ${r.ratings.fair}`],
  ["reliability", (r) => (r.reliability === null || r.reliability === undefined ? "—" : (r.reliability * 100).toFixed(0) + "%")],
];

async function show() {
  const msg = $("#rep-msg");
  try {
    const r = await api("GET", query());
    const table = $("#rep-table");
    table.replaceChildren(
      h("thead", {}, h("tr", {}, COLUMNS.map(([k]) => h("th", { scope: "col" }, t("rep.col." + k))))),
      h(
        "tbody",
        {},
        [r.total, ...(r.members || [])].map((row, i) =>
          h("tr", { class: i === 0 ? "total" : "" }, COLUMNS.map(([, f]) => h("td", {}, f(row)))),
        ),
      ),
    );
    flash(msg, "");
    setStatus("connected");
  } catch (e) {
    if (e.status === 0) setStatus("offline");
    flash(msg, e.detail || e.message, "error");
  }
}

function download() {
  return downloadCsv(query("csv"), `muster-report-${$("#rep-id").value.trim()}.csv`, $("#rep-msg"));
}
