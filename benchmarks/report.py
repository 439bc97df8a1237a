"""The report: one JSON document (fields documented in ``benchmarks/README.md``) and a terminal table.

``summarize_run`` turns one run's raw measurements into its report section; ``build_report`` assembles the document
and the cross-run checks; ``render_table`` prints the runs side by side.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from typing import Any

import msgspec
from framewatch.actors.core.config import Config

from .detectors import theoretical_capacity_fps
from .measure import COMPONENTS, cpu_delta, slope_per_hour, slope_points, window_records
from .scenario import Scenario, demand_fps

SCHEMA = 1
AGE_BUCKETS_MS = [0, 50, 100, 200, 300, 500, 750, 1000, 2000, 3000, 5000, 10_000, 20_000, 30_000, 60_000, 120_000,
                  300_000, 600_000, math.inf]

#: Documented top-level and per-run fields; the smoke test checks the JSON has every one.
REPORT_FIELDS = ("schema", "scenario", "machine", "order", "probes", "runs", "comparison", "checks", "plots")
RUN_FIELDS = (
    "label", "policy", "slots", "measured_sec", "ended_early", "notices", "rates", "counts", "storage",
    "utilisation", "latency_ms", "frame_age_ms", "cameras", "fairness", "cpu", "process", "queue", "limits",
    "decoding", "conservation", "retention", "lifecycle", "timeseries",
)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def _div(a: float | None, b: float | None, nd: int = 3) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, nd)


def jain(values: list[float]) -> float | None:
    """Jain's fairness index: (sum x)^2 / (n sum x^2); 1.0 = perfectly equal shares, 1/n = one camera gets all."""
    if not values or not any(values):
        return None
    return round(sum(values) ** 2 / (len(values) * sum(v * v for v in values)), 4)


def histogram(values: list[float]) -> dict[str, list[float]]:
    counts = [0] * (len(AGE_BUCKETS_MS) - 1)
    for v in values:
        for k in range(len(counts)):
            if v < AGE_BUCKETS_MS[k + 1]:
                counts[k] += 1
                break
    edges = [e if e != math.inf else None for e in AGE_BUCKETS_MS]
    return {"edges_ms": edges, "counts": counts}  # type: ignore[dict-item]


def service_figures(a: Any, b: Any, win: float) -> dict[str, Any]:
    """Remote backend: per service, its frames in the window and how busy its slots were (by its mean latency)."""
    out = {}
    for sid, svc in b.services.items():
        before = a.services.get(sid)
        done = svc.completed - (before.completed if before is not None else 0)
        out[sid] = {"completed": done, "failures": svc.failures - (before.failures if before is not None else 0),
                    "avg_latency_ms": svc.avg_latency_ms, "slots": svc.slots,
                    "busy": round(done * svc.avg_latency_ms / 1000 / win / max(svc.slots, 1), 4)}
    return out


def _cap(capacity_probe: dict[str, Any]) -> float | None:
    """The capacity probe's frames/s for the whole run (remote: one service alone x services)."""
    fps = capacity_probe.get("fps")
    return None if fps is None else round(fps * capacity_probe.get("services", 1), 2)


def _min(*values: float | None) -> float | None:
    """The smallest of the values that are known (None when none is)."""
    known = [v for v in values if v is not None]
    return min(known) if known else None


