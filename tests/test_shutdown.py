"""Shutdown: SIGTERM stops everything in order, flushes alerts, and leaves no thread behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

from framewatch.actors.core.config import decode_config
from framewatch.actors.system import Running

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def clip_conf(tmp_path: Path) -> str:
    return f"""
[frame_extractor]
output_dir = "{tmp_path}/frames"
interval_ms = 200
[[frame_extractor.tasks]]
id = "count"
task_type = "人数统计"
rtsp_url = "asset:vtest_5s.mp4"
[[frame_extractor.tasks]]
id = "intrusion"
task_type = "区域入侵"
rtsp_url = "asset:vtest_5s.mp4"
[ai_analysis]
alert_batch_size = 1000          # large batches: the shutdown flush is what writes them
alert_batch_interval_sec = 3600
[detector]
backend = "ssdlite"
actors = 2
[alerts]
jsonl_path = "{tmp_path}/alerts.jsonl"
[stats]
interval_sec = 0.5
path = "{tmp_path}/stats.json"
"""


def test_after_sigterm_alerts_jsonl_holds_exactly_the_alerts_the_stats_counted(tmp_path):
    conf = tmp_path / "conf.toml"
    conf.write_text(clip_conf(tmp_path), encoding="utf-8")
    stats = tmp_path / "stats.json"
    proc = subprocess.Popen([sys.executable, str(ROOT / "supervisor.py"), "run", str(conf)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def alerts_emitted() -> int:
            try:
                return json.loads(stats.read_text())["alerts"]["emitted"]
            except (OSError, ValueError, KeyError):
                return 0

        wait_for(lambda: alerts_emitted() >= 5, 60, "alerts emitted")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "received SIGTERM; shutting down" in out
    final = json.loads(stats.read_text())
    lines = (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    alerts = [json.loads(line) for line in lines]
    assert len(alerts) == final["alerts"]["written"] == final["alerts"]["emitted"] >= 5
    assert final["alerts"]["dropped"] == 0 and final["totals"]["in_flight"] == 0
    assert len({a["id"] for a in alerts}) == len({a["uid"] for a in alerts}) == len(alerts)
    first = next(a for a in alerts if a["event_state"] == "start")  # the first event (count reports come too)
    assert first["schema"] == 3 and first["task_id"] in ("count", "intrusion") and isinstance(first["id"], int)
    assert first["detections"] and first["detections"][0]["label"] == "person"
    assert (tmp_path / "frames" / first["image_key"]).is_file() == first["image_stored"] is True
    # The order of the shutdown, as logged: sources, inference, storage, alerts, timers (the tree's reverse order).
    steps = [out.index(s) for s in ("shutdown: stopping sources", "shutdown: draining inference",
                                    "shutdown: storing frames", "shutdown: retention deletes what is due",
                                    "shutdown: flushing alerts",
                                    "shutdown: stopping timers", "shutdown: done")]
    assert steps == sorted(steps)


def test_no_thread_started_by_framewatch_remains_after_shutdown(tmp_path):
    before = set(threading.enumerate())
    with Running(decode_config(clip_conf(tmp_path))) as fw:
        wait_for(lambda: fw.snapshot().totals.inferred >= 4, 60, "frames inferred")
        names = {t.name for t in threading.enumerate()} - {t.name for t in before}
        assert {"extractor:count", "extractor:intrusion", "inference:local-0", "inference:local-1", "writer",
                "retention", "alerts", "supervisor", "timers"} <= names
    # stop() has returned; a thread may still be between its last line and its exit, hence the short wait.
    wait_for(lambda: set(threading.enumerate()) <= before, 5, "framewatch's threads to end")
    assert {t.name for t in set(threading.enumerate()) - before} == set()
