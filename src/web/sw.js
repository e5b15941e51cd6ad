// The member app's service worker (issue 18): shows the Web Push notifications muster
// sends (an offer, a whistle's offer, a mobilization order; the JSON of docs/PROTOCOL.md,
// "Web Push") and, on a click, focuses /m (or opens it) at that offer or order. Served as
// /web/sw.js with `Service-Worker-Allowed: /m`, registered with the scope /m.
// sw-offline.js keeps the /m shell in a cache, so that /m opens offline.

importScripts("/web/sw-offline.js");

const TEXT = {
  zh: {
    offer: "新的任务邀请",
    whistle: "吹哨报到：新的任务",
    order: "动员令：请确认",
    open: "点击打开并回复",
  },
  en: {
    offer: "New task offer",
    whistle: "Whistle: a task for your unit",
    order: "Mobilization order: please acknowledge",
    open: "Tap to open and answer",
  },
};

function lang() {
  return (self.navigator.language || "zh").toLowerCase().startsWith("en") ? "en" : "zh";
}

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (_) {
    data = {};
  }
  const s = TEXT[lang()];
  const title = s[data.type] || s.offer;
  const parts = [data.category, data.level, data.site, data.note].filter((x) => typeof x === "string" && x);
  const body = (parts.length ? parts.join(" · ") + "\n" : "") + s.open;
  const url = typeof data.url === "string" && data.url.startsWith("/m") ? data.url : "/m";
  const tag = data.offer_id || data.mobilization_id || "muster";
  event.waitUntil(
    self.registration.showNotification(title, {
      body,
      tag,
      renotify: true,
      requireInteraction: true,
      icon: "/web/icon.svg",
      data: { url },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || "/m";
  event.waitUntil(
    (async () => {
      const all = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const c of all) {
        if (new URL(c.url).pathname === "/m") {
          await c.focus();
          if ("navigate" in c) return c.navigate(url);
          return c;
        }
      }
      return self.clients.openWindow(url);
    })(),
  );
});
