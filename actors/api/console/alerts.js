// The alerts pages. #/alerts: the alert history (GET /api/v1/alerts, newest first), filtered by camera, task type,
// detection count and time, a page at a time, with thumbnails; page 1 follows new alerts every 2 s while "live" is
// on. #/alerts/<id>: one alert, its image with the detections' boxes drawn, its fields, and delete.

import { get, write, alertImageUrl, showImage } from "./api.js";
import { h, s, fmtNumber, fmtTime, detectionsOf, drawBoxes } from "./dom.js";

// The filters survive a visit to an alert's detail page (module state, not the URL).
const filters = { task_id: "", task_type: "", min_detections: "", max_detections: "", start_time: "",
  end_time: "", page: 1, page_size: 20, live: true };

function query() {
  const q = new URLSearchParams();
  for (const key of ["task_id", "task_type", "min_detections", "max_detections"]) {
    if (filters[key] !== "") q.set(key, filters[key]);
  }
  for (const key of ["start_time", "end_time"]) { // datetime-local (the browser's time zone) -> RFC 3339
    if (filters[key]) q.set(key, new Date(filters[key]).toISOString());
  }
  q.set("page", filters.page);
  q.set("page_size", filters.page_size);
  return q.toString();
}

function options(select, values, current) {
  select.replaceChildren(h("option", { value: "" }, "any"), ...values.map((v) => h("option", { value: v }, v)));
  select.value = current;
}

export function alertsPage(main) {
  const taskSelect = h("select", { name: "task_id" });
  const typeSelect = h("select", { name: "task_type" });
  const input = (name, attrs) => h("input", { name, value: filters[name], ...attrs });
  const form = h("form", { class: "filters", id: "alert-filters" },
    h("label", {}, "camera ", taskSelect),
    h("label", {}, "task type ", typeSelect),
    h("label", {}, "detections ", input("min_detections", { type: "number", min: 0, placeholder: "min" }),
      " – ", input("max_detections", { type: "number", min: 0, placeholder: "max" })),
    h("label", {}, "from ", input("start_time", { type: "datetime-local", step: 1 })),
    h("label", {}, "to ", input("end_time", { type: "datetime-local", step: 1 })),
    h("label", {}, "per page ", h("select", { name: "page_size" },
      [20, 50, 100].map((n) => h("option", { value: n, selected: n === filters.page_size }, n)))),
    h("button", { type: "submit" }, "Apply"),
    h("button", { type: "button", onclick: () => reset() }, "Reset"),
    h("label", { title: "page 1 follows new alerts every 2 s" },
      h("input", { type: "checkbox", name: "live", checked: filters.live }), " live"));
  form.elements.page_size.value = filters.page_size;
  const rows = h("tbody", { id: "alert-rows" });
  const summary = h("span", { class: "muted" });
  const prev = h("button", { type: "button", onclick: () => turn(-1) }, "← newer");
  const next = h("button", { type: "button", onclick: () => turn(1) }, "older →");
  const message = h("p", { class: "message" });
  main.append(h("h1", {}, "Alerts"), form,
    h("table", { class: "alerts" },
      h("thead", {}, h("tr", {}, ["image", "time", "camera", "task type", "event", "region", "detections",
        "confidence"].map((c) => h("th", {}, c)))),
      rows),
    h("div", { class: "pager" }, prev, summary, next), message);

  Promise.all([get("/api/v1/alerts/task_ids").catch(() => ({ task_ids: [] })),
    get("/api/v1/frame_extractor/task_types").catch(() => ({ task_types: [] }))])
    .then(([{ task_ids }, { task_types }]) => {
      options(taskSelect, task_ids, filters.task_id);
      options(typeSelect, task_types, filters.task_type);
    });

  function readForm() {
    const data = new FormData(form);
    for (const key of ["task_id", "task_type", "min_detections", "max_detections", "start_time", "end_time"]) {
      filters[key] = String(data.get(key) ?? "");
    }
    filters.page_size = Number(data.get("page_size")) || 20;
    filters.live = data.get("live") === "on";
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    readForm();
    filters.page = 1;
    refresh();
  });
  form.elements.live.addEventListener("change", () => { filters.live = form.elements.live.checked; });
  function reset() {
    Object.assign(filters, { task_id: "", task_type: "", min_detections: "", max_detections: "", start_time: "",
      end_time: "", page: 1 });
    for (const key of ["min_detections", "max_detections", "start_time", "end_time"]) form.elements[key].value = "";
    taskSelect.value = typeSelect.value = "";
    refresh();
  }
  let total = 0;
  function turn(step) {
    filters.page = Math.max(1, filters.page + step);
    refresh();
  }

  const made = new Map(); // alert id -> its row: kept across refreshes, so thumbnails load once

  async function refresh() {
    const { items, total: n } = await get(`/api/v1/alerts?${query()}`);
    total = n;
    message.textContent = "";
    const pages = Math.max(1, Math.ceil(total / filters.page_size));
    summary.textContent = `page ${filters.page} of ${pages} · ${fmtNumber(total)} alert(s)`;
    prev.disabled = filters.page <= 1;
    next.disabled = filters.page >= pages;
    if (!items.length) {
      rows.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No alert matches.")));
      return;
    }
    const keep = new Set(items.map((r) => r.id));
    for (const id of made.keys()) if (!keep.has(id)) made.delete(id);
    rows.replaceChildren(...items.map((record) => {
      if (!made.has(record.id)) made.set(record.id, row(record));
      return made.get(record.id);
    }));
  }

  return {
    refresh: () => (filters.live && filters.page === 1 ? refresh() : null),
    failed: (err) => {
      message.textContent = `Cannot list alerts: ${err.message}`;
      message.className = "message error";
    },
    dispose: () => made.clear(),
  };
}

