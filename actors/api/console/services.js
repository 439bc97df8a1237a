// The algorithm services page: the registry (GET /api/v1/ai_analysis/services, every 2 s): who serves which task
// types, at which endpoint, how healthy, and when it last sent a heartbeat. Services register themselves (POST
// /api/v1/ai_analysis/register): nothing here changes the registry.

import { get } from "./api.js";
import { h, fmtNumber, fmtAgo } from "./dom.js";

export function servicesPage(main) {
  const rows = h("tbody", { id: "service-rows" });
  main.append(
    h("h1", {}, "Algorithm services"),
    h("p", { class: "muted" }, "Registered by the services themselves; an entry goes when its heartbeats stop."),
    h("table", { class: "services" },
      h("thead", {}, h("tr", {}, ["service", "task types", "endpoint", "version", "status", "calls", "avg ms",
        "registered", "last heartbeat", "last error"].map((c) => h("th", {}, c)))),
      rows));

  async function refresh() {
    const { services } = await get("/api/v1/ai_analysis/services");
    if (!services.length) {
      rows.replaceChildren(h("tr", {}, h("td", { colspan: 10, class: "muted" },
        "No algorithm service registered: the built-in detector serves the task types it knows.")));
      return;
    }
    rows.replaceChildren(...services.map((sv) => h("tr", { "data-service-id": sv.service_id },
      h("td", {}, h("b", {}, sv.name), h("br"), h("small", { class: "muted" }, sv.service_id)),
      h("td", {}, (sv.task_types || []).join(", ")),
      h("td", {}, h("code", {}, sv.endpoint), sv.mode ? h("small", { class: "muted" }, ` ${sv.mode}`) : null),
      h("td", {}, sv.version || "–"),
      h("td", {}, h("span", { class: `state state-${sv.status === "healthy" ? "running" : "failed"}` }, sv.status),
        sv.circuit && sv.circuit !== "closed" ? h("small", { class: "muted" }, ` circuit ${sv.circuit}`) : null),
      h("td", { class: "n" }, fmtNumber(sv.call_count)),
      h("td", { class: "n" }, fmtNumber(sv.avg_inference_time_ms ?? sv.avg_latency_ms, 1)),
      h("td", {}, fmtAgo(sv.register_at)),
      h("td", {}, fmtAgo(sv.last_heartbeat)),
      h("td", { class: "error" }, sv.last_error || ""))));
  }
  return { refresh, failed: (err) => rows.replaceChildren(h("tr", {}, h("td", { colspan: 10, class: "error" },
    `Cannot list services: ${err.message}`))) };
}
