// The cameras page: one card per task (GET /api/v1/frame_extractor/tasks, every 2 s): state, counters and rates,
// last error, the latest frame with the regions drawn over it, start/stop, the sampling interval, a link to the
// region editor; a form to add a camera. Cards are built once and updated in place, so typing in a card survives
// the refreshes.

import { get, write, tasksPath, taskPath, previewUrl, showImage } from "./api.js";
import { h, s, fmtNumber, drawRegions } from "./dom.js";

const COUNTERS = [
  ["sampled", "sampled_per_s"],
  ["skipped", null], // no rate in the stats: measured here between two refreshes
  ["inferred", "inferred_per_s"],
  ["failed", null],
  ["alerts", null],
];

export function camerasPage(main) {
  const list = h("div", { class: "cards", id: "camera-list" });
  const empty = h("p", { class: "muted", hidden: true }, "No camera yet: add one below, or in the conf file.");
  main.append(h("h1", {}, "Cameras"), list, empty, addForm(() => refresh()));
  const cards = new Map(); // task id -> card
  const shared = { defaultInterval: null }; // frame_extractor.interval_ms: what a task without its own uses
  get("/api/v1/frame_extractor/config")
    .then(({ frame_extractor: fe }) => { shared.defaultInterval = fe.interval_ms; })
    .catch(() => {});
  // Only the cards on screen reload their preview (each reload is a JPEG conversion on the box).
  const seen = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const card = cards.get(entry.target.dataset.camera);
      if (card) card.visible = entry.isIntersecting;
    }
  });

  async function refresh() {
    const { tasks } = await get(tasksPath);
    const ids = new Set(tasks.map((t) => t.id));
    for (const [id, card] of cards) {
      if (!ids.has(id)) {
        seen.unobserve(card.el);
        card.el.remove();
        cards.delete(id);
      }
    }
    for (const task of tasks) {
      let card = cards.get(task.id);
      if (!card) {
        card = makeCard(task, shared, () => refresh());
        cards.set(task.id, card);
        list.append(card.el);
        seen.observe(card.el);
      }
      card.update(task);
    }
    empty.hidden = tasks.length > 0;
  }
  return { refresh, dispose: () => seen.disconnect(), failed: (err) => list.replaceChildren(h("p", { class: "error" }, `Cannot list cameras: ${err.message}`)) };
}

