// The websocket of every page: one stream (docs/PROTOCOL.md), authenticated with the
// subprotocols ["muster.v1", "bearer.<JWT>"]. It reconnects by itself with jittered
// exponential backoff, resumes with after_seq = the last seq seen (kept in the tab's
// sessionStorage), drops any frame whose seq it already handled, and answers each
// request (`send`) with the server's ok or error. It connects with the page's current
// access token (a sign-in link's is refreshed), and when the server closes it for an
// expired token (1008) it refreshes once and reconnects before giving up.

import { accessToken, refreshSession } from "/web/common.js";

const BASE_MS = 400;
const CAP_MS = 8000;
const REQUEST_TIMEOUT_MS = 15000;

export class Live {
  /**
   * @param {object} o
   * @param {string} o.token       the bearer token
   * @param {string} o.key         where the last seq is kept (per page and subject)
   * @param {(frame) => void} o.onFrame   every stream frame, once, in order
   * @param {(hello) => void} [o.onHello] after each (re)connect, with hello's data
   * @param {(state) => void} [o.onStatus] "connecting" | "connected" | "offline" | "expired"
   * @param {() => void} [o.onReset] the server's stream is shorter than ours (a new store)
   */
  constructor(o) {
    this.o = o;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    this.nextId = 1;
    this.pending = new Map();
    this.fresh = false;
    this.helloSeq = 0;
    this.seen = new Set();
    this.lastSeq = 0;
    this.resumable = false;
    try {
      const kept = sessionStorage.getItem(this.seqKey());
      this.lastSeq = Number(kept) || 0;
      this.resumable = kept !== null;
    } catch (_) {
      this.lastSeq = 0;
    }
    this.kick = () => {
      if (!this.stopped && (!this.ws || this.ws.readyState === WebSocket.CLOSED)) {
        clearTimeout(this.timer);
        this.connect();
      }
    };
  }

  seqKey() {
    return "muster.seq." + this.o.key;
  }

  saveSeq() {
    try {
      sessionStorage.setItem(this.seqKey(), String(this.lastSeq));
    } catch (_) {
      /* kept in memory */
    }
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.kick);
    document.addEventListener("visibilitychange", this.kick);
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener("online", this.kick);
    document.removeEventListener("visibilitychange", this.kick);
    if (this.ws) this.ws.close(1000);
  }

  status(s) {
    this.state = s;
    if (this.o.onStatus) this.o.onStatus(s);
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    // Once connected (or with a seq kept from before), always resume: after_seq=0 too.
    this.fresh = !this.resumable && this.lastSeq === 0;
    const url = `${scheme}//${location.host}/v1/ws` + (this.fresh ? "" : `?after_seq=${this.lastSeq}`);
    this.status("connecting");
    let ws;
    try {
      ws = new WebSocket(url, ["muster.v1", "bearer." + (accessToken() || this.o.token)]);
    } catch (_) {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => this.receive(ws, ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const [, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(Object.assign(new Error("disconnected"), { code: "disconnected" }));
      }
      this.pending.clear();
      if (this.stopped) return;
      if (ev.code === 1008) {
        refreshSession().then((renewed) => {
          if (this.stopped) return;
          if (renewed) {
            this.attempt = 0;
            this.connect();
            return;
          }
          this.stopped = true;
          this.status("expired");
        });
        return;
      }
      this.retry();
    };
  }

  retry() {
    this.status("offline");
    const ceiling = Math.min(CAP_MS, BASE_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt = Math.min(this.attempt + 1, 10);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  receive(ws, text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch (_) {
      return;
    }
    if (!f || typeof f.type !== "string") return;
    if (f.type === "hello") {
      const last = Number(f.data?.last_seq) || 0;
      if (!this.fresh && last < this.lastSeq) {
        // The server's stream ends before what we saw: a new store. Start over.
        this.lastSeq = 0;
        this.resumable = false;
        this.saveSeq();
        if (this.o.onReset) this.o.onReset();
        ws.onclose = null;
        ws.close(1000);
        this.ws = null;
        this.connect();
        return;
      }
      this.attempt = 0;
      this.resumable = true;
      this.helloSeq = last;
      this.seen.clear();
      if (this.fresh) {
        // A fresh connection first sends what is still open (with the frames' own seqs,
        // all at or below hello's last_seq), then live frames after it.
        this.lastSeq = last;
        this.saveSeq();
      }
      this.status("connected");
      if (this.o.onHello) this.o.onHello(f.data || {});
      return;
    }
    if (f.type === "ok" || f.type === "error") {
      const p = this.pending.get(f.data?.re);
      if (p) {
        this.pending.delete(f.data.re);
        clearTimeout(p.timer);
        if (f.type === "ok") p.resolve(f.data);
        else p.reject(Object.assign(new Error(f.data.detail || f.data.code), f.data));
      }
      return;
    }
    const seq = Number(f.seq) || 0;
    if (this.fresh && seq > 0 && seq <= this.helloSeq) {
      if (this.seen.has(seq)) return; // an open frame already handled on this connection
      this.seen.add(seq);
    } else if (seq > 0) {
      if (seq <= this.lastSeq) return; // already handled
      this.lastSeq = seq;
    }
    try {
      this.o.onFrame(f);
    } finally {
      this.saveSeq();
    }
  }

  /** Sends a client message; resolves with ok's data, rejects with error's {code, detail}. */
  send(type, data) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(Object.assign(new Error("disconnected"), { code: "disconnected" }));
        return;
      }
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(Object.assign(new Error("timeout"), { code: "timeout" }));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ id, type, data }));
    });
  }

  get connected() {
    return this.state === "connected";
  }
}
