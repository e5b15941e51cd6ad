// What every page shares: the token (sessionStorage), API calls with the bearer token,
// a small DOM builder (text only: nothing user-supplied is parsed as HTML), formatting,
// the sign-in form, the connection indicator and a reason/confirm dialog.

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

export async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (currentToken) init.headers.Authorization = "Bearer " + currentToken;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (_) {
    throw new ApiError(0, "network", t("error.network"));
  }
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

export function flash(el, text, kind = "info") {
  el.textContent = text;
  el.dataset.kind = kind;
}

/**
 * The page shell: language toggle, sign-in form, sign-out. Calls `start(token, claims)`
 * once a token for one of `roles` is there (from the form, the tab's sessionStorage, or
 * a `#token=` fragment, which is removed from the address at once).
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

  const leave = () => {
    storeToken(page, null);
    location.replace(location.pathname);
  };
  signout.addEventListener("click", leave);
  onUnauthorized = () => {
    setStatus("expired");
  };
  // A refused or expired token: ask for a new one (the page keeps what it shows).
  onExpired = () => {
    storeToken(page, null);
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
    storeToken(page, currentToken);
    if (started) {
      // A new token after the old one expired: start over with it.
      location.reload();
      return true;
    }
    started = true;
    signin.hidden = true;
    app.hidden = false;
    signout.hidden = false;
    start(currentToken, claims);
    return true;
  };

  $("#signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    enter($("#token").value);
  });

  const saved = storedToken(page);
  if (!(saved && enter(saved))) {
    signin.hidden = false;
    app.hidden = true;
    signout.hidden = true;
    setStatus("idle");
    $("#token").focus();
  }
  applyI18n(document);
}
