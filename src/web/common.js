// What every page shares: the token (sessionStorage), API calls with the bearer token,
// a small DOM builder (text only: nothing user-supplied is parsed as HTML), formatting,
// the sign-in form, the connection indicator and a reason/confirm dialog.
//
// Two ways in: a token pasted (kept per page in sessionStorage, never refreshed), or a
// sign-in link (/join): a short-lived access token (kept in sessionStorage for every page
// of the tab) and a refresh cookie the page cannot read. That access token is refreshed a
// little before it expires and on a 401 (one refresh at a time); when the refresh is
// refused, the sign-in card comes back and what was typed in the page's fields is saved
// (localStorage, by page) and put back after the next sign-in, even after a reload.

import { t, getLang, initLangToggle, applyI18n } from "/web/i18n.js";

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code || String(status));
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

function tokenKey(page) {
  return "muster.token." + page;
}

export function storedToken(page) {
  try {
    return sessionStorage.getItem(tokenKey(page));
  } catch (_) {
    return null;
  }
}

export function storeToken(page, token) {
  try {
    if (token) sessionStorage.setItem(tokenKey(page), token);
    else sessionStorage.removeItem(tokenKey(page));
  } catch (_) {
    /* private mode: kept in memory only */
  }
}

/** The claims of a JWT, read without checking the signature (the server checks it). */
export function claimsOf(token) {
  const parts = (token || "").trim().split(".");
  if (parts.length !== 3) return null;
  try {
    let b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims.role === "string" ? claims : null;
  } catch (_) {
    return null;
  }
}

let currentToken = null;
let onUnauthorized = null;

/** Where a sign-in link's access token is kept: one for every page of the tab. */
const ACCESS_KEY = "muster.access";

export function storedAccess() {
  try {
    return sessionStorage.getItem(ACCESS_KEY);
  } catch (_) {
    return null;
  }
}

export function storeAccess(token) {
  try {
    if (token) sessionStorage.setItem(ACCESS_KEY, token);
    else sessionStorage.removeItem(ACCESS_KEY);
  } catch (_) {
    /* memory only */
  }
}

/** Uses a session's access token on a page without the token card (/r): kept for the tab
 * and refreshed like a sign-in link's. */
export function useAccess(token) {
  currentToken = token;
  storeAccess(token);
  scheduleRefresh();
}

/** The access token in use (refreshed ones included): for sockets that reconnect. */
export function accessToken() {
  return currentToken;
}

let refreshing = null;
let refreshTimer = null;

/** Is the token in use one a refresh can renew (from a sign-in link)? */
function refreshable() {
  return Boolean(claimsOf(currentToken)?.sid);
}

/** Renews the access token with the refresh cookie; resolves true when it did. */
export function refreshSession() {
  if (!refreshable()) return Promise.resolve(false);
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const resp = await fetch("/v1/session/refresh", { method: "POST", headers: { Accept: "application/json" } });
        if (!resp.ok) return false;
        const data = await resp.json();
        currentToken = data.access_token;
        storeAccess(currentToken);
        scheduleRefresh();
        return true;
      } catch (_) {
        return false;
      } finally {
        setTimeout(() => {
          refreshing = null;
        }, 0);
      }
    })();
  }
  return refreshing;
}

/** A refresh a little before the access token expires (a fifth of its life, at most a minute). */
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  const c = claimsOf(currentToken);
  if (!c?.sid || !c.exp) return;
  const life = Math.max(1, c.exp - (c.iat || c.exp - 60));
  const ahead = Math.min(60, life / 5);
  const wait = Math.max(1000, (c.exp - ahead) * 1000 - Date.now());
  refreshTimer = setTimeout(async () => {
    if (!(await refreshSession()) && onUnauthorized) onUnauthorized();
  }, wait);
}

export async function api(method, path, body, headers = {}) {
  let resp = await send(method, path, body, headers);
  if (resp.status === 401 && refreshable() && (await refreshSession())) {
    resp = await send(method, path, body, headers);
  }
  return answer(resp);
}

