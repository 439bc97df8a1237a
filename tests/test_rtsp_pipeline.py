"""framewatch end to end against a real RTSP camera (benchmarks/rtsp_server.py looping vtest at 10 fps, 768x576).

The whole system runs in-process (``supervisor.Running``) with the built-in person detector, local storage and the
JSON Lines sink under ``tmp_path``. What a camera can do to us: deliver frames (alerts come out), lose power (SIGKILL:
the extractor reports it, backs off, recovers on restart, and the other cameras run on), hang (SIGSTOP: declared
stalled within the read timeout, runs again after it thaws). Every snapshot observed, and the final one, must satisfy
the conservation equations. Each test prints what it measured (``pytest -s`` or ``-rP`` shows it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
from framewatch.actors.core.config import decode_config
from framewatch.actors.core.metrics import Snapshot
from framewatch.actors.system import Running

from tests.waiting import assert_conserved

CAM = "rtsp-cam"
SYNTH = "synthetic-cam"
THRESHOLD = 0.5
OPEN_TIMEOUT_MS = 1000
READ_TIMEOUT_MS = 1000
STALL_TIMEOUT_SEC = 3.0
BACKOFF_INITIAL_SEC = 0.5
BACKOFF_MAX_SEC = 2.0


def _conf(tmp_path: Path, url: str, *, actors: int = 1, synthetic: bool = False) -> str:
    synthetic_task = f"""
[[frame_extractor.tasks]]
id = "{SYNTH}"
task_type = "人数统计"
rtsp_url = "synthetic://x?fps=10"
interval_ms = 200
[frame_extractor.tasks.algo_config]
count_threshold = 1
""" if synthetic else ""
    return f"""
[frame_extractor]
output_dir = "{tmp_path / 'frames'}"
open_timeout_ms = {OPEN_TIMEOUT_MS}
read_timeout_ms = {READ_TIMEOUT_MS}
stall_timeout_sec = {STALL_TIMEOUT_SEC}
backoff_initial_sec = {BACKOFF_INITIAL_SEC}
backoff_max_sec = {BACKOFF_MAX_SEC}

[[frame_extractor.tasks]]
id = "{CAM}"
task_type = "人数统计"
rtsp_url = "{url}"
interval_ms = 200
[frame_extractor.tasks.algo_config]
count_threshold = 1
{synthetic_task}
[ai_analysis]
alert_batch_interval_sec = 0.5

[detector]
backend = "ssdlite"
actors = {actors}
threshold = {THRESHOLD}

[alerts]
jsonl_path = "{tmp_path / 'alerts.jsonl'}"
spool_dir = "{tmp_path / 'spool'}"

