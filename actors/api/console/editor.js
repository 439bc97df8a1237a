// The region editor (#/editor/<task id>): draw lines, rectangles and polygons on the camera's latest frame and save
// them as its algo_config (the old format, version "1.0": GET/POST /api/v1/frame_extractor/tasks/{id}/config).
//
// Coordinates are pixels of the camera image (the preview JPEG's natural size), origin top-left: the SVG overlay's
// viewBox is that size, and a click is scaled from the overlay's on-screen box. A line has 2 points, a rectangle its
// top-left and bottom-right corners, a polygon 3 or more. The config is edited in place: regions and their keys, and
// any algorithm_params, that the editor does not show are saved back as they were.
//
// Drawing: pick a tool, click the points (a line: 2 clicks, a rectangle: 2 opposite corners, a polygon: its corners,
// then click its first point again, double-click, press Enter or "Finish"); Escape cancels. With "Select", click a
// region to select it and drag its corner handles.

import { get, write, taskPath, previewUrl, showImage } from "./api.js";
import { h, s, drawRegions, regionColor } from "./dom.js";

const TOOLS = [["select", "Select"], ["line", "Line"], ["rectangle", "Rectangle"], ["polygon", "Polygon"]];
const CLOSE_PX = 12; // a polygon closes on a click this close to its first point (screen pixels)