def limit_figures(probes: dict[str, Any], capacity: float | None, demand: float, inferred_per_s: float,
                  cpus: int) -> dict[str, Any]:
    """The limit of this box for the scenario, from the probes alone, and the run's inference rate over it.

    - detector alone: ``capacity`` (frames/s, the capacity probe), which costs ``detector_cpu_ms_per_frame`` of
      process CPU per frame (the probe's CPU time / frames);
    - the box after the needed decoding: ``(cpus - decode cores) * 1000 / detector_cpu_ms_per_frame`` frames/s,
      where the decode cores are those of the PyAV keyframes-only probe (every packet demuxed, keyframes decoded:
      the least a decoder serving every camera must spend), else of the full-decode probe;
    - ``limit_per_s`` = min(detector alone, box after decoding); ``target_per_s`` = min(samples wanted, limit);
      ``inferred_over_target`` = inferred/s / target (1.0 = all the box could do for this load).

    The same with the full-decode probe's cores (``..._full_decode...``): the limit for a decoder that decodes every
    frame. Colour conversion, JPEG encoding and storage of the inferred frames are not in the limit.
    """
    det_ms = (probes.get("capacity") or {}).get("cpu_ms_per_frame")
    modes = (probes.get("decode") or {}).get("modes") or {}
    cores = {m: (modes.get(m) or {}).get("cores") for m in ("full", "keyframes", "demux")}

    def box_after(decode_cores: float | None) -> float | None:
        if decode_cores is None or not det_ms or decode_cores >= cpus:
            return None
        return round((cpus - decode_cores) * 1000 / det_ms, 2)

    needed = "keyframes" if cores["keyframes"] is not None else "full" if cores["full"] is not None else None
    after_needed = box_after(cores[needed]) if needed else None
    limit = _min(capacity, after_needed)
    target = _min(demand, limit)
    after_full = box_after(cores["full"])
    target_full = _min(demand, capacity, after_full) if after_full is not None else None
    return {
        "cpus": cpus,
        "detector_cpu_ms_per_frame": det_ms,
        "decode_cores": cores,
        "decode_needed_mode": needed,
        "box_after_needed_decode_per_s": after_needed,
        "limit_per_s": limit,
        "limit_basis": None if limit is None else "detector alone" if limit == capacity else f"box after {needed} decoding",
        "target_per_s": target,
        "inferred_over_target": _div(inferred_per_s, target),
        "box_after_full_decode_per_s": after_full,
        "target_full_decode_per_s": target_full,
        "inferred_over_full_decode_target": _div(inferred_per_s, target_full),
    }


def decoding_figures(a: Any, b: Any, inferred: int, win: float) -> dict[str, Any]:
    """framewatch's own decode counters (``CameraStats.decoded``, ``decode_mode``), when its sources report them;
    ``available`` false (and the figures null) otherwise."""
    decoded = sum(getattr(c, "decoded", 0) - getattr(a.cameras.get(cid), "decoded", 0) for cid, c in b.cameras.items())
    modes: dict[str, int] = {}
    for c in b.cameras.values():
        mode = getattr(c, "decode_mode", "")
        if mode:
            modes[mode] = modes.get(mode, 0) + 1
    available = decoded > 0 or bool(modes)
    return {"available": available, "decoded": decoded if available else None,
            "decoded_per_s": round(decoded / win, 1) if available else None,
            "decoded_per_inferred": _div(decoded, inferred, 2) if available else None, "modes": modes}


