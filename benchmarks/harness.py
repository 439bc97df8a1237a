"""The harness: probes, then each run of a scenario one after the other, then the report, table and plots.

Runs are sequential on the same machine in one process (framewatch, then the baseline, by default): running them at
the same moment would make each one's CPU the other's noise, and their threads share names, so per-component CPU
could not be told apart. The probes (decode alone, inference backend alone) run first, in the same invocation.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import msgspec

from .detectors import backend_factory
from .measure import run_variant
from .plots import plot_report
from .probes import capacity_probe, decode_probe, sample_frames
from .progress import Progress
from .report import build_report, render_table, summarize_run
from .scenario import Scenario, durations, run_config, slots, variants


class Result(msgspec.Struct, frozen=True):
    report: dict[str, Any]
    table: str
    out_dir: str
    json_path: str


def _setup_log(out_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(out_dir / "bench.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


def run_scenario(
    sc: Scenario,
    *,
    path: str = "",
    quick: bool = False,
    out_dir: str | Path | None = None,
    progress: Progress | None = None,
    plots: bool = True,
    keep_store: bool = False,
) -> Result:
    """Run every variant of ``sc``; write ``report.json``, ``report.txt`` and ``plots.png`` under ``out_dir``."""
    progress = progress or Progress()
    name = sc.bench.name or Path(path).stem or "scenario"
    out = Path(out_dir) if out_dir else Path("benchmarks/out") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    handler = _setup_log(out)
    # Lower the framewatch loggers' output on the terminal: everything goes to bench.log.
    try:
        warmup, duration = durations(sc, quick)
        vs = variants(sc)
        probe_cfg = run_config(sc, vs[0], out / "probe").config
        load = os.getloadavg()
        probes: dict[str, Any] = {}
        b = sc.bench
        progress.note(f"{name}: probing decode alone ({b.decode_probe_sec:g} s) ...")
        probes["decode"] = decode_probe(probe_cfg, b.decode_probe_sec)
        n = b.capacity_probe_frames
        progress.note(f"{name}: probing the {b.inference.backend} backend alone ({n} frames on {slots(sc)} threads) ...")
        frames = sample_frames(probe_cfg, min(n, 16))
        probes["capacity"] = capacity_probe(backend_factory(b.inference, probe_cfg.detector), frames, n, slots(sc),
                                            b.inference.backend)
        runs = []
        for v in vs:
            progress.note(f"{name}: run {v.label} (policy {v.policy}): warm-up {warmup:g} s, measure {duration:g} s")
            raw = run_variant(sc, v, out / "runs" / v.label.replace("=", "-"), quick=quick, progress=progress,
                              keep_store=keep_store or (b.mode == "retention" and b.retention.keep_store))
            runs.append(summarize_run(raw, sc, probes))
        order = "sequential: " + ", then ".join(v.label for v in vs) + " (one process, same machine)"
        report = build_report(sc, path=path, quick=quick, order=order, probes=probes, runs=runs,
                              machine_load=load, cfg=probe_cfg, warmup=warmup, duration=duration)
        if plots:
            report["plots"] = plot_report(report, out / "plots.png")
        table = render_table(report)
        json_path = out / "report.json"
        json_path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=1))
        (out / "report.txt").write_text(table + "\n")
        return Result(report=report, table=table, out_dir=str(out), json_path=str(json_path))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
