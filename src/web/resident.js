// /r#<community>: a resident's page (issue #20), opened from the community's QR code.
// Sign-in: a phone number (POST /v1/residents/code sends a one-time code), then the code
// (POST /v1/session/resident answers an access token and sets the refresh cookie, as a
// sign-in link does). Then the resident places requests (POST /v1/requests), sees only
// their own (GET /v1/requests), follows them live on their own stream (request.updated),
// and confirms and rates one once it is served (POST /v1/requests/{id}/confirm).

import { t, initLangToggle, applyI18n, onLangChange, catalogName } from "/web/i18n.js";
import { $, api, h, storedAccess, claimsOf, useAccess, accessToken, fmtTime, sayProblem, say } from "/web/common.js";
import { Live } from "/web/live.js";

const community = decodeURIComponent(location.hash.slice(1)).trim();
let challengeId = null;
let catalog = null;
const requests = new Map();

async function send(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const e = new Error(data.detail || String(resp.status));
    e.code = data.code;
    e.detail = data.detail;
    e.status = resp.status;
    throw e;
  }
  return data;
}

function showSignIn() {
  $("#r-signin").hidden = false;
  $("#r-app").hidden = true;
  $("#r-community").textContent = community || "—";
  $("#r-phone").focus();
}

$("#r-phone-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const msg = $("#r-signin-msg");
  try {
    const data = await send("POST", "/v1/residents/code", { community_id: community, phone: $("#r-phone").value });
    challengeId = data.challenge_id;
    $("#r-code-form").hidden = false;
    say(msg, "res.sent", { t: fmtTime(data.expires_at) });
    $("#r-code").focus();
  } catch (err) {
    sayProblem(msg, err);
  }
});

$("#r-code-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const data = await send("POST", "/v1/session/resident", { challenge_id: challengeId, code: $("#r-code").value });
    start(data.access_token);
  } catch (err) {
    sayProblem($("#r-signin-msg"), err);
  }
});

$("#r-signout").addEventListener("click", async () => {
  try {
    await fetch("/v1/session/signout", { method: "POST", headers: { Authorization: "Bearer " + accessToken() } });
  } catch (_) {
    /* signed out here anyway */
  }
  useAccess(null);
  location.reload();
});

function localInput(d) {
  const z = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
  return z.toISOString().slice(0, 16);
}

function fillForm() {
  const cat = $("#r-category");
  const chosen = cat.value;
  cat.replaceChildren(...catalog.categories.map((c) => h("option", { value: c.id, text: catalogName(c) })));
  if (chosen) cat.value = chosen;
}

async function start(token) {
  useAccess(token);
  $("#r-signin").hidden = true;
  $("#r-app").hidden = false;
  const claims = claimsOf(token);
  const [cat, communities] = await Promise.all([api("GET", "/v1/catalog"), api("GET", "/v1/communities")]);
  catalog = cat;
  fillForm();
  const mine = communities.find((c) => c.id === community) || communities[0];
  $("#r-grid").replaceChildren(...(mine?.grids || []).map((g) => h("option", { value: g.id, text: g.id })));
  const now = new Date();
  $("#r-start").value = localInput(now);
  $("#r-end").value = localInput(new Date(now.getTime() + 86400000));
  for (const r of await api("GET", "/v1/requests")) requests.set(r.id, r);
  draw();
  $("#r-list").dataset.loaded = "true";
  const live = new Live({
    token,
    key: "resident." + (claims?.resident || ""),
    onFrame: (f) => {
      if (f.type === "request.updated") {
        requests.set(f.data.id, f.data);
        draw();
      }
    },
  });
  live.start();
}

$("#r-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const msg = $("#r-msg");
  try {
    const r = await api("POST", "/v1/requests", {
      category: $("#r-category").value,
      grid_id: $("#r-grid").value,
      description: $("#r-desc").value,
      preferred_start: new Date($("#r-start").value).toISOString(),
      preferred_end: new Date($("#r-end").value).toISOString(),
    });
    requests.set(r.id, r);
    draw();
    $("#r-desc").value = "";
    say(msg, "res.placed", {}, "ok");
  } catch (err) {
    sayProblem(msg, err);
  }
});

function card(r) {
  const entry = catalog?.categories.find((c) => c.id === r.category);
  const li = h(
    "li",
    { class: "card-item", dataset: { id: r.id, status: r.status } },
    h("strong", { text: catalogName(entry, r.category) }),
    " · ",
    h("span", { class: "badge", text: t("res.status." + r.status) }),
    h("p", { text: r.description }),
    h("p", { class: "muted", text: t("res.when", { from: fmtTime(r.preferred_start), to: fmtTime(r.preferred_end) }) }),
  );
  if (r.reason) li.append(h("p", { text: t("res.reason", { r: r.reason }) }));
  if (r.rating) li.append(h("p", { text: t("res.rated", { r: t("res.rating." + r.rating) }) }));
  if (r.status === "served") {
    const group = h("div", { class: "actions", role: "group", "aria-label": t("res.rate") });
    for (const rating of ["very_good", "good", "fair"]) {
      group.append(
        h("button", {
          type: "button",
          class: rating === "very_good" ? "primary" : "",
          dataset: { rating },
          text: t("res.rating." + rating),
          on: {
            click: async () => {
              try {
                const back = await api("POST", `/v1/requests/${encodeURIComponent(r.id)}/confirm`, { rating });
                requests.set(back.id, back);
                draw();
              } catch (err) {
                sayProblem($("#r-msg"), err);
              }
            },
          },
        }),
      );
    }
    li.append(h("p", { text: t("res.rate") }), group);
  }
  return li;
}

function draw() {
  const list = [...requests.values()].sort((a, b) => (a.placed_at < b.placed_at ? 1 : -1));
  $("#r-list").replaceChildren(...list.map(card));
  $("#r-empty").hidden = list.length > 0;
}

initLangToggle($("#lang"));
applyI18n(document);
onLangChange(() => {
  if (catalog) {
    fillForm();
    draw();
  }
});
const saved = storedAccess();
if (saved && claimsOf(saved)?.role === "resident") start(saved).catch(showSignIn);
else showSignIn();
