"""The harness: probes, then each run of a scenario one after the other, then the report, table and plots.

Runs are sequential on the same machine in one process (framewatch, then the baseline, by default): running them at
the same moment would make each one's CPU the other's noise, and their threads share names, so per-component CPU
could not be told apart. The probes (decode alone, inference backend alone) run first, in the same invocation.

Cameras ``rtsp-test://MOUNT``: the RTSP test camera (``rtsp_camera.RtspServer``) is started before the probes with one
mount per camera, serving the clip ``[bench.cameras] rtsp_*`` declares (``scenario.rtsp_test_clip``), and stopped after
the runs. Backend ``remote``: the capacity probe is one reference service alone
(``services.one_service_alone``); each run starts its own services (``measure.run_variant``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from .detectors import backend_factory
from .measure import run_variant
from .plots import plot_report
from .probes import capacity_probe, decode_probe, sample_frames, stream_decode_probe
from .progress import Progress
from .report import build_report, render_table, summarize_run
from .scenario import (
    Scenario,
    SetupError,
    durations,
    rtsp_test_clip,
    rtsp_test_mounts,
    run_config,
    slots,
    variants,
    with_rtsp_test_server,
)
from .services import one_service_alone


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


@contextlib.contextmanager
def _rtsp_test_camera(sc: Scenario, progress: Progress) -> Iterator[Scenario]:
    """Serve the scenario's ``rtsp-test://`` cameras, if any; yields the scenario with their real URLs."""
    mounts = rtsp_test_mounts(sc)
    if not mounts:
        yield sc
        return
    from .rtsp_camera import RtspServer, RtspServerError, make_h264_clip, rtsp_unavailable

    reason = rtsp_unavailable()
    if reason is not None:
        raise SetupError(f"the scenario's cameras are rtsp-test:// but the RTSP test camera cannot run: {reason}")
    clip = rtsp_test_clip(sc)
    progress.note(f"starting the RTSP test camera ({len(mounts)} mount(s), clip {clip.suffix() or 'default'}) ...")
    with tempfile.TemporaryDirectory(prefix="framewatch-rtsp-") as tmp:
        try:
            server = RtspServer(make_h264_clip(Path(tmp), clip=clip), mount=mounts, fps=clip.served_fps)
            server.start()
        except RtspServerError as exc:
            raise SetupError(f"the RTSP test camera did not start: {exc}") from None
        try:
            yield with_rtsp_test_server(sc, f"rtsp://127.0.0.1:{server.port}")
        finally:
            server.stop()


def _capacity_probe(sc: Scenario, probe_cfg: Any) -> dict[str, Any]:
    """The inference backend alone; for ``remote``, one reference service alone (``services`` says how many each run
    starts: the report's capacity is this figure times that)."""
    b = sc.bench
    inf = b.inference
    frames = sample_frames(probe_cfg, min(b.capacity_probe_frames, 16))
    if inf.backend != "remote":
        return capacity_probe(backend_factory(inf, probe_cfg.detector), frames, b.capacity_probe_frames, slots(sc),
                              inf.backend)
    if not frames or b.capacity_probe_frames <= 0:  # nothing to send: skip without starting a service
        return capacity_probe(backend_factory(inf, probe_cfg.detector), frames, 0, 1, inf.backend)
    task_type = probe_cfg.enabled_tasks()[0].task_type
    with one_service_alone(inf, task_type, probe_cfg.http.token) as factory:
        out = capacity_probe(factory, frames, b.capacity_probe_frames, inf.max_concurrency, "remote (one service)")
    out["services"] = inf.services
    return out


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
    try:
        with _rtsp_test_camera(sc, progress) as resolved:
            return _run(resolved, name=name, path=path, quick=quick, out=out, progress=progress, plots=plots,
                        keep_store=keep_store)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _run(sc: Scenario, *, name: str, path: str, quick: bool, out: Path, progress: Progress, plots: bool,
         keep_store: bool) -> Result:
    """Probes, runs, report: ``sc`` has real camera URLs."""
    warmup, duration = durations(sc, quick)
    vs = variants(sc)
    probe_cfg = run_config(sc, vs[0], out / "probe").config
    load = os.getloadavg()
    probes: dict[str, Any] = {}
    b = sc.bench
    progress.note(f"{name}: probing decode alone ({b.decode_probe_sec:g} s) ...")
    probes["decode"] = decode_probe(probe_cfg, b.decode_probe_sec)
    probes["decode"]["modes"] = {}
    if b.decode_probe_modes and b.decode_probe_sec > 0:
        progress.note(f"{name}: probing PyAV decode alone, every camera at once: {', '.join(b.decode_probe_modes)} "
                      f"({b.decode_probe_sec:g} s each) ...")
        probes["decode"]["modes"] = {m: stream_decode_probe(probe_cfg, m, b.decode_probe_sec)
                                     for m in b.decode_probe_modes}
    progress.note(f"{name}: probing the {b.inference.backend} backend alone ({b.capacity_probe_frames} frames) ...")
    probes["capacity"] = _capacity_probe(sc, probe_cfg)
    runs = []
    for v in vs:
        progress.note(f"{name}: run {v.label} (policy {v.policy}): warm-up {warmup:g} s, measure {duration:g} s")
        raw = run_variant(sc, v, out / "runs" / v.label.replace("=", "-"), quick=quick, progress=progress,
                          keep_store=keep_store or (b.mode == "retention" and b.retention.keep_store))
        runs.append(summarize_run(raw, sc, probes))
    order = "sequential: " + ", then ".join(v.label for v in vs) + " (one process, same machine)"
    report = build_report(sc, path=path, quick=quick, order=order, probes=probes, runs=runs,
                          machine_load=load, machine_load_end=os.getloadavg(), cfg=probe_cfg, warmup=warmup, duration=duration)
    if plots:
        report["plots"] = plot_report(report, out / "plots.png")
    table = render_table(report)
    json_path = out / "report.json"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=1))
    (out / "report.txt").write_text(table + "\n")
    return Result(report=report, table=table, out_dir=str(out), json_path=str(json_path))
