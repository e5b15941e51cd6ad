// /join#<code>: opens a sign-in link. The code rides in the fragment (no server, log or
// Referer sees it) and is removed from the address at once; it is posted to
// POST /v1/session, which answers an access token (kept in this tab's sessionStorage for
// every page) and sets the refresh cookie (HttpOnly: this script never sees it). Then
// the role's own page opens in its place.

import { t, initLangToggle, applyI18n } from "/web/i18n.js";
import { storeAccess } from "/web/common.js";

const msg = document.getElementById("join-msg");

function fail(code, detail) {
  document.getElementById("join-h").textContent = t("join.failed");
  const key = "join.error." + (code || "other");
  const text = t(key);
  msg.textContent = text === key ? t("join.error.other", { detail: detail || code || "" }) : text;
  msg.dataset.kind = "error";
  document.getElementById("join-help").hidden = false;
  document.getElementById("join-pages").hidden = false;
}

async function join() {
  const params = new URLSearchParams(location.search);
  const code = (location.hash.slice(1) || params.get("code") || "").trim();
  history.replaceState(null, "", location.pathname);
  if (!code) {
    fail("no_code");
    return;
  }
  let resp;
  try {
    resp = await fetch("/v1/session", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ code }),
    });
  } catch (_) {
    fail("network");
    return;
  }
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    fail(data.code, data.detail);
    return;
  }
  storeAccess(data.access_token);
  msg.textContent = t("join.ok");
  location.replace(data.home || "/");
}

initLangToggle(document.getElementById("lang"));
applyI18n(document);
join();
