// The "invite to sign in" panel of /console (staff: members of their community, one or a
// batch) and /dashboard (command: staff and unit admins), and the signed-in devices the
// caller may see, with revocation. A link is shown once, with its QR code (an SVG the
// server draws, shown as a data: image: nothing from elsewhere, nothing parsed as HTML),
// and can be printed: printing shows only the cards.

import { t } from "/web/i18n.js";
import { api, h, $, fmtTime, flash, ask, say, sayProblem, problemText } from "/web/common.js";

/**
 * @param {HTMLElement} root   the panel's <section>
 * @param {object} claims      the caller's token claims
 */
export function mountInvite(root, claims) {
  const staffLike = claims.role === "staff" || claims.role === "unit_admin";
  const roles = staffLike ? ["member"] : ["staff", "unit_admin"];
  const scopeField = { member: "member_id", staff: "community_id", unit_admin: "unit_id" };

  const role = h("select", { id: "invite-role" }, ...roles.map((r) => h("option", { value: r }, t("invite.role." + r))));
  const who = h("input", { id: "invite-who", type: "text", autocomplete: "off", spellcheck: false, required: true });
  const ttl = h(
    "select",
    { id: "invite-ttl" },
    ...[1, 7, 30].map((d) => h("option", { value: String(d * 86400), selected: d === 7 }, t("invite.ttl." + d))),
  );
  const msg = h("p", { id: "invite-msg", class: "msg", role: "status" });
  const out = h("ul", { id: "invite-out", class: "invite-cards" });
  const print = h("button", { type: "button", id: "invite-print", hidden: true }, t("invite.print"));

  const show = (made) => {
    out.replaceChildren(
      ...made.map((inv) => {
        const id = inv[scopeField[inv.role]] || "";
        const label = `${t("invite.role." + inv.role)} ${id}`;
        return h(
          "li",
          { class: "invite-card", dataset: { id: inv.id } },
          h("strong", {}, label),
          h("img", {
            class: "qr",
            alt: t("invite.qr", { who: label }),
            src: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(inv.qr_svg),
          }),
          h("input", { class: "invite-link", type: "text", readOnly: true, value: inv.link, "aria-label": label }),
          h("span", { class: "muted" }, t("invite.expires", { at: new Date(inv.expires_at).toLocaleString() })),
        );
      }),
    );
    print.hidden = made.length === 0;
    root.querySelector("#invitations-show")?.click();
    flash(msg, t("invite.made", { n: made.length }), "ok");
  };

  const one = h(
    "form",
    { id: "invite-form", novalidate: true },
    h("div", { class: "row fill" },
      h("div", {}, h("label", { for: "invite-role" }, t("invite.role")), role),
      h("div", {}, h("label", { for: "invite-who" }, t("invite.who")), who),
      h("div", {}, h("label", { for: "invite-ttl" }, t("invite.ttl")), ttl),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "invite-submit" }, t("invite.make"))),
  );
  one.addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = who.value.trim();
    if (!id) {
      who.focus();
      return;
    }
    try {
      const body = { role: role.value, [scopeField[role.value]]: id, ttl_s: Number(ttl.value) };
      show([await api("POST", "/v1/invitations", body)]);
    } catch (err) {
      sayProblem(msg, err);
    }
  });

  const parts = [h("h2", { id: "invite-h" }, t("invite.title")), one];
  if (staffLike) {
    const list = h("textarea", { id: "invite-batch", rows: 4, spellcheck: false });
    const batch = h(
      "form",
      { id: "invite-batch-form", novalidate: true },
      h("label", { for: "invite-batch" }, t("invite.batch")),
      list,
      h("div", { class: "actions" }, h("button", { type: "submit", id: "invite-batch-submit" }, t("invite.batch.make"))),
    );
    batch.addEventListener("submit", async (e) => {
      e.preventDefault();
      let text = list.value.trim();
      if (!text) return;
      if (!/^member_id\b/m.test(text.split("\n")[0])) text = "member_id\n" + text;
      try {
        const res = await api("POST", `/v1/invitations/batch?ttl_s=${ttl.value}`, text + "\n", { "Content-Type": "text/csv" });
        show(res.invitations);
      } catch (err) {
        // The refusal names its bad rows ("row 2: …"): their numbers, with the code's text.
        const rows = [...(err.detail || "").matchAll(/row (\d+)/g)].map((m) => m[1]);
        flash(msg, problemText(err) + (rows.length ? " " + t("invite.batch.rows", { rows: rows.join(", ") }) : ""), "error");
      }
    });
    parts.push(batch);
  }
  print.addEventListener("click", () => {
    document.body.classList.add("print-invites");
    window.print();
  });
  window.addEventListener("afterprint", () => document.body.classList.remove("print-invites"));
  parts.push(msg, h("div", { class: "actions" }, print), out, issued(scopeField), devices(claims));
  if (claims.role === "command" && !claims.district) parts.push(revokeTokens());
  root.replaceChildren(...parts);
  root.hidden = false;
}

/** A member's own signed-in devices ("my devices"), in its own <section>. */
export function mountDevices(root, claims) {
  root.replaceChildren(devices(claims));
  root.hidden = false;
}

