// The community's registration (双报到) on /console: its rate (members living there who
// reported, units paired with it that registered) and who is missing, by name.

import { t } from "/web/i18n.js";
import { api, h, say, sayProblem } from "/web/common.js";

/** Fills `root` (a hidden <section>) for staff of `community`; answers its reload. */
export function mountRegistration(root, community) {
  const line = h("p", { id: "reg-rate", class: "lead" });
  const msg = h("p", { id: "reg-msg", class: "msg", role: "status" });
  const missing = h("ul", { id: "reg-missing", class: "cards" });
  const load = async () => {
    try {
      const [reg, members] = await Promise.all([
        api("GET", "/v1/registration"),
        api("GET", `/v1/members?community_id=${encodeURIComponent(community)}`),
      ]);
      const row = (reg.communities || []).find((c) => c.id === community);
      if (row) {
        say(line, "reg.line", {
          registered: row.registered,
          residents: row.residents,
          rate: `${(row.rate * 100).toFixed(1)}%`,
          ur: row.units_registered.length,
          up: row.units_paired.length,
        });
        line.dataset.rate = String(row.rate);
      }
      const absent = members.filter((m) => !m.registered);
      missing.replaceChildren(...absent.map((m) => h("li", { dataset: { member: m.id } }, `${m.name} (${m.id}) · ${m.unit_id}`)));
      if (absent.length) say(msg, "reg.missing", { n: absent.length });
      else say(msg, "reg.none");
    } catch (e) {
      sayProblem(msg, e);
    }
  };
  const refresh = h("button", { type: "button", id: "reg-refresh", class: "small", dataset: { i18n: "inv.show" }, on: { click: load } }, t("inv.show"));
  root.replaceChildren(
    h("h2", { id: "reg-h", dataset: { i18n: "reg.title" } }, t("reg.title")),
    line,
    h("div", { class: "actions" }, refresh),
    msg,
    missing,
  );
  root.hidden = false;
  load();
  return load;
}
