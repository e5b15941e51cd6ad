// Notifications on /m (issue 18): subscribe this browser to Web Push, so that an offer or a
// mobilization order reaches the member while the page is closed. The service worker
// (/web/sw.js, scope /m) shows them; the subscription is this member's own
// (POST /v1/push/subscriptions with the browser's PushSubscription, DELETE to stop).

import { t } from "/web/i18n.js";
import { api, $, say, sayProblem } from "/web/common.js";

/** The VAPID key as the push manager takes it. */
function keyBytes(b64url) {
  const s = b64url.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(s + "=".repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

/** Mounts the notifications switch (`#push` and its message `#push-msg`). */
export async function mountPush() {
  const button = $("#push");
  const msg = $("#push-msg");
  if (!button) return;
  const supported = "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
  let on = false;

  function show() {
    const key = on ? "member.push.on" : "member.push.off";
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.dataset.i18n = key;
    button.textContent = t(key);
  }

  async function registration() {
    return navigator.serviceWorker.register("/web/sw.js", { scope: "/m" });
  }

  show();
  if (!supported) {
    button.disabled = true;
    say(msg, "member.push.unsupported");
    return;
  }
  try {
    const reg = await registration();
    const sub = await reg.pushManager.getSubscription();
    const mine = await api("GET", "/v1/push/subscriptions");
    on = Boolean(sub) && Array.isArray(mine) && mine.length > 0;
    show();
  } catch (_) {
    /* off until the member turns it on */
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const reg = await registration();
      if (on) {
        const sub = await reg.pushManager.getSubscription();
        if (sub) {
          await api("DELETE", "/v1/push/subscriptions", { endpoint: sub.endpoint });
          await sub.unsubscribe();
        }
        on = false;
        say(msg, "member.push.stopped");
      } else {
        if ((await Notification.requestPermission()) !== "granted") {
          say(msg, "member.push.denied", null, "error");
          return;
        }
        const { public_key } = await api("GET", "/v1/push/key");
        const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(public_key) });
        await api("POST", "/v1/push/subscriptions", sub.toJSON());
        on = true;
        say(msg, "member.push.started");
      }
    } catch (e) {
      if (e && typeof e.code === "string") sayProblem(msg, e);
      else say(msg, "member.push.failed", null, "error");
    } finally {
      button.disabled = false;
      show();
    }
  });
}