/**
 * The signed-in devices the caller may see, each with a revoke button. A member sees their
 * own at once; others name a member (or none: all they may see).
 */
function devices(claims) {
  const who = h("input", { id: "devices-who", type: "text", autocomplete: "off", spellcheck: false });
  const list = h("ul", { id: "devices", class: "cards" });
  const msg = h("p", { id: "devices-msg", class: "msg", role: "status" });
  const load = async () => {
    const id = who.value.trim();
    try {
      const rows = await api("GET", "/v1/sessions" + (id ? `?member_id=${encodeURIComponent(id)}` : ""));
      list.replaceChildren(
        ...rows.map((d) =>
          h(
            "li",
            { dataset: { id: d.id } },
            h("strong", {}, d.sub),
            " · ",
            d.device,
            " · ",
            h("span", { class: "muted" }, t("invite.devices.since", { at: fmtTime(d.created_at) })),
            " ",
            h(
              "button",
              {
                type: "button",
                class: "revoke",
                on: {
                  click: async () => {
                    if ((await ask(t("invite.devices.revoke.ask", { who: d.sub, device: d.device }))) === null) return;
                    try {
                      await api("POST", `/v1/sessions/${encodeURIComponent(d.id)}/revoke`, {});
                      flash(msg, t("invite.devices.revoked"), "ok");
                      load();
                    } catch (err) {
                      sayProblem(msg, err);
                    }
                  },
                },
              },
              t("invite.devices.revoke"),
            ),
          ),
        ),
      );
      if (!rows.length) flash(msg, t("invite.devices.empty"));
      else msg.textContent = "";
    } catch (err) {
      sayProblem(msg, err);
    }
  };
  const form = h(
    "form",
    { id: "devices-form", novalidate: true },
    h("label", { for: "devices-who" }, t(claims.role === "command" ? "invite.who" : "invite.devices.who")),
    h("div", { class: "row" }, who, h("button", { type: "submit", id: "devices-show" }, t("invite.devices.show"))),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });
  if (claims.role === "member") {
    load();
    return h("div", { class: "devices" }, h("h2", {}, t("invite.devices.mine")), msg, list);
  }
  return h("div", { class: "devices" }, h("h3", {}, t("invite.devices")), form, msg, list);
}

/** The sign-in links the caller issued or may see, newest first, with "revoke" on open ones. */
function issued(scopeField) {
  const list = h("ul", { id: "invitations", class: "cards" });
  const msg = h("p", { id: "invitations-msg", class: "msg", role: "status" });
  const load = async () => {
    try {
      const rows = await api("GET", "/v1/invitations");
      list.replaceChildren(
        ...rows.slice(0, 100).map((inv) => {
          const who = inv[scopeField[inv.role]] || "";
          const role = t("invite.role." + inv.role);
          return h(
            "li",
            { dataset: { invitation: inv.id, state: inv.state } },
            h("strong", {}, `${role} ${who}`),
            " ",
            h("span", { class: "chip" }, t("inv.state." + inv.state)),
            " ",
            h("span", { class: "muted" }, t("inv.by", { by: inv.issued_by, at: fmtTime(inv.issued_at) })),
            " ",
            inv.state === "open"
              ? h(
                  "button",
                  {
                    type: "button",
                    class: "small revoke-link",
                    on: {
                      click: async () => {
                        if ((await ask(t("inv.revoke.ask", { role, who }))) === null) return;
                        try {
                          await api("POST", `/v1/invitations/${encodeURIComponent(inv.id)}/revoke`, {});
                          say(msg, "inv.revoked", undefined, "ok");
                          load();
                        } catch (err) {
                          sayProblem(msg, err);
                        }
                      },
                    },
                  },
                  t("inv.revoke"),
                )
              : null,
          );
        }),
      );
      if (!rows.length) say(msg, "inv.empty");
      else if (msg.dataset.kind !== "ok") msg.textContent = "";
    } catch (err) {
      sayProblem(msg, err);
    }
  };
  const refresh = h("button", { type: "button", id: "invitations-show", class: "small", on: { click: load } }, t("inv.show"));
  load();
  return h("div", { class: "issued" }, h("h3", {}, t("inv.list")), h("div", { class: "actions" }, refresh), msg, list);
}

/** City command: every token of a subject refused from now on (POST /v1/tokens/revoke). */
function revokeTokens() {
  const sub = h("input", { id: "revoke-sub", type: "text", autocomplete: "off", spellcheck: false, placeholder: "member:m00001" });
  const msg = h("p", { id: "revoke-msg", class: "msg", role: "status" });
  const form = h(
    "form",
    { id: "revoke-form", novalidate: true },
    h("label", { for: "revoke-sub" }, t("tok.subject")),
    h("div", { class: "row" }, sub, h("button", { type: "submit", id: "revoke-submit" }, t("tok.submit"))),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const subject = sub.value.trim();
    if (!subject) {
      sub.focus();
      return;
    }
    if ((await ask(t("tok.ask", { sub: subject }))) === null) return;
    try {
      await api("POST", "/v1/tokens/revoke", { subject });
      say(msg, "tok.done", { sub: subject }, "ok");
    } catch (err) {
      sayProblem(msg, err);
    }
  });
  return h("div", { class: "tokens" }, h("h3", {}, t("tok.title")), form, msg);
}
