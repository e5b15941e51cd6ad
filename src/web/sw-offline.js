// The member app's shell offline (issue 18), imported by the service worker (/web/sw.js,
// scope /m): /m and the files under /web/ it loads are fetched from the network first and
// kept in a cache, so that /m opens from the cache when the network (or the server) is
// gone. The API (/v1/) and the websocket are never cached. The page tells the worker which
// files it loaded (a "muster.cache" message); CORE is fetched at install, before the page
// is controlled, and must hold every module /m imports (gateway::pages's test walks the
// imports from member.js and checks).

const SHELL = "muster-m-shell-v2";
const CORE = [
  "/m",
  "/web/member.js",
  "/web/member-offline.js",
  "/web/member-push.js",
  "/web/member-service.js",
  "/web/member-campaign.js",
  "/web/member-propose.js",
  "/web/common.js",
  "/web/live.js",
  "/web/invite.js",
  "/web/i18n.js",
  "/web/i18n-service.js",
  "/web/i18n-command.js",
  "/web/i18n-admin.js",
  "/web/i18n-residents.js",
  "/web/i18n-offline.js",
  "/web/i18n-campaign.js",
  "/web/style.css",
  "/web/residents.css",
  "/web/icon.svg",
  "/web/member.webmanifest",
];

/** Is this a request of the shell (a GET of /m or of a file under /web/ on this origin)? */
function isShell(request) {
  if (request.method !== "GET") return false;
  const url = new URL(request.url);
  return url.origin === self.location.origin && (url.pathname === "/m" || url.pathname.startsWith("/web/"));
}

/** The cache's key: the path alone (no query, no fragment). */
function keyOf(url) {
  const u = new URL(url, self.location.origin);
  return u.origin + u.pathname;
}

async function keep(urls) {
  const cache = await caches.open(SHELL);
  await Promise.all(
    urls.map(async (u) => {
      try {
        const resp = await fetch(u, { cache: "no-cache" });
        if (resp.ok) await cache.put(keyOf(u), resp);
      } catch (_) {
        /* kept the next time it loads */
      }
    }),
  );
}

self.addEventListener("install", (event) => event.waitUntil(keep(CORE)));

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name.startsWith("muster-m-") && name !== SHELL) await caches.delete(name);
    })(),
  );
});

self.addEventListener("message", (event) => {
  const d = event.data;
  if (d && d.type === "muster.cache" && Array.isArray(d.urls)) {
    const urls = d.urls.filter((u) => typeof u === "string" && isShell(new Request(u)));
    event.waitUntil(keep(urls));
  }
});

self.addEventListener("fetch", (event) => {
  if (!isShell(event.request)) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(SHELL);
      try {
        const resp = await fetch(event.request);
        if (resp.ok) await cache.put(keyOf(event.request.url), resp.clone());
        return resp;
      } catch (e) {
        const kept = await cache.match(keyOf(event.request.url));
        if (kept) return kept;
        throw e;
      }
    })(),
  );
});
