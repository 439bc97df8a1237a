"""Measurements of the parts alone, in the same invocation as the runs, for the limit ratios.

- ``decode_probe``: the scenario's sources without framewatch, unpaced (as fast as they decode): first one source
  on one thread (cost of ``grab`` and ``retrieve`` per frame), then every camera's source at once, one thread each
  (the box's raw decode throughput for these sources).
- ``capacity_probe``: the inference backend without framewatch: ``slots`` threads, each with its own detector (made
  on that thread, as inference actors do), on frames from the first source.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from framewatch.actors.core.config import Config
from framewatch.actors.inference.detectors import Detector
from framewatch.actors.ingest.sources import SourceError, open_source


def _source(cfg: Config, url: str):  # type: ignore[no-untyped-def]
    fe = cfg.frame_extractor
    return open_source(url, open_timeout_ms=fe.open_timeout_ms, read_timeout_ms=fe.read_timeout_ms, loop=True,
                       realtime=False)


def sample_frames(cfg: Config, n: int) -> list[np.ndarray]:
    """``n`` decoded frames from the first enabled task's source (fewer if it fails)."""
    tasks = cfg.enabled_tasks()
    if not tasks or n <= 0:
        return []
    src = _source(cfg, tasks[0].rtsp_url)
    frames: list[np.ndarray] = []
    try:
        src.open()
        while len(frames) < n:
            src.grab()
            frames.append(src.retrieve())
    except SourceError:
        pass
    finally:
        src.close()
    return frames


def decode_probe(cfg: Config, seconds: float, stop: threading.Event | None = None) -> dict[str, Any]:
    tasks = cfg.enabled_tasks()
    out: dict[str, Any] = {"seconds": seconds, "url": tasks[0].rtsp_url if tasks else None, "error": None}
    if not tasks or seconds <= 0:
        out["error"] = "skipped"
        return out
    # One source alone.
    src = _source(cfg, tasks[0].rtsp_url)
    grab_s = retrieve_s = 0.0
    n = 0
    try:
        src.open()
        deadline = time.monotonic() + seconds / 2
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            src.grab()
            t1 = time.perf_counter()
            image = src.retrieve()
            t2 = time.perf_counter()
            grab_s += t1 - t0
            retrieve_s += t2 - t1
            n += 1
        out["frame_shape"] = list(image.shape) if n else None
    except SourceError as exc:
        out["error"] = str(exc)
    finally:
        src.close()
    out["frames_one_source"] = n
    out["grab_ms"] = round(grab_s / n * 1000, 3) if n else None
    out["retrieve_ms"] = round(retrieve_s / n * 1000, 3) if n else None
    out["decode_ms_per_frame"] = round((grab_s + retrieve_s) / n * 1000, 3) if n else None
    out["one_source_fps"] = round(n / (grab_s + retrieve_s), 1) if n and grab_s + retrieve_s > 0 else None

    # Every camera's source at once.
    counts = [0] * len(tasks)
    errors: list[str] = []
    t_end = time.monotonic() + seconds / 2

    def worker(k: int, url: str) -> None:
        s = _source(cfg, url)
        try:
            s.open()
            while time.monotonic() < t_end and not (stop and stop.is_set()):
                s.grab()
                s.retrieve()
                counts[k] += 1
        except SourceError as exc:
            errors.append(str(exc))
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(k, t.rtsp_url), name=f"probe:decode:{k}") for k, t in enumerate(tasks)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = max(time.monotonic() - t0, 1e-9)
    out["sources_at_once"] = len(tasks)
    out["raw_decode_fps_all_sources"] = round(sum(counts) / elapsed, 1)
    if errors and not out["error"]:
        out["error"] = errors[0]
    return out


def capacity_probe(factory: Callable[[], Detector], frames: list[np.ndarray], n_frames: int, n_slots: int,
                   name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": name, "frames": 0, "slots": n_slots, "fps": None, "mean_ms": None, "error": None}
    if not frames or n_frames <= 0:
        out["error"] = "skipped"
        return out
    per = [n_frames // n_slots + (1 if k < n_frames % n_slots else 0) for k in range(n_slots)]
    lat: list[float] = []
    errors: list[str] = []
    ready = threading.Barrier(n_slots + 1)

    def worker(k: int) -> None:
        try:
            det = factory()
        except Exception as exc:  # a missing model file...
            errors.append(f"{type(exc).__name__}: {exc}")
            ready.wait()
            return
        ready.wait()
        try:
            for j in range(per[k]):
                t0 = time.perf_counter()
                det.detect(frames[(k + j * n_slots) % len(frames)])
                lat.append(time.perf_counter() - t0)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            det.close()

    threads = [threading.Thread(target=worker, args=(k,), name=f"probe:infer:{k}") for k in range(n_slots)]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    elapsed = max(time.monotonic() - t0, 1e-9)
    out["frames"] = len(lat)
    out["fps"] = round(len(lat) / elapsed, 2) if lat else None
    out["mean_ms"] = round(sum(lat) / len(lat) * 1000, 2) if lat else None
    out["error"] = errors[0] if errors else None
    return out
