"""One run of framewatch under load, measured from outside: ``run_variant`` starts ``Running``, samples it, stops it.

Every ``sample_interval_sec`` the sampler (the harness's main thread) takes ``fw.snapshot()``, the retention actor's
statistics, the process's RSS/threads/fds and psutil's CPU times of every thread, mapped to components by thread
name (``extractor:<id>``, ``inference:<slot>``, ``writer``, ``retention``, ``alerts``, ``supervisor``, ``timers``).
The measured window starts after the warm-up; rates are counter deltas over it, never derived from latencies.

Frame age at inference: the Snapshot carries p50/p95 over the last 2,048 frames only, so the harness also records
every inference (time, task, age, latency) through the metrics' public hook ``Metrics.observe_inferred``, on the
running system's metrics (``Running.system.metrics``). The observer adds one list append per inferred frame.

After the window, the detectors switch to zero latency (``Drain``) until the inference queue is empty, then the
system is stopped in order; the harness waits for the run's threads to end before the next run starts.

Backend ``remote``: once framewatch listens, the run starts its reference services (``services.ReferenceServices``)
registered with it and waits until each holds its slots, before the warm-up. After the window the services are
stopped (SIGTERM: they unregister; frames still queued for them find no other slot and count failed, after the
window), then framewatch.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from array import array
from pathlib import Path
from typing import Any

import psutil
import pykka
from framewatch.actors.core.config import Config, Loaded
from framewatch.actors.core.messages import RetentionStatsRequest
from framewatch.actors.core.metrics import Snapshot
from framewatch.actors.storage.store import frame_key, task_dir
from framewatch.actors.system import Running

from .detectors import Drain, run_factory
from .progress import Progress
from .scenario import Scenario, Variant, durations, high_watermark_total, run_config, slots
from .services import ReferenceServices

log = logging.getLogger("framewatch.bench")

COMPONENTS = ("extraction", "inference", "writer", "retention", "alerts", "supervisor", "timers", "harness", "other")
_NOT_INFERENCE_MAILBOXES = {"writer", "retention", "alerts"}


def component(name: str) -> str:
    head = name.split(":", 1)[0]
    if head == "extractor":
        return "extraction"
    if head == "inference":
        return "inference"
    if name in ("writer", "retention", "alerts", "supervisor", "timers"):
        return name
    if name == "MainThread" or head == "probe" or name.startswith("bench"):
        return "harness"
    return "other"  # native threads (OpenCV, FFmpeg) and unnamed Python threads


def thread_cpu(proc: psutil.Process) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every thread of the process, with its Python name when it has one."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    return {t.id: (names.get(t.id, "native"), t.user_time + t.system_time) for t in proc.threads()}


def cpu_delta(start: dict[int, tuple[str, float]], end: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per component between two ``thread_cpu`` readings (threads started in between count from 0;
    threads that ended in between are lost: restarts are rare and reported separately)."""
    out = dict.fromkeys(COMPONENTS, 0.0)
    for tid, (name, cpu) in end.items():
        before = start.get(tid)
        base = before[1] if before is not None and before[0] == name else 0.0
        out[component(name)] += max(cpu - base, 0.0)
    return {k: round(v, 3) for k, v in out.items()}


def conservation_errors(snap: Snapshot) -> list[str]:
    errs = []
    rows = [("totals", snap.totals)] + list(snap.cameras.items())
    for name, c in rows:
        if c.sampled != c.skipped + c.inferred + c.failed + c.in_flight:
            errs.append(f"{name}: sampled {c.sampled} != skipped {c.skipped} + inferred {c.inferred} + "
                        f"failed {c.failed} + in_flight {c.in_flight}")
        if c.inferred != c.with_detections + c.without_detections:
            errs.append(f"{name}: inferred {c.inferred} != with {c.with_detections} + without {c.without_detections}")
    return errs


def storage_bound_errors(cfg: Config, snap: Snapshot) -> list[str]:
    """Objects indexed per task (frames + alert images) within the task's bounds (0 = unlimited: not checked)."""
    errs = []
    image_max = cfg.alerts.image_max_count
    for task in cfg.enabled_tasks():
        cam = snap.cameras.get(task.id)
        mfc = cfg.task_max_frame_count(task)
        if cam is None or mfc == 0 or (cam.alerts and image_max == 0):
            continue
        bound = mfc + (image_max if cam.alerts else 0)
        if cam.stored > bound:
            errs.append(f"{task.id}: {cam.stored} objects stored > bound {bound}")
    return errs


