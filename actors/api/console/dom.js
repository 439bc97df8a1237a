// DOM helpers (elements are built, never parsed from strings: names and errors from the server stay text) and the
// SVG drawings shared by the pages: a camera's regions over its preview, an alert's boxes over its image.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "checked") el.checked = el.defaultChecked = Boolean(value);
    else if (key === "value" || key === "disabled") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** An HTML element: h("td", {class: "n"}, "12"). */
export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
/** An SVG element. */
export const s = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);

export function fmtNumber(n, digits = 0) {
  return typeof n === "number" ? n.toLocaleString("en", { maximumFractionDigits: digits }) : "–";
}

export function fmtTime(text) {
  if (!text) return "–";
  const t = new Date(text);
  return Number.isNaN(t.getTime()) ? String(text) : t.toLocaleString("en-GB");
}

export function fmtAgo(unixSec) {
  if (!unixSec) return "–";
  const sec = Math.max(0, Date.now() / 1000 - unixSec);
  return sec < 120 ? `${Math.round(sec)} s ago` : `${Math.round(sec / 60)} min ago`;
}

// --- regions (the old algo_config format: pixels of the camera image, origin top-left) -----------------------------

const TYPE_COLORS = { line: "#4ECDC4", rectangle: "#FF6B6B", polygon: "#FFD166" };

export const regionColor = (r) => (r.properties && r.properties.color) || TYPE_COLORS[r.type] || "#4ECDC4";

/** A line's "in" side: walking from its first point to its second, "in" is crossing from the left to the right; in
 *  image coordinates (y down) the right-hand normal of (dx, dy) is (-dy, dx). */
export function inNormal([[x1, y1], [x2, y2]]) {
  const dx = x2 - x1;
  const dy = y2 - y1;
  const len = Math.hypot(dx, dy) || 1;
  return [-dy / len, dx / len];
}

function arrow(x, y, nx, ny, len, color) {
  const tx = x + nx * len;
  const ty = y + ny * len;
  const head = len * 0.35;
  // the two barbs: the normal turned by +-150 degrees
  const barb = (a) => [tx + head * (nx * Math.cos(a) - ny * Math.sin(a)), ty + head * (nx * Math.sin(a) + ny * Math.cos(a))];
  const [ax, ay] = barb((5 * Math.PI) / 6);
  const [bx, by] = barb((-5 * Math.PI) / 6);
  return s("path", {
    d: `M${x},${y} L${tx},${ty} M${ax},${ay} L${tx},${ty} L${bx},${by}`,
    class: "arrow", stroke: color, fill: "none", "vector-effect": "non-scaling-stroke",
  });
}

/** One region as an SVG group (``scale``: the image's larger side, so arrows and labels fit any resolution). */
export function regionShape(region, scale, { selected = false } = {}) {
  const color = regionColor(region);
  const pts = region.points || [];
  const g = s("g", {
    class: `region${region.enabled === false ? " disabled" : ""}${selected ? " selected" : ""}`,
    dataset: { regionId: region.id },
  });
  const common = { stroke: color, "vector-effect": "non-scaling-stroke", class: "shape" };
  if (region.type === "line" && pts.length >= 2) {
    const [[x1, y1], [x2, y2]] = pts;
    g.append(s("line", { x1, y1, x2, y2, class: "hit", "vector-effect": "non-scaling-stroke" }), // easier to click
      s("line", { ...common, x1, y1, x2, y2 }));
    const [nx, ny] = inNormal(pts);
    const mx = (x1 + x2) / 2;
    const my = (y1 + y2) / 2;
    const len = scale * 0.07;
    const direction = (region.properties && region.properties.direction) || "in";
    if (direction !== "out") g.append(arrow(mx, my, nx, ny, len, color));
    if (direction !== "in") g.append(arrow(mx, my, -nx, -ny, len, color));
    g.append(s("circle", { cx: x1, cy: y1, r: scale * 0.008, fill: color, class: "start" }));
  } else if (region.type === "rectangle" && pts.length >= 2) {
    const [[x1, y1], [x2, y2]] = pts;
    g.append(s("rect", { ...common, x: Math.min(x1, x2), y: Math.min(y1, y2),
      width: Math.abs(x2 - x1), height: Math.abs(y2 - y1), fill: color }));
  } else if (pts.length >= 2) {
    g.append(s(pts.length >= 3 ? "polygon" : "polyline", { ...common, points: pts.map((p) => p.join(",")).join(" "), fill: color }));
  }
  if (pts.length) {
    const label = region.name || region.id || "";
    g.append(s("text", { x: pts[0][0] + scale * 0.01, y: pts[0][1] - scale * 0.012, fill: color,
      "font-size": scale * 0.035, class: "label" }, label));
  }
  return g;
}

/** Replace ``svg``'s drawing with ``regions`` over a ``width`` x ``height`` image. */
export function drawRegions(svg, regions, width, height, selectedId) {
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const scale = Math.max(width, height);
  svg.replaceChildren(...(regions || []).map((r) => regionShape(r, scale, { selected: r.id === selectedId })));
}

// --- an alert's detections -----------------------------------------------------------------------------------------

/** The detections of an alert record, whichever spelling: the service's ``result`` (a JSON string:
 *  {class|label, confidence|score, bbox|box}) first, else the record's own ``detections``. */
export function detectionsOf(record) {
  let result = record.result;
  if (typeof result === "string") {
    try {
      result = JSON.parse(result);
    } catch {
      result = null;
    }
  }
  const raw = (result && (result.detections || result.objects)) || record.detections || [];
  return raw
    .map((d) => ({
      label: d.class ?? d.label ?? "",
      score: d.confidence ?? d.score,
      box: d.bbox ?? d.box,
      region: d.region_name || d.region_id || "",
    }))
    .filter((d) => Array.isArray(d.box) && d.box.length === 4);
}

export function drawBoxes(svg, detections, width, height) {
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const scale = Math.max(width, height);
  svg.replaceChildren(...detections.map((d) => {
    const [x1, y1, x2, y2] = d.box;
    const text = `${d.label}${typeof d.score === "number" ? ` ${(d.score * 100).toFixed(0)}%` : ""}`;
    return s("g", { class: "box" },
      s("rect", { x: x1, y: y1, width: x2 - x1, height: y2 - y1, "vector-effect": "non-scaling-stroke" }),
      s("text", { x: x1 + 2, y: Math.max(y1 - scale * 0.01, scale * 0.035), "font-size": scale * 0.035 }, text));
  }));
}
