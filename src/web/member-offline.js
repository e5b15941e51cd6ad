// The member app offline (issue 18). /m keeps its last known state (offers, orders, the
// member's record with duty, the last position) in localStorage, and shows it with an
// "offline, as of …" banner while the socket cannot connect; the service worker (sw.js with
// sw-offline.js) keeps the page's files, so /m opens without the network.
//
// Answers (accept, decline, arrive, mobilization ack and report) go out through `answer`:
// each gets a client id (`answer_id`, docs/PROTOCOL.md "Answer ids"). Made while offline,
// or lost with the connection before their ok, they wait in a durable queue (IndexedDB)
// and are sent in order when the socket is back (`flush`, on each hello). The server
// applies an id once, so a resend is safe; what it refuses on reconnect (the offer expired
// or was withdrawn, the mobilization closed) is listed for the member from the string
// tables, not dropped.

import { t, onLangChange } from "/web/i18n.js";
import { $, h, fmtTime, problemText } from "/web/common.js";

const DB_NAME = "muster-m";
const STORE = "answers";
/** Refusals after which the answer is not sent again: anything but these. */
const TRANSIENT = new Set(["disconnected", "timeout", "unavailable", "rate_limited", "outcome_unknown"]);

let dbPromise = null;

function db() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "n", autoIncrement: true });
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  return dbPromise;
}

async function run(mode, f) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction(STORE, mode);
    const result = f(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(result?.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

/** The queued answers of `member`, oldest first. */
async function queued(member) {
  const all = (await run("readonly", (s) => s.getAll())) || [];
  return all.filter((a) => a.member === member).sort((a, b) => a.n - b.n);
}

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * Mounts the offline banner and the queue for `member` (the token's subject).
 * @param {object} o
 * @param {string} o.member
 * @param {() => import("/web/live.js").Live} o.live
 * @param {(item, error) => void} o.onRefused  an answer from the queue the server refused
 */
export function mountOffline(o) {
  const stateKey = "muster.moffline." + o.member;
  const banner = h("p", { id: "offline", class: "notice offline", role: "status", hidden: true });
  const list = h("ul", {});
  const refused = h("div", { id: "offline-refused", class: "notice offline-refused", role: "alert", hidden: true }, list);
  const app = $("#app");
  app.prepend(banner, refused);
  let conn = "idle";
  let wasOffline = false;
  let waiting = 0;
  let flushing = false;
  let savedAt = null;
  const refusals = [];
  try {
    savedAt = JSON.parse(localStorage.getItem(stateKey) || "null")?.at ?? null;
  } catch (_) {
    savedAt = null;
  }

  function show() {
    const off = wasOffline && conn !== "connected";
    const parts = [];
    if (off) parts.push(savedAt ? t("member.offline.banner", { t: fmtTime(savedAt) }) : t("member.offline.never"));
    if (waiting > 0) parts.push(t("member.offline.queued", { n: waiting }));
    banner.textContent = parts.join(" · ");
    banner.hidden = parts.length === 0;
    banner.dataset.state = off ? "offline" : "online";
    list.replaceChildren(
      ...refusals.map(({ item, e }) =>
        h("li", {}, t("member.offline.refused", { what: t("member.offline.what." + item.type), why: problemText(e) })),
      ),
    );
    refused.hidden = refusals.length === 0;
  }

  async function count() {
    try {
      waiting = (await queued(o.member)).length;
    } catch (_) {
      waiting = 0;
    }
    show();
  }

  async function enqueue(type, data) {
    await run("readwrite", (s) => s.add({ member: o.member, type, data, at: Date.now() }));
    await count();
  }

  let again = false; // something was queued while a flush ran: go round once more
  let retry = null; // a timer to try again after a transient refusal while connected

  /**
   * Sends the queue in order until it is empty; stops (keeping the rest) at the first send
   * that may not have arrived, and then tries again in a few seconds while connected.
   */
  async function flush() {
    if (flushing) {
      again = true;
      return;
    }
    flushing = true;
    let stopped = false;
    try {
      do {
        again = false;
        for (const item of await queued(o.member)) {
          const live = o.live();
          if (!live?.connected) {
            stopped = true;
            break;
          }
          try {
            await live.send(item.type, item.data);
          } catch (e) {
            if (TRANSIENT.has(e.code)) {
              stopped = true;
              break;
            }
            refusals.push({ item, e });
            o.onRefused(item, e);
          }
          await run("readwrite", (s) => s.delete(item.n));
        }
      } while (again && !stopped);
    } catch (_) {
      /* no IndexedDB: nothing was queued */
    } finally {
      flushing = false;
      await count();
      if (waiting > 0 && o.live()?.connected && !retry) {
        retry = setTimeout(() => {
          retry = null;
          if (o.live()?.connected) flush();
        }, 3000);
      }
    }
  }

  onLangChange(show);
  count();
  registerWorker();
  // Signing out leaves no copy of the member's state on the device (the queue stays: its
  // answers are the member's, sent when they are back).
  $("#signout")?.addEventListener("click", () => {
    try {
      localStorage.removeItem(stateKey);
    } catch (_) {
      /* nothing kept */
    }
  });

  return {
    /**
     * Sends an answer with a new answer id; queues it when the socket is down (or goes down
     * before the answer), and resolves `{queued: true}` then. A refusal rejects as `send` does.
     */
    async answer(type, data) {
      const body = { ...data, answer_id: newId() };
      const live = o.live();
      if (live?.connected && waiting === 0) {
        try {
          return { queued: false, reply: await live.send(type, body) };
        } catch (e) {
          if (!TRANSIENT.has(e.code)) throw e;
        }
      }
      await enqueue(type, body);
      if (o.live()?.connected) flush();
      return { queued: true };
    },
    flush,
    /** The socket's state (`Live`'s onStatus). */
    status(s) {
      conn = s;
      if (s === "offline") wasOffline = true;
      show();
    },
    /** Keeps the page's state; "as of" moves only while connected. */
    save(snapshot) {
      if (conn === "connected" || savedAt === null) savedAt = Date.now();
      try {
        localStorage.setItem(stateKey, JSON.stringify({ ...snapshot, at: savedAt }));
      } catch (_) {
        /* not kept */
      }
    },
    /** The state kept last, or null. */
    restore() {
      try {
        return JSON.parse(localStorage.getItem(stateKey) || "null");
      } catch (_) {
        return null;
      }
    },
  };
}

/** The service worker keeps the page's files: registered here too (push registers the same). */
async function registerWorker() {
  if (!("serviceWorker" in navigator)) return;
  try {
    await navigator.serviceWorker.register("/web/sw.js", { scope: "/m" });
    const reg = await navigator.serviceWorker.ready;
    const urls = performance
      .getEntriesByType("resource")
      .map((e) => e.name)
      .filter((u) => new URL(u).origin === location.origin && new URL(u).pathname.startsWith("/web/"));
    reg.active?.postMessage({ type: "muster.cache", urls: [...new Set(urls)] });
  } catch (_) {
    /* no offline copy in this browser */
  }
}