def summarize_run(raw: dict[str, Any], sc: Scenario, probes: dict[str, Any]) -> dict[str, Any]:
    cfg: Config = raw["config"]
    inf = sc.bench.inference
    s, e = raw["start"], raw["end"]
    out: dict[str, Any] = {
        "label": raw["label"], "policy": raw["policy"], "slots": raw["slots"],
        "measured_sec": None, "ended_early": raw["ended_early"], "notices": raw["notices"],
    }
    if s is None or e is None:
        for k in RUN_FIELDS:
            out.setdefault(k, None)
        out["conservation"] = {"samples": len(raw["samples"]), "violations": raw["conservation_errors"],
                               "ok": not raw["conservation_errors"]}
        out["timeseries"] = raw["samples"]
        return out
    win = max(e.t - s.t, 1e-9)
    out["measured_sec"] = round(win, 2)
    a, b = s.snap.totals, e.snap.totals
    sampled = b.sampled - a.sampled
    skipped = b.skipped - a.skipped
    extracted = sampled - skipped
    inferred = b.inferred - a.inferred
    failed = b.failed - a.failed
    recs = window_records(raw)
    lat = [r[3] for r in recs]
    ages = [r[2] for r in recs]
    inferred_per_s = inferred / win
    out["rates"] = {
        "demand_per_s": round(demand_fps(cfg), 2),
        "sampled_per_s": round(sampled / win, 2),
        "extracted_per_s": round(extracted / win, 2),
        "inferred_per_s": round(inferred_per_s, 2),
        "extracted_to_inferred": _div(extracted, inferred, 2),
        "written_per_s": round((e.written - s.written) / win, 2),
    }
    out["counts"] = {
        "sampled": sampled, "skipped": skipped, "extracted": extracted, "inferred": inferred, "failed": failed,
        "with_detections": b.with_detections - a.with_detections,
        "without_detections": b.without_detections - a.without_detections,
        "alerts": b.alerts - a.alerts, "in_flight_start": a.in_flight, "in_flight_end": b.in_flight,
        "skipped_fraction": _div(skipped, sampled),
        "failures_by_reason": dict(e.snap.inference.failures_by_reason),
    }
    written = e.written - s.written
    final = raw["final"]
    files = raw["files_on_disk"]
    max_per_task = {t.id: cfg.task_max_frame_count(t) for t in cfg.enabled_tasks()}
    out["storage"] = {
        "store": cfg.frame_extractor.store,
        "written": written,
        "written_per_inferred": _div(written, inferred),
        "stored_start": a.stored, "stored_end": b.stored,
        "store_failed": b.store_failed - a.store_failed,
        "files_on_disk_after_stop": sum(files.values()) if files is not None else None,
        "max_files_per_task_after_stop": max(files.values()) if files else None,
        "max_frame_count_per_task": max(max_per_task.values()) if max_per_task else None,
        "bound_violations": raw["storage_bound_errors"]
        + [f"{k}: {v} files after stop > max_frame_count {max_per_task[k]}" for k, v in (files or {}).items()
           if max_per_task.get(k) and v > max_per_task[k]],
    }
    busy = sum(lat) / 1000 / win / max(raw["slots"], 1)
    theo = theoretical_capacity_fps(inf, raw["slots"])
    busy_samples = [x["busy"] for x in raw["samples"] if x["phase"] == "measure"]
    out["utilisation"] = {
        "busy": round(busy, 4),
        "busy_snapshot_mean": round(sum(busy_samples) / len(busy_samples), 4) if busy_samples else None,
        "theoretical_capacity_per_s": round(theo, 2) if theo else None,
        "inferred_over_theoretical": _div(inferred_per_s, theo),
        "services": service_figures(s.snap, e.snap, win) if inf.backend == "remote" else None,
    }
    out["latency_ms"] = {"mean": round(sum(lat) / len(lat), 1) if lat else None, "p50": _pct(lat, 0.5),
                         "p95": _pct(lat, 0.95), "max": round(max(lat), 1) if lat else None}
    out["frame_age_ms"] = {
        "count": len(ages), "mean": round(sum(ages) / len(ages), 1) if ages else None,
        "p50": _pct(ages, 0.5), "p95": _pct(ages, 0.95), "max": round(max(ages), 1) if ages else None,
        "snapshot_p50": e.snap.inference.frame_age_p50_ms, "snapshot_p95": e.snap.inference.frame_age_p95_ms,
        "histogram": histogram(ages),
    }
    weights = {t.id: t.weight for t in cfg.enabled_tasks()}
    cams: dict[str, Any] = {}
    for cid, c in e.snap.cameras.items():
        c0 = s.snap.cameras.get(cid)
        n_inf = c.inferred - (c0.inferred if c0 else 0)
        n_samp = c.sampled - (c0.sampled if c0 else 0)
        cams[cid] = {"sampled": n_samp, "skipped": c.skipped - (c0.skipped if c0 else 0), "inferred": n_inf,
                     "inferred_per_s": round(n_inf / win, 2), "share": _div(n_inf, inferred, 4),
                     "weight": weights.get(cid, 1.0), "state": c.state,
                     "decoded": getattr(c, "decoded", 0) - getattr(c0, "decoded", 0),
                     "decode_mode": getattr(c, "decode_mode", "")}
    out["cameras"] = cams
    shares = [v["inferred"] / v["weight"] for v in cams.values()]
    out["fairness"] = {
        "jain": jain(shares),
        "min_share": min((v["share"] or 0.0) for v in cams.values()) if cams else None,
        "max_share": max((v["share"] or 0.0) for v in cams.values()) if cams else None,
        "equal_share": round(1 / len(cams), 4) if cams else None,
    }
    cpu = cpu_delta(s.cpu, e.cpu)
    rest = sum(cpu[k] for k in COMPONENTS if k not in ("extraction", "inference", "harness"))
    process_cpu = e.proc_cpu - s.proc_cpu
    out["cpu"] = {
        "seconds": cpu,
        "extraction_sec": cpu["extraction"], "inference_sec": cpu["inference"], "rest_sec": round(rest, 3),
        "harness_sec": cpu["harness"],
        "process_sec": round(process_cpu, 3),
        "cores_used": round(process_cpu / win, 3),
        "extraction_ms_per_sample": _div(cpu["extraction"] * 1000, sampled, 3),
        "extraction_ms_per_extracted": _div(cpu["extraction"] * 1000, extracted, 3),
        "inference_ms_per_inferred": _div(cpu["inference"] * 1000, inferred, 3),
        "cpu_ms_per_inferred": _div(process_cpu * 1000, inferred, 2),
        "writer_ms_per_written": _div(cpu["writer"] * 1000, written, 3),
        "retention_ms_per_written": _div(cpu["retention"] * 1000, written, 4),
        "whole_run_seconds": raw["cpu_whole_run"],
    }
    rss_pts = slope_points(raw, "rss_mb")
    out["process"] = {
        "rss_mb_start": round(s.rss, 1), "rss_mb_end": round(e.rss, 1),
        "rss_slope_mb_per_h": _round(slope_per_hour(rss_pts), 1),
        "threads_start": s.threads, "threads_end": e.threads,
        "threads_slope_per_h": _round(slope_per_hour(slope_points(raw, "threads")), 2),
        "fds_start": s.fds, "fds_end": e.fds,
        "fds_slope_per_h": _round(slope_per_hour(slope_points(raw, "fds")), 2),
        "rss_mb_before_run": raw["rss_before_mb"],
    }
    inboxes = [x["inference_mailboxes"] for x in raw["samples"]]
    peak_load = final.backpressure.peak_load if final is not None else e.snap.backpressure.peak_load
    # A decoded frame's size: seen by the local detector, else (remote backend) the decode probe's frame.
    shape = (probes.get("decode") or {}).get("frame_shape") or []
    frame_bytes = raw["frame_bytes"] or (math.prod(shape) if shape else 0)
    out["queue"] = {
        "peak_load": peak_load,
        "high_watermark_total": raw["high_watermark_total"],
        "peak_inference_mailboxes": max(inboxes) if inboxes else None,
        "peak_in_flight_sampled": max(x["in_flight"] for x in raw["samples"]),
        "peak_writer_mailbox": max(x["writer_mailbox"] for x in raw["samples"]),
        "in_flight_end": b.in_flight,
        "backlog_mb_end": round(b.in_flight * frame_bytes / 2**20, 1) if frame_bytes else None,
    }
    cap = _cap(probes.get("capacity") or {})  # remote: one service alone, times the services each run starts
    raw_decode = (probes.get("decode") or {}).get("raw_decode_fps_all_sources")
    out["limits"] = {
        "capacity_alone_per_s": cap,
        "inferred_over_capacity_alone": _div(inferred_per_s, cap),
        "raw_decode_per_s": raw_decode,
        "noop_inferred_over_raw_decode": _div(inferred_per_s, raw_decode) if inf.backend == "noop" else None,
        "extracted_over_raw_decode": _div(extracted / win, raw_decode),
        **limit_figures(probes, cap, demand_fps(cfg), inferred_per_s, os.cpu_count() or 1),
    }
    out["decoding"] = decoding_figures(s.snap, e.snap, inferred, win)
    out["conservation"] = {"samples": len(raw["samples"]), "violations": raw["conservation_errors"],
                           "ok": not raw["conservation_errors"]}
    out["retention"] = {
        "preexisting": sum(raw.get("preexisting_per_task", {}).values()) or 0,
        "prepopulate_sec": raw.get("prepopulate_sec"),
        "initial_indexed": raw["initial_indexed"],
        "ready_after_start_sec": raw["retention_ready_sec"],
        "cpu_ms_per_written": out["cpu"]["retention_ms_per_written"],
        "writer_cpu_ms_per_written": out["cpu"]["writer_ms_per_written"],
        "retention_cpu_whole_run_sec": (raw["cpu_whole_run"] or {}).get("retention"),
    }
    out["lifecycle"] = {
        "start_sec": raw["start_sec"], "drained_frames": raw["drained_frames"], "drain_sec": raw["drain_sec"],
        "stop_sec": raw["stop_sec"], "threads_before": raw["threads_before"],
        "threads_after_stop": raw["threads_after_stop"], "fds_before": raw["fds_before"],
        "fds_after_stop": raw["fds_after_stop"], "leftover_threads": raw["leftover_threads"],
        "restarts": dict(final.restarts) if final is not None else {},
    }
    out["timeseries"] = raw["samples"]
    return out


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(v, nd)