/** One request: a string body goes as it is (give its Content-Type), anything else as JSON. */
async function send(method, path, body, headers) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (currentToken) init.headers.Authorization = "Bearer " + currentToken;
  if (typeof body === "string") {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  try {
    return await fetch(path, init);
  } catch (_) {
    throw new ApiError(0, "network", t("error.network"));
  }
}

async function answer(resp) {
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (_) {
      data = text;
    }
  }
  if (!resp.ok) {
    if (resp.status === 401 && onUnauthorized) onUnauthorized();
    throw new ApiError(resp.status, data?.code, data?.detail || resp.statusText);
  }
  return data;
}

/** Builds an element: h("li", {class: "x", dataset: {id}}, "text", child, ...). */
export function h(tag, attrs, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "on") for (const [ev, f] of Object.entries(v)) el.addEventListener(ev, f);
    else if (k === "text") el.textContent = v;
    else if (k in el && !svg && k !== "list" && k !== "form") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

/**
 * Shows `items` in the list `ul` as their cards, in order: `cards` keeps each card
 * (`{li, ...}`) by `keyOf(item)`, `cardOf(item)` makes or updates one; the cards of items
 * gone are dropped, and the list is rebuilt only when its order changed (so the focus
 * stays put). `relabel`: make every card anew (after a language switch).
 */
export function syncCards(ul, cards, items, keyOf, cardOf, relabel) {
  if (relabel) {
    for (const c of cards.values()) c.li.remove();
    cards.clear();
  }
  const keep = new Set(items.map(keyOf));
  for (const [k, c] of cards) {
    if (!keep.has(k)) {
      c.li.remove();
      cards.delete(k);
    }
  }
  const want = items.map((x) => cardOf(x).li);
  const now = [...ul.children];
  if (!(want.length === now.length && want.every((li, i) => li === now[i]))) ul.replaceChildren(...want);
}