export function editorPage(main, taskId) {
  const state = {
    task: null,
    original: null, // the algo_config as read (object), kept for what the editor does not edit
    regions: [],
    selected: null,
    tool: "select",
    draft: [], // points of the shape being drawn
    hover: null,
    size: null, // [width, height] of the image
    drag: null, // {index} of the vertex being dragged
    dirty: false,
  };

  const img = h("img", { id: "editor-image", alt: `latest frame of ${taskId}` });
  const overlay = s("svg", { id: "editor-overlay", class: "overlay editing", preserveAspectRatio: "none" });
  const waiting = h("p", { class: "no-frame" }, "waiting for a frame…");
  const stage = h("div", { class: "stage preview" }, img, overlay, waiting);
  const toolButtons = TOOLS.map(([tool, label]) =>
    h("button", { type: "button", "data-tool": tool, onclick: () => setTool(tool) }, label));
  const finish = h("button", { type: "button", "data-action": "finish", onclick: () => finishDraft() }, "Finish polygon");
  const hint = h("p", { class: "hint muted" });
  const list = h("ul", { class: "region-list", id: "region-list" });
  const params = h("textarea", { id: "algorithm-params", rows: 10, spellcheck: "false" });
  const message = h("p", { class: "message", id: "editor-message" });
  const dirtyMark = h("span", { class: "dirty", hidden: true }, "unsaved changes");
  const save = h("button", { type: "button", class: "primary", id: "save-config", onclick: () => saveConfig() }, "Save");
  const title = h("span", { class: "type" });

  main.append(
    h("h1", {}, h("a", { href: "#/cameras" }, "Cameras"), " / regions of ", taskId, " ", title),
    h("div", { class: "editor" },
      stage,
      h("aside", {},
        h("div", { class: "toolbar" }, toolButtons, finish),
        hint,
        list,
        h("details", {}, h("summary", {}, "algorithm_params (JSON)"), params),
        h("div", { class: "controls" }, save,
          h("button", { type: "button", onclick: () => loadImage() }, "Reload image"),
          h("button", { type: "button", onclick: () => load() }, "Revert"),
          dirtyMark),
        message)));

  // --- loading ---

  async function load() {
    message.textContent = "";
    try {
      const [{ task }, config] = await Promise.all([get(taskPath(taskId)), get(`${taskPath(taskId)}/config`)]);
      state.task = task;
      state.original = config && typeof config === "object" ? config : {};
      state.regions = structuredClone(state.original.regions || []);
      params.value = JSON.stringify(state.original.algorithm_params ?? {}, null, 2);
      title.textContent = task.task_type;
      state.selected = null;
      state.draft = [];
      setDirty(false);
      renderList();
      redraw();
    } catch (err) {
      showError(`Cannot read the task: ${err.message}`);
    }
  }

  async function loadImage() {
    try {
      if (await showImage(img, previewUrl(taskId))) {
        state.size = [img.naturalWidth, img.naturalHeight];
        waiting.hidden = true;
        stage.classList.add("has-frame");
        redraw();
      }
    } catch (err) {
      waiting.textContent = `preview: ${err.message}`;
    }
  }

  // --- coordinates ---

  function toImage(ev) {
    const box = overlay.getBoundingClientRect();
    const [w, hgt] = state.size;
    const x = Math.round(((ev.clientX - box.left) * w) / box.width);
    const y = Math.round(((ev.clientY - box.top) * hgt) / box.height);
    return [Math.min(Math.max(x, 0), w), Math.min(Math.max(y, 0), hgt)];
  }

  function screenDistance(a, b) {
    const box = overlay.getBoundingClientRect();
    return Math.hypot(((a[0] - b[0]) * box.width) / state.size[0], ((a[1] - b[1]) * box.height) / state.size[1]);
  }

  // --- drawing ---

  function setTool(tool) {
    state.tool = tool;
    state.draft = [];
    for (const b of toolButtons) b.classList.toggle("active", b.dataset.tool === tool);
    finish.hidden = tool !== "polygon";
    hint.textContent = {
      select: "Click a region to select it; drag its corners to move them.",
      line: "Click the line's first point, then its second. \"in\" crosses it from left to right, walking from point 1 to point 2.",
      rectangle: "Click one corner, then the opposite one.",
      polygon: "Click each corner; click the first one again, double-click or press Enter to finish.",
    }[tool];
    overlay.dataset.tool = tool;
    redraw();
  }

  function redraw() {
    if (!state.size) return;
    const [w, hgt] = state.size;
    drawRegions(overlay, state.regions, w, hgt, state.selected);
    const scale = Math.max(w, hgt);
    const region = state.regions.find((r) => r.id === state.selected);
    if (region && state.tool === "select") {
      (region.points || []).forEach(([x, y], index) => overlay.append(s("circle", {
        cx: x, cy: y, r: scale * 0.012, class: "handle", "data-index": index, fill: regionColor(region),
      })));
    }
    if (state.draft.length) {
      const pts = state.hover ? [...state.draft, state.hover] : state.draft;
      const shape = state.tool === "rectangle" && pts.length === 2
        ? s("rect", { x: Math.min(pts[0][0], pts[1][0]), y: Math.min(pts[0][1], pts[1][1]),
          width: Math.abs(pts[1][0] - pts[0][0]), height: Math.abs(pts[1][1] - pts[0][1]) })
        : s("polyline", { points: pts.map((p) => p.join(",")).join(" ") });
      shape.setAttribute("class", "draft");
      shape.setAttribute("vector-effect", "non-scaling-stroke");
      overlay.append(shape, ...state.draft.map(([x, y]) => s("circle", { cx: x, cy: y, r: scale * 0.008, class: "draft-point" })));
    }
  }

  function newId() {
    const taken = new Set(state.regions.map((r) => r.id));
    for (let n = state.regions.length + 1; ; n++) {
      const id = `region_${String(n).padStart(3, "0")}`;
      if (!taken.has(id)) return id;
    }
  }

  function finishDraft() {
    const pts = state.draft;
    const type = state.tool;
    const enough = { line: 2, rectangle: 2, polygon: 3 }[type];
    if (!enough || pts.length < enough) {
      if (type === "polygon") showError("A polygon needs at least 3 points.");
      return;
    }
    let points = pts.slice(0, type === "polygon" ? pts.length : 2);
    if (type === "rectangle") {
      const [[x1, y1], [x2, y2]] = points;
      points = [[Math.min(x1, x2), Math.min(y1, y2)], [Math.max(x1, x2), Math.max(y1, y2)]];
    }
    const id = newId();
    const properties = { color: { line: "#4ECDC4", rectangle: "#FF6B6B", polygon: "#FFD166" }[type] };
    if (type === "line") properties.direction = "in";
    state.regions.push({ id, name: `${type} ${id.slice(-3)}`, type, enabled: true, points, properties });
    state.selected = id;
    state.draft = [];
    state.hover = null;
    setDirty(true);
    setTool("select");
    renderList();
  }

  overlay.addEventListener("click", (ev) => {
    if (!state.size || state.tool === "select") return;
    const point = toImage(ev);
    if (state.tool === "polygon" && state.draft.length >= 3 && screenDistance(point, state.draft[0]) <= CLOSE_PX) {
      finishDraft();
      return;
    }
    const last = state.draft[state.draft.length - 1];
    if (last && last[0] === point[0] && last[1] === point[1]) return; // a double-click's second click
    state.draft.push(point);
    if (state.tool !== "polygon" && state.draft.length === 2) finishDraft();
    else redraw();
  });
  overlay.addEventListener("dblclick", () => { if (state.tool === "polygon") finishDraft(); });
  overlay.addEventListener("pointermove", (ev) => {
    if (!state.size) return;
    if (state.drag) {
      const region = state.regions.find((r) => r.id === state.selected);
      region.points[state.drag.index] = toImage(ev);
      setDirty(true);
      redraw();
    } else if (state.draft.length) {
      state.hover = toImage(ev);
      redraw();
    }
  });
  overlay.addEventListener("pointerdown", (ev) => {
    if (!state.size || state.tool !== "select") return;
    const handle = ev.target.closest(".handle");
    if (handle) {
      state.drag = { index: Number(handle.dataset.index) };
      overlay.setPointerCapture(ev.pointerId);
      ev.preventDefault();
      return;
    }
    const shape = ev.target.closest(".region");
    select(shape ? shape.dataset.regionId : null);
  });
  overlay.addEventListener("pointerup", () => {
    if (!state.drag) return;
    state.drag = null;
    const region = state.regions.find((r) => r.id === state.selected);
    if (region && region.type === "rectangle") {
      const [[x1, y1], [x2, y2]] = region.points;
      region.points = [[Math.min(x1, x2), Math.min(y1, y2)], [Math.max(x1, x2), Math.max(y1, y2)]];
    }
    redraw();
    renderList();
  });
  const onKey = (ev) => {
    if (ev.target.closest && ev.target.closest("input, textarea, select")) return;
    if (ev.key === "Escape") {
      state.draft = [];
      state.hover = null;
      redraw();
    } else if (ev.key === "Enter" && state.tool === "polygon") {
      finishDraft();
    } else if ((ev.key === "Delete" || ev.key === "Backspace") && state.selected && !state.draft.length) {
      removeRegion(state.selected);
    }
  };
  document.addEventListener("keydown", onKey);

  // --- the region list ---

  function select(id) {
    state.selected = id;
    for (const row of list.children) row.classList.toggle("selected", row.dataset.regionId === id);
    redraw();
  }

  function removeRegion(id) {
    state.regions = state.regions.filter((r) => r.id !== id);
    if (state.selected === id) state.selected = null;
    setDirty(true);
    renderList();
    redraw();
  }

  function edited() {
    setDirty(true);
    redraw();
  }

  function renderList() {
    if (!state.regions.length) {
      list.replaceChildren(h("li", { class: "muted" }, "No region: the whole image counts. Pick a tool to draw one."));
      return;
    }
    list.replaceChildren(...state.regions.map((region) => {
      const props = () => (region.properties ||= {}); // made only when edited: an untouched region saves as it came
      const row = h("li", {
        class: `region-row${region.id === state.selected ? " selected" : ""}`, "data-region-id": region.id,
        onclick: (ev) => { if (!ev.target.closest("input, select, button")) select(region.id); },
      },
      h("input", { type: "color", value: regionColor(region), title: "colour",
        oninput: (ev) => { props().color = ev.target.value.toUpperCase(); edited(); } }),
      h("input", { class: "name", value: region.name ?? "", placeholder: region.id, "aria-label": "name",
        oninput: (ev) => { region.name = ev.target.value; edited(); } }),
      h("span", { class: "kind" }, region.type, ` · ${(region.points || []).length} pts`),
      region.type === "line" ? h("select", { "aria-label": "direction", "data-field": "direction",
        onchange: (ev) => { props().direction = ev.target.value; edited(); } },
      ["in", "out", "bidirectional"].map((d) => {
        const option = h("option", { value: d }, d);
        option.selected = ((region.properties || {}).direction || "in") === d;
        return option;
      })) : null,
      h("label", { class: "enabled" }, h("input", { type: "checkbox", checked: region.enabled !== false,
        onchange: (ev) => { region.enabled = ev.target.checked; edited(); } }), " on"),
      h("button", { type: "button", class: "danger small", title: "delete this region", "data-action": "delete-region",
        onclick: () => removeRegion(region.id) }, "✕"));
      return row;
    }));
  }

  // --- saving ---

  function setDirty(dirty) {
    state.dirty = dirty;
    dirtyMark.hidden = !dirty;
  }

  function showError(text) {
    message.textContent = text;
    message.className = "message error";
  }

  async function saveConfig() {
    let algorithmParams;
    try {
      algorithmParams = JSON.parse(params.value.trim() || "{}");
    } catch (err) {
      showError(`algorithm_params is not JSON: ${err.message}`);
      return;
    }
    if (!algorithmParams || typeof algorithmParams !== "object" || Array.isArray(algorithmParams)) {
      showError("algorithm_params must be a JSON object");
      return;
    }
    const now = new Date().toISOString();
    const config = {
      ...state.original,
      task_id: state.task ? state.task.id : taskId,
      task_type: state.task ? state.task.task_type : state.original.task_type,
      config_version: state.original.config_version || "1.0",
      created_at: state.original.created_at || now,
      updated_at: now,
      regions: state.regions,
    };
    if ("algorithm_params" in state.original || Object.keys(algorithmParams).length) {
      config.algorithm_params = algorithmParams;
    }
    message.className = "message";
    message.textContent = "Saving…";
    try {
      await write("POST", `${taskPath(taskId)}/config`, config);
      state.original = structuredClone(config);
      setDirty(false);
      message.textContent = `Saved ${config.regions.length} region(s) at ${new Date().toLocaleTimeString("en-GB")}.`;
      message.className = "message ok";
    } catch (err) {
      showError(`Not saved: ${err.message}`);
    }
  }

  setTool("select");
  load();
  loadImage();
  return {
    refresh: () => (state.size ? null : loadImage()), // until the first frame; then the picture stays still
    dispose: () => document.removeEventListener("keydown", onKey),
  };
}
