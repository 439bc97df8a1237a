// framewatch's web console: plain HTML + CSS + vanilla JavaScript modules, drawings in SVG over the images.
//
// Libraries: none, deliberately. Everything it needs (fetch, ES modules, <dialog>, SVG, sessionStorage) is in the
// browser; a framework or a charting/drawing library would need a build step or a CDN (the box has no internet) and
// a vendored copy to keep patched, for a handful of pages. So there is nothing vendored and no licence to note
// besides framewatch's own (MIT). Served by framewatch itself (actors/api/http.py): `/` is index.html, the other
// files are `/console/<name>` (a flat directory, read once at start).
//
// Modules: api.js (calls, the token), dom.js (element helpers, region and box drawings), cameras.js, editor.js,
// alerts.js, services.js (one page each); this one routes (#/cameras, #/editor/<id>, #/alerts, #/alerts/<id>,
// #/services), draws the health strip and polls: every 2 s the health strip and the page on screen refresh.

import { get } from "./api.js";
import { h, fmtNumber } from "./dom.js";
import { camerasPage } from "./cameras.js";
import { editorPage } from "./editor.js";
import { alertsPage, alertPage } from "./alerts.js";
import { servicesPage } from "./services.js";

const POLL_MS = 2000;

const routes = [
  [/^#\/cameras$/, () => camerasPage],
  [/^#\/editor\/(.+)$/, () => editorPage],
  [/^#\/alerts$/, () => alertsPage],
  [/^#\/alerts\/(\d+)$/, () => alertPage],
  [/^#\/services$/, () => servicesPage],
];

let page = null; // {refresh?(), dispose?()} of the page on screen

function route() {
  const hash = location.hash || "#/cameras";
  let match = null;
  let make = null;
  for (const [pattern, pageOf] of routes) {
    match = hash.match(pattern);
    if (match) {
      make = pageOf();
      break;
    }
  }
  if (!make) {
    location.hash = "#/cameras";
    return;
  }
  if (page && page.dispose) page.dispose();
  const main = document.getElementById("main");
  main.replaceChildren();
  const params = match.slice(1).map(decodeURIComponent);
  page = make(main, ...params) || {};
  const section = hash.startsWith("#/editor/") ? "#/cameras" : hash.replace(/^(#\/[a-z]+).*$/, "$1");
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === section);
  }
  refreshPage();
}

async function refreshPage() {
  const current = page;
  if (!current || !current.refresh) return;
  try {
    await current.refresh();
  } catch (err) {
    if (current === page && current.failed) current.failed(err);
    else console.warn("refresh:", err);
  }
}

// --- health strip ---------------------------------------------------------------------------------------------------

function chip(label, value, level = "ok", title = "") {
  return h("span", { class: `chip ${level}`, title }, h("b", {}, label), " ", value);
}

function componentLevel(state) {
  if (state.startsWith("up")) return "ok";
  if (state.startsWith("down") || state.startsWith("given up") || state.startsWith("failed")) return "bad";
  return "warn";
}

function drawHealth(snap) {
  const bp = snap.backpressure || {};
  const inf = snap.inference || {};
  const alerts = snap.alerts || {};
  const bpLevel = bp.paused ? "warn" : "ok"; // a pause is backpressure working (extraction waits), not a failure
  const busy = typeof inf.busy === "number" ? inf.busy : 0;
  const chips = [
    chip("backpressure", `${fmtNumber(bp.level)} / ${fmtNumber(bp.high)}${bp.paused ? " paused" : ""}`, bpLevel,
      `policy ${bp.policy}; pauses at ${bp.high}, resumes at ${bp.low}; peak ${bp.peak_load}`),
    chip("inference busy", `${(busy * 100).toFixed(0)}%`, busy > 0.9 ? "warn" : "ok",
      `${inf.slots} slot(s); avg ${fmtNumber(inf.avg_ms, 1)} ms, p95 ${fmtNumber(inf.p95_ms, 1)} ms`),
    chip("alerts", `${fmtNumber(alerts.written)} written`, alerts.dropped ? "bad" : alerts.spooled ? "warn" : "ok",
      `emitted ${alerts.emitted}, dropped ${alerts.dropped}, spooled ${alerts.spooled}, queued ${alerts.batch_queue}`),
  ];
  if (alerts.dropped) chips.push(chip("dropped", fmtNumber(alerts.dropped), "bad"));
  if (alerts.spooled) chips.push(chip("spooled", fmtNumber(alerts.spooled), "warn"));
  for (const [name, state] of Object.entries(snap.components || {})) {
    chips.push(chip(name, state.replace(/^up \(.*\)$/, "up"), componentLevel(state), state));
  }
  chips.push(h("span", { class: "uptime" }, `up ${formatUptime(snap.uptime_sec)}`));
  document.getElementById("health").replaceChildren(...chips);
}

function formatUptime(sec) {
  if (typeof sec !== "number") return "–";
  if (sec < 120) return `${Math.round(sec)} s`;
  if (sec < 7200) return `${Math.round(sec / 60)} min`;
  return `${(sec / 3600).toFixed(1)} h`;
}

async function refreshHealth() {
  try {
    drawHealth(await get("/api/v1/status"));
  } catch (err) {
    document.getElementById("health").replaceChildren(chip("framewatch", `not answering: ${err.message}`, "bad"));
  }
}

// --- polling --------------------------------------------------------------------------------------------------------

async function poll() {
  if (!document.hidden) await Promise.all([refreshHealth(), refreshPage()]);
  setTimeout(poll, POLL_MS);
}

window.addEventListener("hashchange", route);
route();
refreshHealth();
setTimeout(poll, POLL_MS);
