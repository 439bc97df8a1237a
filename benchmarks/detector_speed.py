"""The built-in SSDLite detector's speed per runtime (cv2.dnn vs OpenVINO) through the inference actors' call pattern.

``--threads`` threads (default 2: ``detector.actors``' default) each build their own detector with
``build_detector`` (as each inference actor does on its thread) and call ``detect`` one frame at a time on frames of
``actors/assets/vtest_5s.mp4`` (768x576, and resized to the other ``--sizes``). Reports, per runtime and size, the
median over ``--repeat`` runs (runtimes interleaved, so drift on a shared box hits both) of frames/s, the process's
CPU in cores over the window, and the per-call latency (p50, p95).

Run: ``.venv/bin/python -m benchmarks.detector_speed [--seconds 10] [--threads 2] [--repeat 3] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Sequence

import cv2
import numpy as np
from framewatch.actors.core.config import DetectorConf, resolve_asset
from framewatch.actors.inference.detectors import build_detector

WARMUP_CALLS = 3


def clip_frames(size: tuple[int, int] | None, count: int = 50) -> list[np.ndarray]:
    """The clip's first ``count`` frames (BGR), resized to ``size`` (width, height) unless None."""
    cap = cv2.VideoCapture(resolve_asset("asset:vtest_5s.mp4"))
    frames: list[np.ndarray] = []
    try:
        while len(frames) < count:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame if size is None or frame.shape[1::-1] == size else cv2.resize(frame, size))
    finally:
        cap.release()
    return frames


def run(conf: DetectorConf, frames: list[np.ndarray], threads: int, seconds: float) -> dict[str, float | str]:
    """``threads`` threads, each with its own detector, calling ``detect`` for ``seconds`` after a warm-up."""
    ready = threading.Barrier(threads + 1)
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    names: list[str] = [""] * threads

    def work(k: int) -> None:
        detector = build_detector(conf)
        names[k] = detector.name
        try:
            for i in range(WARMUP_CALLS):
                detector.detect(frames[i % len(frames)])
            ready.wait()
            i = k * 7  # the threads start on different frames
            while not stop.is_set():
                t0 = time.perf_counter()
                detector.detect(frames[i % len(frames)])
                latencies[k].append(time.perf_counter() - t0)
                i += 1
        finally:
            detector.close()

    workers = [threading.Thread(target=work, args=(k,), name=f"detect-{k}") for k in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait(timeout=120)
    wall0, cpu0 = time.perf_counter(), time.process_time()  # process_time: every thread of the process
    time.sleep(seconds)
    stop.set()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0  # read before close() frees anything
    for worker in workers:
        worker.join(timeout=60)
    calls = sorted(t for per_thread in latencies for t in per_thread)
    return {
        "detector": names[0],
        "frames_per_s": round(len(calls) / wall, 1),
        "cpu_cores": round(cpu / wall, 2),
        "p50_ms": round(1000 * calls[len(calls) // 2], 1) if calls else float("nan"),
        "p95_ms": round(1000 * calls[int(len(calls) * 0.95)], 1) if calls else float("nan"),
    }


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.detector_speed", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="measured window per run")
    p.add_argument("--threads", type=int, default=2, help="concurrent callers, like detector.actors")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--runtimes", default="opencv,openvino")
    p.add_argument("--sizes", default="768x576,1280x720", help="frame sizes, WIDTHxHEIGHT")
    p.add_argument("--streams", type=int, default=0, help="detector.openvino_streams (0: one per thread)")
    p.add_argument("--json", action="store_true", help="one JSON object per run on stdout instead of the table")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))

    results: dict[tuple[str, str], list[dict[str, float | str]]] = {}
    for size_text in args.sizes.split(","):
        frames = clip_frames(parse_size(size_text))
        for _ in range(args.repeat):
            for runtime in args.runtimes.split(","):
                conf = DetectorConf(runtime=runtime,  # type: ignore[arg-type]  (checked by DetectorConf)
                                    actors=args.threads, openvino_streams=args.streams)
                figures = run(conf, frames, args.threads, args.seconds)
                results.setdefault((size_text, runtime), []).append(figures)
                if args.json:
                    print(json.dumps({"size": size_text, "runtime": runtime, **figures}), flush=True)
    if not args.json:
        print(f"{args.threads} threads calling detect(), median of {args.repeat} x {args.seconds:g} s")
        print(f"{'size':10} {'detector':24} {'frames/s':>9} {'cpu cores':>9} {'p50 ms':>7} {'p95 ms':>7}  "
              "runs (frames/s)")
        for (size_text, _), runs in results.items():
            med = {key: statistics.median(float(r[key]) for r in runs)
                   for key in ("frames_per_s", "cpu_cores", "p50_ms", "p95_ms")}
            print(f"{size_text:10} {runs[0]['detector']:24} {med['frames_per_s']:9.1f} {med['cpu_cores']:9.2f} "
                  f"{med['p50_ms']:7.1f} {med['p95_ms']:7.1f}  {[r['frames_per_s'] for r in runs]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