def build_report(sc: Scenario, *, path: str, quick: bool, order: str, probes: dict[str, Any],
                 runs: list[dict[str, Any]], machine_load: tuple[float, float, float], cfg: Config,
                 machine_load_end: tuple[float, float, float] | None = None,
                 warmup: float, duration: float) -> dict[str, Any]:
    b = sc.bench
    runs_by_label = {r["label"]: r for r in runs}
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "scenario": {
            "name": b.name, "path": path, "description": b.description, "mode": b.mode, "quick": quick,
            "warmup_sec": warmup,
            "duration_sec": duration,
            "cameras": len(cfg.enabled_tasks()),
            "demand_per_s": round(demand_fps(cfg), 2),
            "inference": msgspec.to_builtins(b.inference),
            "policy": sc.framewatch.backpressure.policy,
            "high_watermark": sc.framewatch.backpressure.high_watermark,
            "low_watermark": sc.framewatch.backpressure.low_watermark,
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
                    "load_avg_at_start": [round(x, 2) for x in machine_load],
                    "load_avg_at_end": [round(x, 2) for x in machine_load_end] if machine_load_end else None},
        "order": order,
        "probes": probes,
        "runs": runs_by_label,
        "comparison": {},
        "checks": {},
        "plots": None,
    }
    fw = runs_by_label.get("framewatch")
    base = runs_by_label.get("baseline")
    if fw and base and fw.get("rates") and base.get("rates"):
        report["comparison"] = {
            "inferred_per_s": [fw["rates"]["inferred_per_s"], base["rates"]["inferred_per_s"]],
            "extracted_per_s": [fw["rates"]["extracted_per_s"], base["rates"]["extracted_per_s"]],
            "frame_age_p95_ms": [fw["frame_age_ms"]["p95"], base["frame_age_ms"]["p95"]],
            "frame_age_max_ms": [fw["frame_age_ms"]["max"], base["frame_age_ms"]["max"]],
            "peak_queue": [fw["queue"]["peak_load"], base["queue"]["peak_load"]],
            "rss_slope_mb_per_h": [fw["process"]["rss_slope_mb_per_h"], base["process"]["rss_slope_mb_per_h"]],
            "cpu_cores_used": [fw["cpu"]["cores_used"], base["cpu"]["cores_used"]],
            "note": "pairs are [framewatch, baseline]",
        }
    if b.mode == "retention" and len(runs) >= 2:
        report["comparison"] = {
            "retention_cpu_ms_per_written": {r["label"]: (r.get("retention") or {}).get("cpu_ms_per_written") for r in runs},
            "writer_cpu_ms_per_written": {r["label"]: (r.get("retention") or {}).get("writer_cpu_ms_per_written") for r in runs},
            "retention_ready_after_start_sec": {r["label"]: (r.get("retention") or {}).get("ready_after_start_sec") for r in runs},
        }
    report["checks"] = checks(runs)
    return report