export function fmtTime(iso) {
  if (!iso) return t("none");
  const d = new Date(iso);
  return d.toLocaleTimeString(getLang() === "zh" ? "zh-CN" : "en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !isFinite(ms)) return t("none");
  const s = Math.max(0, Math.round(ms / 1000));
  const m = Math.floor(s / 60);
  const r = s % 60;
  if (getLang() === "zh") return m ? `${m}分${String(r).padStart(2, "0")}秒` : `${r}秒`;
  return m ? `${m}m ${String(r).padStart(2, "0")}s` : `${r}s`;
}

export function fmtDistance(m) {
  if (m === null || m === undefined || !isFinite(m)) return t("none");
  return m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(1)} km`;
}

export function haversine(a, b) {
  const R = 6371008.8;
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLng = (b.lng - a.lng) * rad;
  const x = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLng / 2) ** 2;
  return 2 * R * Math.asin(Math.min(1, Math.sqrt(x)));
}

export function levelBadge(level) {
  return h("span", { class: `badge lvl lvl-${level}`, title: t("level." + level) }, t("level.short." + level));
}

/** Calls f at most once per `ms`, the last call winning; returns the wrapped function. */
export function throttle(f, ms) {
  let timer = null;
  let last = 0;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      f();
    }, wait);
  };
}

/**
 * Asks in the page's <dialog id="ask">: resolves to the text typed (or "" without an
 * input), or null when cancelled.
 */
export function ask(message, { input = false, required = false } = {}) {
  const dlg = $("#ask");
  const field = $("#ask-input", dlg);
  $("#ask-message", dlg).textContent = message;
  $("#ask-field", dlg).hidden = !input;
  field.value = "";
  field.required = input && required;
  return new Promise((resolve) => {
    const done = () => {
      dlg.removeEventListener("close", done);
      resolve(dlg.returnValue === "ok" ? (input ? field.value.trim() : "") : null);
    };
    dlg.addEventListener("close", done);
    dlg.returnValue = "";
    dlg.showModal();
    (input ? field : $("#ask-ok", dlg)).focus();
  });
}

function wireAskDialog() {
  const dlg = $("#ask");
  if (!dlg) return;
  $("#ask-form", dlg).addEventListener("submit", (e) => {
    e.preventDefault();
    const field = $("#ask-input", dlg);
    if (!$("#ask-field", dlg).hidden && field.required && !field.value.trim()) {
      field.focus();
      return;
    }
    dlg.close("ok");
  });
  $("#ask-cancel", dlg).addEventListener("click", () => dlg.close("cancel"));
}

let onExpired = null;

export function setStatus(state) {
  if (state === "expired" && onExpired) onExpired();
  const el = $("#conn");
  if (!el) return;
  el.dataset.state = state;
  el.dataset.i18n = "status." + state;
  el.textContent = t("status." + state);
}

/**
 * A refusal in the reader's language: the string of its code (`code.<code>`), never the
 * server's English detail; an unknown code is named as it is.
 */
export function problemText(e) {
  const [key, vars] = problemKey(e);
  return t(key, vars);
}

/** The string key (and its values) of a refusal, for `say`. */
export function problemKey(e) {
  if (e?.code) {
    const k = "code." + e.code;
    return t(k) === k ? ["error.code", { code: e.code }] : [k, undefined];
  }
  return e?.status === 0 ? ["error.network", undefined] : ["error.code", { code: e?.status ?? "?" }];
}

/** Shows a text as it is (it is not translated again when the language changes). */
export function flash(el, text, kind = "info") {
  delete el.dataset.i18n;
  delete el.dataset.i18nVars;
  el.textContent = text;
  el.dataset.kind = kind;
}

/**
 * Shows the string `key` (with `vars`); applyI18n shows it again in the other language
 * when the person switches.
 */
export function say(el, key, vars, kind = "info") {
  el.dataset.i18n = key;
  if (vars) el.dataset.i18nVars = JSON.stringify(vars);
  else delete el.dataset.i18nVars;
  el.textContent = t(key, vars);
  el.dataset.kind = kind;
}

/** A refusal, shown by its code (again in the other language after a switch). */
export function sayProblem(el, e) {
  const [key, vars] = problemKey(e);
  say(el, key, vars, "error");
}

/**
 * Downloads the CSV the API answers at `path` as `file`, with the signed-in token (a plain
 * link would carry none); a refusal is said in `msg` by its code.
 */
export function downloadCsv(path, file, msg) {
  return download(path, "text/csv", file, msg);
}

/** Fetches `path` with the signed-in token and saves the answer as `file` (a plain link
 * would carry no token); a refusal is said in `msg` from the string tables. */
export async function download(path, accept, file, msg) {
  try {
    const resp = await fetch(path, { headers: { Authorization: "Bearer " + currentToken, Accept: accept } });
    if (!resp.ok) {
      const p = await resp.json().catch(() => ({}));
      sayProblem(msg, { status: resp.status, code: p.code });
      return;
    }
    const a = h("a", { href: URL.createObjectURL(await resp.blob()), download: file });
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) {
    sayProblem(msg, e);
  }
}

/** What the person typed: every named field of `#app` (not passwords or files). */
function draftKey(page) {
  return "muster.draft." + page;
}

function fields() {
  return [...document.querySelectorAll("#app input[id], #app textarea[id], #app select[id]")].filter(
    (e) => !["password", "file", "hidden", "button", "submit"].includes(e.type),
  );
}

/** Keeps what was typed, to put back after the next sign-in (also after a reload). */
export function saveDraft(page) {
  const values = {};
  for (const e of fields()) {
    if (e.type === "checkbox" || e.type === "radio") values[e.id] = { checked: e.checked };
    else if (e.value !== e.defaultValue || e.tagName === "SELECT") values[e.id] = { value: e.value };
  }
  try {
    localStorage.setItem(draftKey(page), JSON.stringify({ at: Date.now(), values }));
  } catch (_) {
    /* nowhere to keep it */
  }
}

/**
 * Puts a saved draft back, again a few times over the next seconds (a page fills some
 * fields itself once its data arrives), but never over a field the person has typed in
 * since; then forgets it.
 */
function restoreDraft(page) {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(draftKey(page)) || "null");
    localStorage.removeItem(draftKey(page));
  } catch (_) {
    return;
  }
  if (!saved || Date.now() - saved.at > 24 * 3600 * 1000) return;
  const typed = new Set();
  const note = (e) => e.target?.id && typed.add(e.target.id);
  document.addEventListener("input", note, true);
  const put = () => {
    for (const [id, v] of Object.entries(saved.values)) {
      const e = document.getElementById(id);
      if (!e || !e.closest("#app") || typed.has(id)) continue;
      if ("checked" in v) e.checked = v.checked;
      else if (e.tagName !== "SELECT" || [...e.options].some((o) => o.value === v.value)) e.value = v.value;
    }
  };
  put();
  for (const ms of [300, 1000, 3000]) setTimeout(put, ms);
  setTimeout(() => document.removeEventListener("input", note, true), 3100);
}

