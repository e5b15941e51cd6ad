// Command's orders on /dashboard: order a mobilization (named teams, a unit's or a
// district's assault teams, or all of them; to their paired communities, one community or
// a site; deadline, note) and close one, both confirmed in the page's dialog; the balance
// proposals, each with a button that applies it. Refusals are shown by their code.

import { t } from "/web/i18n.js";
import { api, h, $, ask, flash, say, sayProblem } from "/web/common.js";

/**
 * The order form. `names` gives the choices: `{districts(), units(), communities()}`, each
 * `[[id, name]]`; `changed()` runs after an order or a close.
 */
export function mountMobilize(names, changed) {
  const form = $("#mobo-form");
  const who = $("#mobo-who");
  const dest = $("#mobo-dest");
  const msg = $("#mobo-msg");
  const fill = (select, pairs) => {
    const keep = select.value;
    select.replaceChildren(...pairs.map(([id, name]) => h("option", { value: id }, `${name} (${id})`)));
    if (pairs.some(([id]) => id === keep)) select.value = keep;
  };
  const show = () => {
    for (const el of form.querySelectorAll("[data-who]")) el.hidden = el.dataset.who !== who.value;
    for (const el of form.querySelectorAll("[data-dest]")) el.hidden = el.dataset.dest !== dest.value;
  };
  const refill = () => {
    fill($("#mobo-district"), names.districts());
    fill($("#mobo-unit"), names.units());
    fill($("#mobo-community"), names.communities());
  };
  who.addEventListener("change", show);
  dest.addEventListener("change", show);
  form.addEventListener("focusin", refill, { once: true });
  refill();
  show();

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    refill();
    const body = {};
    let whoText;
    const kind = who.value;
    if (kind === "teams") {
      const teams = $("#mobo-teams").value.split(/[,，\s]+/).filter(Boolean);
      if (!teams.length) {
        say(msg, "mobo.missing", undefined, "error");
        $("#mobo-teams").focus();
        return;
      }
      body.teams = teams;
      whoText = teams.join("、");
    } else if (kind === "all_assault") {
      body.all_assault = true;
      whoText = t("mobo.who.all_assault");
    } else {
      const sel = $(kind === "unit_id" ? "#mobo-unit" : "#mobo-district");
      if (!sel.value) {
        say(msg, "mobo.missing", undefined, "error");
        sel.focus();
        return;
      }
      body[kind] = sel.value;
      whoText = `${t("mobo.who." + kind)}：${sel.selectedOptions[0].textContent}`;
    }
    let destText = t("mobo.dest.paired");
    if (dest.value === "community") {
      body.community_id = $("#mobo-community").value;
      destText = $("#mobo-community").selectedOptions[0]?.textContent || body.community_id;
    } else if (dest.value === "site") {
      const name = $("#mobo-site-name").value.trim();
      body.site = { name, location: { lat: Number($("#mobo-site-lat").value), lng: Number($("#mobo-site-lng").value) } };
      destText = name;
    }
    const minutes = $("#mobo-deadline").value.trim();
    if (minutes) body.deadline_s = Math.round(Number(minutes) * 60);
    const note = $("#mobo-note").value.trim();
    if (note) body.note = note;
    if ((await ask(t("mobo.ask", { who: whoText, dest: destText }))) === null) return;
    try {
      const m = await api("POST", "/v1/mobilizations", body);
      say(msg, "mobo.done", { id: m.id, n: m.ordered }, "ok");
      changed();
    } catch (err) {
      sayProblem(msg, err);
    }
  });
}

/** The close button of a mobilization's progress card. */
export function closeButton(m, changed) {
  return h(
    "button",
    {
      type: "button",
      class: "small close-mob",
      dataset: { close: m.id },
      on: {
        click: async () => {
          const reason = await ask(t("mobo.close.ask", { id: m.id }), { input: true });
          if (reason === null) return;
          const msg = $("#mobo-msg");
          try {
            await api("POST", `/v1/mobilizations/${encodeURIComponent(m.id)}/close`, reason ? { reason } : {});
            say(msg, "mobo.closed", { id: m.id }, "ok");
            changed();
          } catch (err) {
            sayProblem(msg, err);
          }
        },
      },
    },
    t("mobo.close"),
  );
}

/**
 * The balance proposals (command only), each with "apply"; `name(id)` names a community,
 * `applied(balance)` takes the new balance the server answers.
 */
export function renderProposals(proposals, name, applied, reload) {
  const list = $("#proposals");
  const msg = $("#bal-msg");
  list.replaceChildren(
    ...(proposals || []).map((p) => {
      const vars = { from: name(p.from), to: name(p.to), n: p.members.length, cells: p.cells_apart };
      return h(
        "li",
        { dataset: { proposal: p.id, from: p.from, to: p.to } },
        h("p", {}, t("bal.proposal", vars)),
        h(
          "button",
          {
            type: "button",
            class: "small apply",
            on: {
              click: async () => {
                if ((await ask(t("bal.apply.ask", vars))) === null) return;
                try {
                  const b = await api("POST", "/v1/balance/apply", { from: p.from, to: p.to, members: p.members });
                  say(msg, "bal.applied", vars, "ok");
                  applied(b);
                } catch (err) {
                  sayProblem(msg, err);
                  reload();
                }
              },
            },
          },
          t("bal.apply"),
        ),
      );
    }),
  );
  $("#bal-empty").hidden = (proposals || []).length > 0;
  if (!(proposals || []).length && msg.dataset.kind !== "ok") flash(msg, "");
}
