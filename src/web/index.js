import { initLangToggle } from "/web/i18n.js";

initLangToggle(document.getElementById("lang"));