def prepopulate(cfg: Config, total: int) -> dict[str, int]:
    """Write ``total`` empty objects in framewatch's key layout, spread over the tasks, all older than now."""
    tasks = cfg.enabled_tasks()
    root = Path(cfg.frame_extractor.output_dir)
    per_task: dict[str, int] = {}
    base_wall = time.time() - 86_400
    for k, task in enumerate(tasks):
        n = total // len(tasks) + (1 if k < total % len(tasks) else 0)
        prefix = task_dir(task.task_type, task.id, task.output_path)
        (root / prefix).mkdir(parents=True, exist_ok=True)
        for seq in range(n):
            key = frame_key(prefix, base_wall + seq * 0.001, seq)
            fd = os.open(root / key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.close(fd)
        per_task[task.id] = n
    return per_task


def count_files(cfg: Config) -> dict[str, int] | None:
    """Frames on disk per task (local store only)."""
    if cfg.frame_extractor.store != "local":
        return None
    root = Path(cfg.frame_extractor.output_dir)
    out = {}
    for task in cfg.enabled_tasks():
        d = root / task_dir(task.task_type, task.id, task.output_path)
        try:
            out[task.id] = sum(1 for e in os.scandir(d) if e.is_file() and not e.name.startswith(".tmp-"))
        except OSError:
            out[task.id] = 0
    return out


class _Marks:
    """Everything read at one instant: the window's start or end."""

    def __init__(self, t: float, snap: Snapshot, cpu: dict[int, tuple[str, float]], proc_cpu: float, obs: int,
                 written: int, rss: float, threads: int, fds: int) -> None:
        self.t, self.snap, self.cpu, self.proc_cpu, self.obs = t, snap, cpu, proc_cpu, obs
        self.written, self.rss, self.threads, self.fds = written, rss, threads, fds


def _written(stats: Any, initial_indexed: int) -> int:
    """Objects the writer stored since start: what retention indexes now, plus what it deleted, minus what it found."""
    if stats is None:
        return 0
    return sum(stats.indexed.values()) + stats.deleted - initial_indexed


def _slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx <= 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx * 3600


def run_variant(
    sc: Scenario,
    variant: Variant,
    run_dir: Path,
    *,
    quick: bool,
    progress: Progress,
    keep_store: bool = False,
) -> dict[str, Any]:
    """Run one variant, return its raw measurements (``report.summarize_run`` turns them into the report)."""
    bench = sc.bench
    warmup, duration = durations(sc, quick)
    n_slots = slots(sc)
    run_dir.mkdir(parents=True, exist_ok=True)
    loaded: Loaded = run_config(sc, variant, run_dir)
    cfg = loaded.config
    proc = psutil.Process()
    raw: dict[str, Any] = {"label": variant.label, "policy": variant.policy, "run_dir": str(run_dir),
                           "notices": loaded.notices, "slots": n_slots, "warmup_sec": warmup, "duration_sec": duration,
                           "high_watermark_total": high_watermark_total(cfg, n_slots), "config": cfg}
    if variant.preexisting:
        progress.note(f"{variant.label}: writing {variant.preexisting} objects into the store ...")
        t0 = time.monotonic()
        raw["preexisting_per_task"] = prepopulate(cfg, variant.preexisting)
        raw["prepopulate_sec"] = round(time.monotonic() - t0, 2)

    drain = Drain()
    records = Records()  # (monotonic, task, age ms, latency ms) per inferred frame
    raw["threads_before"] = proc.num_threads()
    raw["fds_before"] = proc.num_fds()
    rss_before = proc.memory_info().rss / 2**20
    cpu_before_start = thread_cpu(proc)
    t_start = time.monotonic()
    fw = Running(loaded, detector_factory=run_factory(bench.inference, cfg.detector, drain))
    services: ReferenceServices | None = None
    samples: list[dict[str, Any]] = []
    conservation: list[str] = []
    bound_errs: list[str] = []
    ended_early: str | None = None
    start_marks: _Marks | None = None
    end_marks: _Marks | None = None
    try:
        raw["start_sec"] = round(time.monotonic() - t_start, 3)
        if bench.inference.backend == "remote":
            progress.note(f"{variant.label}: starting {bench.inference.services} reference service(s) ...")
            t0 = time.monotonic()
            services = ReferenceServices.of(bench.inference, fw.http_url, sorted({t.task_type for t in cfg.enabled_tasks()}),
                                            cfg.http.token).start()
            services.wait_registered(lambda: {k: v.slots for k, v in fw.snapshot().services.items()})
            raw["services_ready_sec"] = round(time.monotonic() - t0, 3)
        fw.system.metrics.observe_inferred(
            lambda task_id, age_ms, latency_ms: records.append((time.monotonic(), task_id, age_ms, latency_ms)))
        retention = fw.system.retention
        pool = fw.system.pool

        def retention_stats() -> Any:
            try:
                return retention.ask(RetentionStatsRequest(), timeout=5)
            except (pykka.Timeout, pykka.ActorDeadError):
                return None

        t0 = time.monotonic()
        first = retention_stats()  # answered once retention's start-up index rebuild (one listing) is done
        raw["retention_ready_sec"] = round(time.monotonic() - t_start, 3)
        raw["retention_rebuild_wait_sec"] = round(time.monotonic() - t0, 3)
        initial_indexed = (sum(first.indexed.values()) + first.deleted) if first is not None else 0
        raw["initial_indexed"] = initial_indexed

        t_origin = time.monotonic()
        total = warmup + duration
        nxt = t_origin
        while True:
            nxt += bench.sample_interval_sec
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.monotonic()
            t = now - t_origin
            snap = fw.snapshot()
            rstats = retention_stats()
            with proc.oneshot():
                rss = proc.memory_info().rss / 2**20
                n_threads = proc.num_threads()
                n_fds = proc.num_fds()
                pcpu = sum(proc.cpu_times()[:2])
            errs = conservation_errors(snap)
            if errs and len(conservation) < 20:
                conservation.extend(f"t={t:.1f}s {e}" for e in errs)
            berrs = storage_bound_errors(cfg, snap)
            if berrs and len(bound_errs) < 20:
                bound_errs.extend(f"t={t:.1f}s {e}" for e in berrs)
            written = _written(rstats, initial_indexed)
            inbox = {k: v for k, v in snap.mailboxes.items() if k not in _NOT_INFERENCE_MAILBOXES}
            samples.append({
                "t": round(t, 3),
                "phase": "warmup" if t < warmup else "measure",
                "sampled": snap.totals.sampled, "skipped": snap.totals.skipped,
                "extracted": snap.totals.sampled - snap.totals.skipped,
                "inferred": snap.totals.inferred, "failed": snap.totals.failed, "in_flight": snap.totals.in_flight,
                "stored": snap.totals.stored, "written": written, "store_failed": snap.totals.store_failed,
                "inference_mailboxes": sum(inbox.values()),
                "writer_mailbox": snap.mailboxes.get("writer", 0),
                "retention_mailbox": snap.mailboxes.get("retention", 0),
                "peak_load": snap.backpressure.peak_load,
                "busy": snap.inference.busy,
                "rss_mb": round(rss, 1), "threads": n_threads, "fds": n_fds,
                "cameras": {k: [c.sampled, c.skipped, c.inferred] for k, c in snap.cameras.items()},
                "conservation_ok": not errs,
            })
            if start_marks is None and t >= warmup:
                start_marks = _Marks(now, snap, thread_cpu(proc), pcpu, len(records), written, rss, n_threads, n_fds)
                raw["rss_mb_window_start"] = round(rss, 1)
            label = f"{variant.label}" + (" warm-up" if t < warmup else "")
            progress.update(label, t, total, f"extract {_rate(samples, 'extracted'):.1f}/s infer "
                            f"{_rate(samples, 'inferred'):.1f}/s queue {snap.totals.in_flight}")
            if start_marks is not None and rss - rss_before > bench.max_rss_growth_mb:
                ended_early = (f"RSS grew by {rss - rss_before:.0f} MB (> max_rss_growth_mb = "
                               f"{bench.max_rss_growth_mb:g}) after {t:.1f} s; {snap.totals.in_flight} frames queued")
            elif start_marks is None and rss - rss_before > bench.max_rss_growth_mb:
                ended_early = f"RSS grew by {rss - rss_before:.0f} MB during the warm-up; nothing measured"
            if fw.escalated.is_set():
                ended_early = f"escalated: {fw.escalation}"
            if t >= total or ended_early:
                if start_marks is not None:
                    end_marks = _Marks(now, snap, thread_cpu(proc), pcpu, len(records), written, rss, n_threads, n_fds)
                break
        progress.end()
        if ended_early:
            progress.note(f"{variant.label}: ended early: {ended_early}")
        # Drain what is still queued at zero latency, so stopping takes seconds, not minutes.
        t_drain = time.monotonic()
        queued = pool.load()
        if services is not None:
            services.stop()
        drain.event.set()
        while pool.load() > 0 and time.monotonic() - t_drain < bench.drain_timeout_sec:
            time.sleep(0.05)
        raw["drained_frames"] = queued
        raw["drain_sec"] = round(time.monotonic() - t_drain, 2)
    finally:
        t_stop = time.monotonic()
        try:
            if services is not None:
                services.stop()
            fw.stop()
        finally:
            drain.event.set()
        raw["stop_sec"] = round(time.monotonic() - t_stop, 2)
    # From before start to the end of the window (threads still alive): includes start-up, e.g. retention's listing.
    raw["cpu_whole_run"] = cpu_delta(cpu_before_start, end_marks.cpu) if end_marks is not None else None
    # Everything the run started must end: wait (bounded) for the thread count to come back.
    deadline = time.monotonic() + 30
    while proc.num_threads() > raw["threads_before"] and time.monotonic() < deadline:
        time.sleep(0.1)
    raw["threads_after_stop"] = proc.num_threads()
    raw["fds_after_stop"] = proc.num_fds()
    raw["leftover_threads"] = sorted(t.name for t in threading.enumerate() if t.name != "MainThread"
                                     and not t.daemon)
    final = fw.final
    raw["final"] = final
    raw["files_on_disk"] = count_files(cfg)
    raw["frame_bytes"] = drain.frame_bytes
    raw["samples"] = samples
    raw["records"] = records
    raw["start"] = start_marks
    raw["end"] = end_marks
    raw["ended_early"] = ended_early
    raw["conservation_errors"] = conservation
    raw["storage_bound_errors"] = bound_errs
    raw["rss_before_mb"] = round(rss_before, 1)
    if not keep_store and cfg.frame_extractor.store == "local":
        shutil.rmtree(cfg.frame_extractor.output_dir, ignore_errors=True)
    return raw


def _rate(samples: list[dict[str, Any]], key: str, span: int = 4) -> float:
    if len(samples) < 2:
        return 0.0
    a, b = samples[max(0, len(samples) - 1 - span)], samples[-1]
    dt = b["t"] - a["t"]
    return (b[key] - a[key]) / dt if dt > 0 else 0.0


class Records:
    """Per-frame records kept as packed arrays (28 bytes a frame instead of ~150 for a tuple), because they live in
    the measured process: a soak's RSS slope should be framewatch's, not the harness's bookkeeping."""

    def __init__(self) -> None:
        self._t, self._age, self._lat = array("d"), array("d"), array("d")
        self._task = array("I")
        self._tasks: list[str] = []
        self._index: dict[str, int] = {}

    def append(self, rec: tuple[float, str, float, float]) -> None:
        t, task, age, lat = rec
        i = self._index.get(task)
        if i is None:
            i = self._index[task] = len(self._tasks)
            self._tasks.append(task)
        self._t.append(t)
        self._task.append(i)
        self._age.append(age)
        self._lat.append(lat)

    def __len__(self) -> int:
        return len(self._t)

    def __getitem__(self, window: slice) -> list[tuple[float, str, float, float]]:
        names = self._tasks
        return list(zip(self._t[window], (names[i] for i in self._task[window]), self._age[window],
                        self._lat[window], strict=True))


def window_records(raw: dict[str, Any]) -> list[tuple[float, str, float, float]]:
    s, e = raw["start"], raw["end"]
    if s is None or e is None:
        return []
    return raw["records"][s.obs:e.obs]


def slope_points(raw: dict[str, Any], key: str) -> list[tuple[float, float]]:
    return [(x["t"], x[key]) for x in raw["samples"] if x["phase"] == "measure"]


slope_per_hour = _slope_per_hour