[stats]
interval_sec = 0.5
path = "{tmp_path / 'stats.json'}"
log = false
"""


def _start(tmp_path: Path, url: str, **kw: object) -> Running:
    return Running(decode_config(_conf(tmp_path, url, **kw)))


def wait_for(fw: Running, condition: Callable[[Snapshot], bool], timeout: float, what: str,
              interval: float = 0.05) -> tuple[Snapshot, float]:
    """Poll fresh snapshots until ``condition`` holds; return that snapshot and the seconds it took.

    Every snapshot seen is checked for conservation. Fails the test after ``timeout`` seconds, showing the camera.
    """
    started = time.monotonic()
    while True:
        snap = fw.snapshot()
        assert_conserved(snap)
        if condition(snap):
            return snap, time.monotonic() - started
        if time.monotonic() - started >= timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; cameras: {snap.cameras}")
        time.sleep(interval)


def backoff_attempts_within(window_sec: float) -> int:
    """How many reopen attempts the backoff schedule (initial, doubling to max) allows within ``window_sec``."""
    attempts, elapsed, delay = 0, 0.0, BACKOFF_INITIAL_SEC
    while elapsed + delay <= window_sec:
        elapsed += delay
        attempts += 1
        delay = min(delay * 2, BACKOFF_MAX_SEC)
    return attempts


def _running_and_inferring(n: int, cam: str = CAM) -> Callable[[Snapshot], bool]:
    return lambda s: s.cameras[cam].state == "running" and s.cameras[cam].inferred >= n


# --- tests ----------------------------------------------------------------------------------------------------------


def test_framewatch_writes_person_events_with_stored_images_from_the_rtsp_camera(rtsp_server, tmp_path):
    started = time.monotonic()
    with _start(tmp_path, rtsp_server.url, actors=2) as fw:
        snap, waited = wait_for(fw, lambda s: s.alerts.written >= 1 and s.totals.inferred >= 30, timeout=30,
                                what="the first event written and 30 frames inferred")
        cam = snap.cameras[CAM]
        assert cam.state == "running" and cam.opens == 1 and cam.open_failures == 0 and cam.stalls == 0
    final = fw.final
    assert final is not None
    assert_conserved(final)
    print(f"\nfirst event written {waited:.1f} s after start ({time.monotonic() - started:.1f} s incl. shutdown); "
          f"final: inferred {final.totals.inferred}, with detections {final.totals.with_detections}, "
          f"alerts {final.alerts.written}, p95 {final.inference.p95_ms:.0f} ms")

    lines = (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    # Shutdown flushes: every alert emitted is in the file, none dropped.
    assert len(lines) == final.alerts.written == final.alerts.emitted > 0
    assert final.alerts.dropped == 0
    assert final.cameras[CAM].alerts == len(lines)
    # People walk through the whole clip: one event while at least one is there, not one alert per frame.
    alerts = [json.loads(line) for line in lines]
    events = [a for a in alerts if a["rule"] != "count_report"]
    assert [a["event_state"] for a in events][:1] == ["start"] and len(events) < final.totals.with_detections / 5
    frames_root = tmp_path / "frames"
    for alert in events:
        assert alert["task_id"] == CAM and alert["task_type"] == "人数统计" and alert["rule"] == "people_count"
        if alert["event_state"] == "start":
            assert alert["detections"] and alert["counts"]["person"] == len(alert["detections"])
        for det in alert["detections"]:
            assert det["label"] == "person"
            assert THRESHOLD <= det["score"] <= 1.0
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= 768 and 0 <= y1 <= y2 <= 576
        assert alert["image_stored"] is True
        image_path = frames_root / alert["image_key"]
        assert image_path.is_file(), alert["image_key"]
    image = cv2.imread(str(frames_root / events[0]["image_key"]))
    assert image is not None and image.shape == (576, 768, 3)


def test_a_killed_camera_is_reported_backs_off_and_recovers_on_restart_while_other_cameras_run_on(
        rtsp_server, tmp_path):
    url = rtsp_server.url
    with _start(tmp_path, url, actors=2, synthetic=True) as fw:
        wait_for(fw, lambda s: _running_and_inferring(2)(s) and _running_and_inferring(2, SYNTH)(s),
                 timeout=30, what="both cameras running and inferred")

        rtsp_server.kill()
        down, detect_s = wait_for(fw, lambda s: s.cameras[CAM].state in ("backoff", "stalled"),
                                  timeout=READ_TIMEOUT_MS / 1000 + 3, what="the kill to be reported")
        assert url in down.cameras[CAM].last_error

        # While it is down: reopen attempts fail, spaced out by the backoff (never spinning); sample them closely.
        window = 5.0
        failures: list[tuple[float, int]] = []
        t0 = time.monotonic()
        f0 = down.cameras[CAM].open_failures
        synth0 = down.cameras[SYNTH].inferred
        snap = down
        while time.monotonic() - t0 < window:
            snap = fw.snapshot()
            assert_conserved(snap)
            assert snap.cameras[CAM].state in ("backoff", "stalled"), snap.cameras[CAM]
            failures.append((time.monotonic(), snap.cameras[CAM].open_failures))
            time.sleep(0.05)
        failed = snap.cameras[CAM].open_failures - f0
        allowed = backoff_attempts_within(window) + 1  # +1: the attempt due at the window's start may land in it
        assert 2 <= failed <= allowed, f"{failed} open failures in {window} s (backoff allows {allowed})"
        # Failure n (the n-th since start; the read failure that began the outage took the first delay) is followed
        # by a delay of min(initial * 2**n, max): gaps only grow, up to the maximum. Observed late, never early
        # (minus the polling granularity).
        increments = [(t, n) for (t, n), (_, prev) in zip(failures[1:], failures) if n > prev]
        gaps = [(n, b - a) for (a, n), (b, _) in zip(increments, increments[1:])]
        for n, gap in gaps:
            assert gap >= min(BACKOFF_INITIAL_SEC * 2**n, BACKOFF_MAX_SEC) - 0.15, gaps
        assert snap.cameras[CAM].last_error == f"cannot open {url}"
        # The rest of the system runs on: the synthetic camera kept being inferred through the outage.
        assert snap.cameras[SYNTH].state == "running"
        synth_during = snap.cameras[SYNTH].inferred - synth0
        assert synth_during >= 5

        rtsp_server.restart()
        assert rtsp_server.url == url
        opens, sampled, inferred = (snap.cameras[CAM].opens, snap.cameras[CAM].sampled, snap.cameras[CAM].inferred)
        up, recover_s = wait_for(fw, lambda s: s.cameras[CAM].state == "running" and s.cameras[CAM].opens > opens,
                                 timeout=15, what="the camera to be reopened after restart")
        assert recover_s < BACKOFF_MAX_SEC + 3.0
        wait_for(fw, lambda s: s.cameras[CAM].sampled > sampled + 3 and s.cameras[CAM].inferred > inferred + 3,
                 timeout=15, what="frames sampled and inferred again")
    final = fw.final
    assert final is not None
    assert_conserved(final)
    print(f"\nkill reported in {detect_s * 1000:.0f} ms; {failed} open failures in {window:.0f} s (allowed {allowed}), "
          f"gaps {[round(g, 2) for _, g in gaps]} s; synthetic inferred {synth_during} meanwhile; "
          f"recovered {recover_s:.2f} s after the restart; "
          f"final opens {final.cameras[CAM].opens}, open_failures {final.cameras[CAM].open_failures}")


def test_a_frozen_camera_is_declared_stalled_within_the_read_timeout_and_runs_again_after_it_thaws(
        rtsp_server, tmp_path):
    url = rtsp_server.url
    with _start(tmp_path, url, actors=1) as fw:
        wait_for(fw, _running_and_inferring(2), timeout=30, what="the camera running and inferred")

        rtsp_server.freeze()
        stalled, stall_s = wait_for(fw, lambda s: s.cameras[CAM].stalls >= 1, timeout=READ_TIMEOUT_MS / 1000 + 5,
                                    what="the frozen camera to be declared stalled")
        cam = stalled.cameras[CAM]
        assert stall_s <= READ_TIMEOUT_MS / 1000 + 2.0
        assert cam.stalls == 1 and cam.state in ("stalled", "backoff")
        assert cam.last_error == f"no new frame from {url} within {READ_TIMEOUT_MS} ms (stream frozen)"

        # Reopening a frozen camera fails after the open timeout, and is retried.
        down, _ = wait_for(fw, lambda s: s.cameras[CAM].open_failures >= 1,
                           timeout=BACKOFF_INITIAL_SEC + OPEN_TIMEOUT_MS / 1000 + 3, what="a failed reopen")
        assert down.cameras[CAM].state == "backoff" and down.cameras[CAM].last_error == f"cannot open {url}"

        rtsp_server.thaw()
        opens, inferred = down.cameras[CAM].opens, down.cameras[CAM].inferred
        up, recover_s = wait_for(fw, lambda s: s.cameras[CAM].state == "running" and s.cameras[CAM].opens > opens,
                                 timeout=15, what="the camera to be reopened after thaw")
        # At most one backoff delay plus one open attempt already under way (it may time out against the frozen side).
        assert recover_s < BACKOFF_MAX_SEC + OPEN_TIMEOUT_MS / 1000 + 2.0
        wait_for(fw, lambda s: s.cameras[CAM].inferred > inferred + 3, timeout=15, what="frames inferred again")
    final = fw.final
    assert final is not None
    assert_conserved(final)
    print(f"\nfreeze declared stalled in {stall_s:.2f} s (read timeout {READ_TIMEOUT_MS} ms); "
          f"running again {recover_s:.2f} s after thaw; final stalls {final.cameras[CAM].stalls}, "
          f"open_failures {final.cameras[CAM].open_failures}, opens {final.cameras[CAM].opens}")