/**
 * The page shell: language toggle, sign-in form, sign-out. Calls `start(token, claims)`
 * once a token for one of `roles` is there (from the form, the tab's sessionStorage, a
 * sign-in link's access token, or a `#token=` fragment, which is removed from the address
 * at once).
 */
export function boot(page, roles, start) {
  initLangToggle($("#lang"));
  wireAskDialog();
  const signin = $("#signin");
  const app = $("#app");
  const msg = $("#signin-msg");
  const signout = $("#signout");

  const frag = new URLSearchParams(location.hash.slice(1)).get("token");
  if (frag) {
    storeToken(page, frag);
    history.replaceState(null, "", location.pathname + location.search);
  }

  const leave = async () => {
    // Ends this device's session (the cookie, or the token's sid); harmless without one.
    try {
      const headers = currentToken ? { Authorization: "Bearer " + currentToken } : {};
      await fetch("/v1/session/signout", { method: "POST", headers });
    } catch (_) {
      /* signed out here anyway */
    }
    storeToken(page, null);
    storeAccess(null);
    location.replace(location.pathname);
  };
  signout.addEventListener("click", leave);
  onUnauthorized = () => {
    setStatus("expired");
  };
  // A refused or expired token, and no refresh: ask for a new one. The page keeps what it
  // shows, and what was typed is saved for after the next sign-in.
  let leaving = false;
  onExpired = () => {
    // A refresh that failed after a new token was entered must not forget the new one.
    if (leaving) return;
    clearTimeout(refreshTimer);
    saveDraft(page);
    storeToken(page, null);
    storeAccess(null);
    signin.hidden = false;
    flash(msg, t("status.expired"), "error");
  };

  let started = false;
  const enter = (token) => {
    const claims = claimsOf(token);
    if (!claims) {
      flash(msg, t("signin.bad"), "error");
      return false;
    }
    if (!roles.includes(claims.role)) {
      flash(msg, t("signin.role", { roles: roles.join(", ") }), "error");
      return false;
    }
    currentToken = token.trim();
    if (claims.sid) storeAccess(currentToken);
    else storeToken(page, currentToken);
    if (started) {
      // A new token after the old one expired: start over with it (the draft is kept).
      leaving = true;
      clearTimeout(refreshTimer);
      saveDraft(page);
      location.reload();
      return true;
    }
    started = true;
    signin.hidden = true;
    app.hidden = false;
    signout.hidden = false;
    scheduleRefresh();
    start(currentToken, claims);
    restoreDraft(page);
    return true;
  };

  $("#signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    enter($("#token").value);
  });

  const saved = storedToken(page) || storedAccess();
  if (!(saved && enter(saved))) {
    signin.hidden = false;
    app.hidden = true;
    signout.hidden = true;
    setStatus("idle");
    $("#token").focus();
  }
  applyI18n(document);
}
