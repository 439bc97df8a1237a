"""Remote algorithm services, measured with real processes: the old incident, and the HTTP path's cost per frame.

1. The incident: 14 synthetic cameras sampled every 200 ms (70 samples/s) against reference services totalling about
   8 frames/s (default: one service, ``--latency-ms 128``, max_concurrency 1). Reports frames stored vs inferred,
   the service's utilisation, p95 frame age and each camera's share of the frames inferred.
2. Overhead: one slot at full demand, the in-process noop detector vs a noop reference service (latency 0) in mode
   ``url`` (framewatch serves the JPEG, the service fetches it) and mode ``inline`` (JPEG in the body): frames/s and
   ms per frame; the difference is what the HTTP path costs.

Run: ``.venv/bin/python -m benchmarks.remote_overhead [--incident-sec 60] [--overhead-sec 15]``. Prints JSON.
The services are started and stopped by ``benchmarks.services.ReferenceServices``, as in the harness's ``remote``
backend (``benchmarks/scenarios/incident-remote.toml`` is the incident as a full harness scenario, with the baseline).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from framewatch.actors.core.config import decode_config
from framewatch.actors.system import Running

from .report import service_figures
from .services import ReferenceServices

REMOTE_TYPE = "吸烟检测"  # no local detector serves it: only the remote service does
LOCAL_TYPE = "人数统计"


def _conf(tmp: str, *, cameras: int, interval_ms: int, task_type: str, size: str) -> str:
    tasks = "".join(f"""
[[frame_extractor.tasks]]
id = "cam-{i:02d}"
task_type = "{task_type}"
rtsp_url = "synthetic://cam-{i}?{size}&fps=25"
interval_ms = {interval_ms}
""" for i in range(cameras))
    return f"""
[frame_extractor]
output_dir = "{tmp}/frames"
max_frame_count = 200
{tasks}
[ai_analysis]
heartbeat_timeout_sec = 10
[detector]
backend = "noop"
actors = 1
[http]
enable = true
port = 0
[alerts]
jsonl_path = "{tmp}/alerts.jsonl"
[stats]
interval_sec = 600
path = "{tmp}/stats.json"
log = false
"""


def _measure(text: str, seconds: float, service: tuple[float, str] | None) -> dict:
    """Run, warm up 3 s, measure ``seconds``; returns the window's figures."""
    with tempfile.TemporaryDirectory() as tmp:
        svc = None
        with Running(decode_config(text.replace("{tmp}", tmp))) as fw:
            try:
                if service is not None:
                    svc = ReferenceServices(fw.http_url, task_types=[REMOTE_TYPE], latency_ms=service[0],
                                            mode=service[1]).start()
                    svc.wait_registered(lambda: {k: v.slots for k, v in fw.snapshot().services.items()}, 30)
                time.sleep(3)
                start = fw.snapshot()
                time.sleep(seconds)
                end = fw.snapshot()
            finally:
                if svc is not None:
                    svc.stop()
    window = end.uptime_sec - start.uptime_sec
    inferred = end.totals.inferred - start.totals.inferred
    per_cam = {c: end.cameras[c].inferred - start.cameras[c].inferred for c in end.cameras}
    out = {
        "window_sec": round(window, 1),
        "sampled_per_s": round((end.totals.sampled - start.totals.sampled) / window, 2),
        "inferred_per_s": round(inferred / window, 2),
        "ms_per_frame": round(1000 * window / inferred, 2) if inferred else None,
        "skipped": end.totals.skipped - start.totals.skipped,
        "failed": end.totals.failed - start.totals.failed,
        "stored_now": end.totals.stored,
        "frame_age_p95_ms": end.inference.frame_age_p95_ms,
        "peak_load": end.backpressure.peak_load,
        "share_min": round(min(per_cam.values()) / inferred, 4) if inferred else 0,
        "share_max": round(max(per_cam.values()) / inferred, 4) if inferred else 0,
    }
    if service is not None:
        out["service"] = service_figures(start, end, window)["ref-0"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--incident-sec", type=float, default=60)
    p.add_argument("--overhead-sec", type=float, default=15)
    p.add_argument("--latency-ms", type=float, default=128)
    args = p.parse_args(argv)
    incident = _conf("{tmp}", cameras=14, interval_ms=200, task_type=REMOTE_TYPE, size="width=640&height=360")
    results = {"incident": _measure(incident, args.incident_sec, (args.latency_ms, "url"))}
    print(json.dumps(results, indent=2), flush=True)
    busy = dict(cameras=4, interval_ms=40, size="width=640&height=360")
    results["overhead"] = {
        "local_noop": _measure(_conf("{tmp}", task_type=LOCAL_TYPE, **busy), args.overhead_sec, None),
        "remote_url": _measure(_conf("{tmp}", task_type=REMOTE_TYPE, **busy), args.overhead_sec, (0, "url")),
        "remote_inline": _measure(_conf("{tmp}", task_type=REMOTE_TYPE, **busy), args.overhead_sec, (0, "inline")),
    }
    print(json.dumps(results["overhead"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