function makeCard(task, shared, refreshAll) {
  const field = {};
  const f = (name, attrs = {}, ...children) => (field[name] = h("span", { ...attrs, "data-field": name }, ...children));
  const img = h("img", { alt: `latest frame of ${task.id}`, "data-field": "preview" });
  const overlay = s("svg", { class: "overlay", preserveAspectRatio: "none" });
  const noFrame = h("p", { class: "no-frame" }, "no frame yet");
  const interval = h("input", { type: "number", min: 1, step: 100, "data-field": "interval", "aria-label": "interval in ms" });
  const toggle = h("button", { type: "button", "data-action": "toggle" }, "Stop");
  const message = h("p", { class: "message", "data-field": "message" });
  const error = h("p", { class: "error", "data-field": "last_error", hidden: true });
  const note = h("p", { class: "note", "data-field": "waiting", hidden: true });

  const numbers = h("dl", { class: "numbers" }, COUNTERS.map(([name]) => h("div", {},
    h("dt", {}, name), h("dd", {}, f(name, { class: "n" }, "–"), " ", f(`${name}-rate`, { class: "rate" })))));

  const el = h("article", { class: "card camera", "data-camera": task.id },
    h("header", {},
      h("h2", {}, task.id),
      h("span", { class: "type" }, task.task_type),
      f("state", { class: "state" }, "–")),
    h("div", { class: "preview" }, img, overlay, noFrame),
    numbers, error, note,
    h("div", { class: "controls" },
      toggle,
      h("label", {}, "interval ", interval, " ms"),
      h("button", { type: "button", "data-action": "interval", onclick: () => setInterval_() }, "Set"),
      h("a", { href: `#/editor/${encodeURIComponent(task.id)}`, class: "button", "data-action": "edit" }, "Edit regions"),
      h("button", { type: "button", class: "danger", "data-action": "delete", onclick: () => remove() }, "Delete")),
    message);

  let current = task;
  let previous = null; // {at, skipped}: for the skipped rate
  let loading = false;
  let shownSize = null;

  async function act(what, call) {
    message.textContent = `${what}…`;
    message.className = "message";
    try {
      const answer = await call();
      message.textContent = `${what}: done`;
      if (answer && answer.task) update(answer.task, true);
      return answer;
    } catch (err) {
      message.textContent = `${what}: ${err.message}`;
      message.className = "message error";
      return null;
    }
  }

  toggle.addEventListener("click", () => {
    const verb = current.running ? "stop" : "start";
    act(verb === "stop" ? "Stopping" : "Starting", () => write("POST", `${taskPath(current.id)}/${verb}`));
  });

  function setInterval_() {
    const ms = Number(interval.value);
    if (!Number.isInteger(ms) || ms < 1) {
      message.textContent = "interval: a whole number of milliseconds, at least 1";
      message.className = "message error";
      return;
    }
    act("Setting the interval", () => write("PUT", `${taskPath(current.id)}/interval`, { interval_ms: ms }))
      .then(() => { interval.dataset.dirty = ""; });
  }
  interval.addEventListener("input", () => { interval.dataset.dirty = "1"; });
  interval.addEventListener("keydown", (ev) => { if (ev.key === "Enter") setInterval_(); });

  async function remove() {
    if (!confirm(`Delete camera ${current.id}? Its task is removed from the conf file.`)) return;
    if (await act("Deleting", () => write("DELETE", taskPath(current.id)))) refreshAll();
  }

  async function reloadPreview() {
    if (loading) return;
    loading = true;
    try {
      const shown = await showImage(img, previewUrl(current.id));
      noFrame.hidden = shown || Boolean(img.dataset.objectUrl);
      if (shown) {
        el.classList.add("has-frame");
        shownSize = [img.naturalWidth, img.naturalHeight];
        drawOverlay();
      }
    } catch (err) {
      noFrame.textContent = `preview: ${err.message}`;
    } finally {
      loading = false;
    }
  }

  function drawOverlay() {
    if (!shownSize) return;
    const regions = (current.algo_config && current.algo_config.regions) || [];
    drawRegions(overlay, regions, shownSize[0], shownSize[1]);
  }

  function update(task, fromWrite = false) {
    current = task;
    const st = task.status || {};
    const state = st.state || (task.running ? "starting" : "stopped");
    field.state.textContent = state;
    field.state.className = `state state-${state.replace(/\s+/g, "-")}`;
    toggle.textContent = task.running ? "Stop" : "Start";
    const now = performance.now();
    for (const [name, rateKey] of COUNTERS) {
      field[name].textContent = fmtNumber(st[name]);
      let rate = rateKey ? st[rateKey] : null;
      if (name === "skipped" && previous && typeof st.skipped === "number" && now > previous.at) {
        rate = Math.max(0, ((st.skipped - previous.skipped) * 1000) / (now - previous.at));
      }
      field[`${name}-rate`].textContent = typeof rate === "number" ? `${fmtNumber(rate, 1)}/s` : "";
    }
    if (!fromWrite && typeof st.skipped === "number") previous = { at: now, skipped: st.skipped };
    error.hidden = !st.last_error;
    error.textContent = st.last_error ? `last error: ${st.last_error}` : "";
    const notes = [st.waiting, st.degraded].filter(Boolean);
    note.hidden = notes.length === 0;
    note.textContent = notes.join("; ");
    if (interval.dataset.dirty !== "1" && document.activeElement !== interval) {
      interval.value = task.interval_ms ?? "";
      interval.placeholder = shared.defaultInterval ? `default ${shared.defaultInterval}` : "default";
    }
    drawOverlay();
    if (!fromWrite && (card.visible || !img.dataset.objectUrl) && (task.running || !img.dataset.objectUrl)) {
      reloadPreview();
    }
  }

  const card = { el, update, visible: true };
  return card;
}

function addForm(added) {
  const message = h("p", { class: "message" });
  const types = h("select", { name: "task_type", required: true });
  get("/api/v1/frame_extractor/task_types")
    .then(({ task_types }) => types.replaceChildren(...task_types.map((t) => h("option", { value: t }, t))))
    .catch((err) => { message.textContent = `task types: ${err.message}`; });
  const form = h("form", { class: "add-camera" },
    h("label", {}, "id ", h("input", { name: "id", required: true, pattern: "[A-Za-z0-9_.:-]+", placeholder: "cam_gate_001" })),
    h("label", {}, "task type ", types),
    h("label", { class: "wide" }, "stream URL ", h("input", { name: "rtsp_url", required: true, placeholder: "rtsp://…" })),
    h("label", {}, "interval ms ", h("input", { name: "interval_ms", type: "number", min: 1, placeholder: "default" })),
    h("label", {}, h("input", { name: "enabled", type: "checkbox", checked: true }), " start now"),
    h("button", { type: "submit" }, "Add camera"),
    message);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const body = { id: data.get("id"), task_type: data.get("task_type"), rtsp_url: data.get("rtsp_url"),
      enabled: data.get("enabled") === "on" };
    if (data.get("interval_ms")) body.interval_ms = Number(data.get("interval_ms"));
    message.textContent = "Adding…";
    try {
      await write("POST", tasksPath, body);
      message.textContent = `Added ${body.id}.`;
      form.reset();
      added();
    } catch (err) {
      message.textContent = `Not added: ${err.message}`;
    }
  });
  return h("details", { class: "card" }, h("summary", {}, "Add a camera"), form);
}