def checks(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Invariants of the bounded runs (every run except the unbounded baseline); ``ok`` is their conjunction."""
    out: dict[str, Any] = {}
    ok = True
    for r in runs:
        c: dict[str, Any] = {"conservation": bool(r["conservation"] and r["conservation"]["ok"])}
        if r["policy"] != "unbounded":
            q = r.get("queue") or {}
            st = r.get("storage") or {}
            c["peak_queue_within_high_watermark"] = (q.get("peak_load") is not None
                                                     and q["peak_load"] <= q["high_watermark_total"])
            c["storage_bound"] = not st.get("bound_violations")
            c["measured"] = r.get("measured_sec") is not None and not r.get("ended_early")
        c["threads_back_after_stop"] = bool(r.get("lifecycle")) and (
            r["lifecycle"]["threads_after_stop"] <= r["lifecycle"]["threads_before"])
        out[r["label"]] = c
        ok = ok and all(c.values())
    out["ok"] = ok
    return out


# --- terminal table -------------------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != 0 and abs(v) < 0.01:
            return f"{v:.4f}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) < 100 else f"{v:.1f}"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items()) or "-"
    return str(v)


def _get(r: dict[str, Any], path: str) -> Any:
    cur: Any = r
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


ROWS = [
    ("measured s", "measured_sec"),
    ("wanted /s (cams x 1000/interval)", "rates.demand_per_s"),
    ("extracted /s (sent to inference)", "rates.extracted_per_s"),
    ("inferred /s", "rates.inferred_per_s"),
    ("extracted : inferred", "rates.extracted_to_inferred"),
    ("skipped (fraction of samples)", "counts.skipped_fraction"),
    ("failed", "counts.failed"),
    ("stored: written in window", "storage.written"),
    ("stored: written per inferred", "storage.written_per_inferred"),
    ("stored: objects at end (index)", "storage.stored_end"),
    ("stored: max files/task after stop", "storage.max_files_per_task_after_stop"),
    ("inference busy (fraction)", "utilisation.busy"),
    ("inferred / theoretical capacity", "utilisation.inferred_over_theoretical"),
    ("inferred / capacity alone", "limits.inferred_over_capacity_alone"),
    ("noop inferred / raw decode", "limits.noop_inferred_over_raw_decode"),
    ("limit /s: min(detector, box after decode)", "limits.limit_per_s"),
    ("inferred / min(wanted, limit)", "limits.inferred_over_target"),
    ("inferred / min(wanted, limit, full decode)", "limits.inferred_over_full_decode_target"),
    ("CPU ms per inferred (process)", "cpu.cpu_ms_per_inferred"),
    ("decoded / inferred (framewatch's count)", "decoding.decoded_per_inferred"),
    ("decode mode (cameras)", "decoding.modes"),
    ("latency ms mean / p95", ("latency_ms.mean", "latency_ms.p95")),
    ("frame age ms p50", "frame_age_ms.p50"),
    ("frame age ms p95", "frame_age_ms.p95"),
    ("frame age ms max", "frame_age_ms.max"),
    ("Jain fairness (1 = equal)", "fairness.jain"),
    ("share min / max", ("fairness.min_share", "fairness.max_share")),
    ("peak queue (frames) / high wm", ("queue.peak_load", "queue.high_watermark_total")),
    ("queued at end (MB of frames)", ("queue.in_flight_end", "queue.backlog_mb_end")),
    ("CPU s extraction", "cpu.extraction_sec"),
    ("CPU s inference", "cpu.inference_sec"),
    ("CPU s rest (writer, retention...)", "cpu.rest_sec"),
    ("CPU cores used (process)", "cpu.cores_used"),
    ("extraction ms / sample", "cpu.extraction_ms_per_sample"),
    ("writer ms / written", "cpu.writer_ms_per_written"),
    ("retention ms / written", "cpu.retention_ms_per_written"),
    ("RSS MB start -> end", ("process.rss_mb_start", "process.rss_mb_end")),
    ("RSS slope MB/h", "process.rss_slope_mb_per_h"),
    ("threads start -> end", ("process.threads_start", "process.threads_end")),
    ("fds start -> end", ("process.fds_start", "process.fds_end")),
    ("threads before -> after stop", ("lifecycle.threads_before", "lifecycle.threads_after_stop")),
    ("conservation held (samples)", ("conservation.ok", "conservation.samples")),
]
#: Rows shown as "n/a" when empty (framewatch's sources may not report them) instead of being left out.
NA_PATHS = {"decoding.decoded_per_inferred", "decoding.modes"}
RETENTION_ROWS = [
    ("store objects before start", "retention.preexisting"),
    ("retention ready after start s", "retention.ready_after_start_sec"),
    ("retention CPU s, start to end", "retention.retention_cpu_whole_run_sec"),
]


def render_table(report: dict[str, Any]) -> str:
    runs = list(report["runs"].values())
    sc = report["scenario"]
    inf = sc["inference"]
    lines = []
    backend = inf["backend"]
    if backend == "emulated":
        backend = f"emulated {inf['distribution']} {inf['mean_ms']:g} ms"
    elif backend == "remote":
        backend = (f"remote: {inf['services']} {inf['detector']} service(s) x max_concurrency {inf['max_concurrency']},"
                   f" +{inf['latency_ms']:g} ms, mode {inf['mode']}")
    lines.append(f"scenario {sc['name'] or sc['path']} ({'quick' if sc['quick'] else 'full'}, mode {sc['mode']}): "
                 f"{sc['cameras']} cameras, {_fmt(sc['demand_per_s'])} samples/s wanted, {backend}")
    lines.append(f"order: {report['order']}; warm-up {_fmt(sc['warmup_sec'])} s, measured {_fmt(sc['duration_sec'])} s each")
    m = report["machine"]
    lines.append(f"machine: {m['cpus']} CPUs, load average (1 min) {_fmt(m['load_avg_at_start'][0])} at start, "
                 f"{_fmt((m.get('load_avg_at_end') or [None])[0])} at end")
    d = report["probes"].get("decode") or {}
    c = report["probes"].get("capacity") or {}
    if d.get("decode_ms_per_frame") is not None:
        lines.append(f"alone: decode {d['decode_ms_per_frame']} ms/frame (grab {d['grab_ms']} + retrieve "
                     f"{d['retrieve_ms']}), {d['sources_at_once']} sources at once {d['raw_decode_fps_all_sources']} frames/s")
    if c.get("fps") is not None:
        lines.append(f"alone: inference backend {c['backend']} on {c['slots']} threads: {c['fps']} frames/s "
                     f"(mean {c['mean_ms']} ms, {c['frames']} frames)"
                     + (f"; x {c['services']} services" if c.get("services", 1) > 1 else ""))
    modes = d.get("modes") or {}
    if modes:
        lines.append(f"alone: PyAV, {d.get('sources_at_once') or '?'} streams at once, process CPU: " + "; ".join(
            f"{m} {_fmt(x.get('cores'))} cores ({_fmt(x.get('decoded_per_s'))} decoded/s, "
            f"{_fmt(x.get('packets_per_s'))} packets/s)" + (f" [{x['error']}]" if x.get("error") else "")
            for m, x in modes.items()))
    lim = next((r["limits"] for r in runs if r.get("limits")), None)
    if lim and lim.get("limit_per_s") is not None:
        after = (f"box after {lim['decode_needed_mode']} decoding ({lim['cpus']} - "
                 f"{_fmt(lim['decode_cores'][lim['decode_needed_mode']])} cores) / "
                 f"{_fmt(lim['detector_cpu_ms_per_frame'])} ms CPU per frame = "
                 f"{_fmt(lim['box_after_needed_decode_per_s'])}/s" if lim.get("box_after_needed_decode_per_s") else
                 "no decode probe")
        lines.append(f"limit: min(detector alone {_fmt(_cap(c))}/s, "
                     f"{after}) = {_fmt(lim['limit_per_s'])}/s ({lim['limit_basis']}); "
                     f"target min(wanted, limit) = {_fmt(lim['target_per_s'])}/s")
    labels = [r["label"] for r in runs]
    w0 = max(len(r[0]) for r in ROWS) + 2
    w = max(14, *(len(x) + 2 for x in labels))
    lines.append("")
    lines.append(f"{'':<{w0}}" + "".join(f"{x:>{w}}" for x in labels))
    for title, path in ROWS + (RETENTION_ROWS if sc["mode"] == "retention" else []):
        cells = []
        for r in runs:
            if isinstance(path, tuple):
                cells.append(" / ".join(_fmt(_get(r, p)) for p in path))
            elif path in NA_PATHS and not _get(r, path):
                cells.append("n/a")
            else:
                cells.append(_fmt(_get(r, path)))
        if all(x in ("-", "- / -") for x in cells):
            continue
        lines.append(f"{title:<{w0}}" + "".join(f"{x:>{w}}" for x in cells))
    for r in runs:
        if r.get("ended_early"):
            lines.append(f"note: {r['label']} ended early: {r['ended_early']}")
    chk = report["checks"]
    bad = [f"{lab}.{k}" for lab, v in chk.items() if isinstance(v, dict) for k, ok in v.items() if not ok]
    lines.append("checks: " + ("all invariants held" if chk.get("ok") else "FAILED: " + ", ".join(bad)))
    if report.get("plots"):
        lines.append(f"plots: {report['plots']}")
    return "\n".join(lines)