function thumbnail(record) {
  if (!record.image_path || record.image_stored === false) return h("span", { class: "muted" }, "no image");
  const img = h("img", { class: "thumb", src: alertImageUrl(record.id), alt: "" });
  img.addEventListener("error", () => img.replaceWith(h("span", { class: "muted" }, "gone")), { once: true });
  return img;
}

function row(record) {
  const open = () => { location.hash = `#/alerts/${record.id}`; };
  return h("tr", { class: "alert-row", "data-alert-id": record.id, onclick: open, tabindex: 0,
    onkeydown: (ev) => { if (ev.key === "Enter") open(); } },
  h("td", {}, thumbnail(record)),
  h("td", {}, fmtTime(record.created_at)),
  h("td", {}, record.task_id),
  h("td", {}, record.task_type),
  h("td", {}, h("span", { class: `event event-${record.event_state || "none"}` }, record.event_state || "–")),
  h("td", {}, record.region_name || record.region_id || "–"),
  h("td", { class: "n" }, fmtNumber(record.detection_count)),
  h("td", { class: "n" }, typeof record.confidence === "number" ? record.confidence.toFixed(2) : "–"));
}

// --- one alert ------------------------------------------------------------------------------------------------------

const FIELDS = ["id", "task_id", "task_type", "created_at", "event_state", "event_id", "region_id", "region_name",
  "track_ids", "started_at", "ended_at", "detection_count", "confidence", "inference_time_ms", "algorithm_name",
  "rule", "counts", "image_path", "image_url"];

export function alertPage(main, id) {
  const img = h("img", { id: "alert-image", alt: `image of alert ${id}` });
  const overlay = s("svg", { class: "overlay boxes", preserveAspectRatio: "none" });
  const noImage = h("p", { class: "no-frame" }, "loading…");
  const fields = h("dl", { class: "fields" });
  const result = h("pre", { class: "result" });
  const message = h("p", { class: "message" });
  const remove = h("button", { type: "button", class: "danger", "data-action": "delete-alert" }, "Delete alert");
  main.append(
    h("h1", {}, h("a", { href: "#/alerts" }, "Alerts"), ` / ${id}`),
    h("div", { class: "alert-detail" },
      h("div", { class: "preview" }, img, overlay, noImage),
      h("div", {}, fields, h("details", { open: true }, h("summary", {}, "result"), result),
        h("div", { class: "controls" }, remove), message)));

  remove.addEventListener("click", async () => {
    if (!confirm(`Delete alert ${id} from the history?`)) return;
    try {
      await write("DELETE", `/api/v1/alerts/${encodeURIComponent(id)}`);
      location.hash = "#/alerts";
    } catch (err) {
      message.textContent = `Not deleted: ${err.message}`;
      message.className = "message error";
    }
  });

  (async () => {
    let record;
    try {
      ({ alert: record } = await get(`/api/v1/alerts/${encodeURIComponent(id)}`));
    } catch (err) {
      noImage.textContent = "";
      message.textContent = `Cannot read alert ${id}: ${err.message}`;
      message.className = "message error";
      return;
    }
    fields.replaceChildren(...FIELDS.filter((k) => record[k] !== undefined && record[k] !== "").map((k) => {
      const v = record[k];
      return h("div", {}, h("dt", {}, k), h("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v)));
    }));
    let parsed = record.result;
    try {
      parsed = JSON.parse(record.result);
    } catch { /* shown as it came */ }
    result.textContent = typeof parsed === "string" ? parsed : JSON.stringify(parsed, null, 2);
    const detections = detectionsOf(record);
    try {
      if (await showImage(img, alertImageUrl(record.id))) {
        noImage.hidden = true;
        drawBoxes(overlay, detections, img.naturalWidth, img.naturalHeight);
      } else {
        noImage.textContent = "this alert has no stored image";
      }
    } catch (err) {
      noImage.textContent = `image: ${err.message}`;
    }
  })();
  return {};
}
