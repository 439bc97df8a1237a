"""The per-camera analytics stage: frames put back in capture order, events through the running pipeline (a real
algorithm service in its own process serving 安全帽检测), and the sampling floors tracking needs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np
import pykka
from framewatch.actors.analytics.actor import AnalyticsActor
from framewatch.actors.analytics.reorder import Reorder
from framewatch.actors.analytics.tasktypes import decode_task_params
from framewatch.actors.api.prometheus import exposition
from framewatch.actors.core.config import decode_config
from framewatch.actors.core.messages import Analyse, Detection, Frame, StoreFrame
from framewatch.actors.core.metrics import Metrics
from framewatch.actors.core.supervision import Link, start_actor
from framewatch.actors.core.timers import Timers
from framewatch.actors.inference.slot import TaskRoute
from framewatch.actors.ingest.backpressure import Controller, Valve
from framewatch.actors.system import Running

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
INTRUSION, HELMET = "区域入侵", "安全帽检测"

# --- Reorder --------------------------------------------------------------------------------------------------------


def test_reorder_releases_in_seq_order_and_waits_for_a_gap_only_so_long():
    r: Reorder[str] = Reorder(max_wait_sec=1.0, max_held=8)
    assert r.push(1, "a", 0.0) == (["a"], False)
    assert r.push(3, "c", 0.1) == ([], False)  # 2 is still being inferred
    assert r.push(2, "b", 0.2) == (["b", "c"], False)
    assert r.push(5, "e", 0.3) == ([], False)
    assert r.release(1.2) == []  # e has waited 0.9 s
    assert r.release(1.3) == ["e"] and r.skipped == 1  # 4 never came: given up on after 1 s
    assert r.push(4, "d", 1.4) == ([], True)  # too late: 5 was analysed already
    assert r.push(6, "f", 1.5) == (["f"], False)


def test_reorder_gives_up_on_a_gap_when_too_many_frames_are_held():
    r: Reorder[int] = Reorder(max_wait_sec=60.0, max_held=3)
    r.push(1, 1, 0.0)
    assert [r.push(seq, seq, 0.0)[0] for seq in (3, 4, 5)] == [[], [], []]
    assert r.push(6, 6, 0.0)[0] == [3, 4, 5, 6] and r.skipped == 1


class _Recorder(pykka.ThreadingActor):
    def __init__(self, got: list[Any]) -> None:
        super().__init__()
        self.got = got

    def on_receive(self, message: Any) -> None:
        self.got.append(message)


class _LateCounting(Metrics):
    late = 0

    def analytics_late(self, task_id: str) -> None:
        self.late += 1
        super().analytics_late(task_id)


def _walker_in_zone(seq: int) -> Analyse:
    """Frame ``seq`` (0.25 s apart) of a person standing in the intrusion zone, as a slot hands it over."""
    image = np.zeros((240, 320, 3), np.uint8)
    frame = Frame(task_id="cam", task_type=INTRUSION, seq=seq, captured_at=1_800_000_000 + seq / 4,
                  captured_mono=1000 + seq / 4, image=image)
    person = Detection("person", 0.9, (100 + seq, 60, 140 + seq, 200))
    return Analyse(frame=frame, detections=[person], backend="test", algorithm_id="test", algorithm_name="test",
                   inference_ms=10.0)


def test_frames_finishing_out_of_order_on_two_slots_are_tracked_in_capture_order():
    zone = {"config_version": "1.0", "regions": [{"id": "z", "type": "rectangle", "points": [[0, 0], [320, 240]]}]}
    params = decode_task_params(INTRUSION, zone)
    got: list[Any] = []
    recorder = _Recorder.start(got)
    writer = Link("writer")
    writer.attach(recorder)
    metrics = _LateCounting(["cam"])
    timers = Timers()
    timers.start()
    analytics = Link("analytics:cam")
    handle = start_actor(AnalyticsActor, analytics, task_id="cam", task_type=INTRUSION, params=params,
                         route=TaskRoute("person", None, "alerts/i/cam"), writer=writer, metrics=metrics,
                         timers=timers)
    try:
        # Two slots: odd frames come back late, each after the next even one.
        for seq in (2, 1, 4, 3, 6, 5, 8, 7):
            analytics.tell(_walker_in_zone(seq))
        handle.stop(10)  # analyses what it holds, then ends the open event
    finally:
        timers.stop()
        recorder.stop()
    alerts = [m.alert for m in got if isinstance(m, StoreFrame)]
    assert metrics.late == 0  # nothing arrived after a later frame was analysed
    assert [(a.event_state, a.rule) for a in alerts] == [("start", "intrusion"), ("end", "intrusion")]
    assert alerts[0].event_id == alerts[1].event_id and alerts[0].track_ids == [1]
    assert alerts[0].frame_seq == 3  # inside from frame 1 (t 1000.25): after 0.5 s of inertia, at frame 3


# --- a service-served type through the pipeline ---------------------------------------------------------------------


def helmet_conf(tmp_path: Path) -> str:
    return f"""
[frame_extractor]
output_dir = "{tmp_path}/frames"
[[frame_extractor.tasks]]
id = "site-gate"
task_type = "{HELMET}"
rtsp_url = "synthetic://gate?width=320&height=240&fps=10"
interval_ms = 200
algo_config = {{ config_version = "1.0", algorithm_params = {{ custom_params = {{ alert_delay = 1.0 }} }} }}
[ai_analysis]
heartbeat_timeout_sec = 60
request_timeout_sec = 5
[detector]
backend = "noop"
actors = 1
[http]
enable = true
port = 0
[alerts]
jsonl_path = "{tmp_path}/alerts.jsonl"
[stats]
interval_sec = 60
path = "{tmp_path}/stats.json"
"""


def test_a_helmet_service_returning_no_helmet_boxes_makes_one_event_per_persistent_violation(tmp_path):
    # The service sees a worker without a helmet for 2.5 s, then nobody for 3.5 s (longer than a track lives), twice.
    with Running(decode_config(helmet_conf(tmp_path))) as fw:
        service = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "old_protocol_service.py"), "--easydarwin", fw.http_url,
             "--record", str(tmp_path / "received.jsonl"), "--service-id", "helmet-svc", "--name", "helmet",
             "--task-types", HELMET, "--label", "no_helmet", "--on-off", "2.5", "3.5"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def ended() -> int:
                path = tmp_path / "alerts.jsonl"
                lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
                return sum(json.loads(line)["event_state"] == "end" for line in lines)

            wait_for(lambda: ended() >= 2, 40, "two violations ended")
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(20)
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    finished = [a["event_id"] for a in alerts if a["event_state"] == "end"]
    starts = [a for a in alerts if a["event_state"] == "start"]
    assert len(finished) >= 2 and set(finished) <= {a["event_id"] for a in starts}
    by_event = Counter(a["event_id"] for a in alerts)
    assert all(by_event[e] == 2 for e in finished)  # one start and one end each, nothing per frame
    for a in starts:
        assert a["rule"] == "no_helmet" and a["backend"] == "remote:helmet" and a["task_type"] == HELMET
        assert [d["label"] for d in a["detections"]] == ["no_helmet"] and a["image_stored"]
    assert fw.final is not None and fw.final.totals.inferred > 20  # about 5 frames/s for the whole run


# --- sampling floors ------------------------------------------------------------------------------------------------


def simulate(valves: list[Valve], capacity_fps: float, seconds: float) -> Counter[str]:
    """Frames inferred per camera when ``valves`` sample at their intervals and one slot infers ``capacity_fps``
    frames a second, with the supervisor's controller granting every 10 ms (the extractor and slot in lockstep)."""
    ctrl = Controller(high_per_slot=2, low_per_slot=1, max_queue=100, weighted=False, horizon_sec=0.02)
    queue: deque[str] = deque()
    served: Counter[str] = Counter()
    next_sample = {v.task_id: 0.0 for v in valves}
    busy_until = 0.0
    for step in range(int(seconds * 100)):
        now = step / 100
        for v in valves:
            if now >= next_sample[v.task_id]:
                if v.take():
                    v.handed_over()
                    queue.append(v.task_id)
                next_sample[v.task_id] += v.interval_sec
            v.due(next_sample[v.task_id])
        if queue and now >= busy_until:
            served[queue.popleft()] += 1
            busy_until = now + 1 / capacity_fps
        ctrl.tick(valves, load=len(queue), slots=1, now=now)
    return served


def test_a_tracking_camera_gets_its_floor_before_the_rest_is_shared_fairly():
    tripwire = Valve("tripwire", interval_sec=0.2, min_fps=3.0)
    others = [Valve(f"count-{i}", interval_sec=0.2) for i in range(3)]
    served = simulate([tripwire, *others], capacity_fps=8.0, seconds=60)
    assert served["tripwire"] / 60 >= 3.0 * 0.95  # a fair share would be 2/s: too few to follow a crossing
    assert all(served[v.task_id] / 60 >= 1.4 for v in others)  # the rest, shared evenly
    assert max(served[v.task_id] for v in others) - min(served[v.task_id] for v in others) <= 0.05 * 60
    # Without a floor the same box gives every camera the same share.
    plain = simulate([Valve("tripwire", interval_sec=0.2), *[Valve(f"c{i}", interval_sec=0.2) for i in range(3)]],
                     capacity_fps=8.0, seconds=60)
    assert plain["tripwire"] / 60 < 2.3


def test_a_floor_never_exceeds_what_the_camera_asks_for():
    slow = Valve("slow", interval_sec=2.0, min_fps=3.0)  # asks for 0.5 frames/s: its floor is 0.5
    assert slow.min_fps == 0.5
    served = simulate([slow, Valve("busy", interval_sec=0.05)], capacity_fps=10.0, seconds=40)
    assert served["slow"] <= 21 and served["busy"] >= 40 * 9


def degraded_conf(tmp_path: Path) -> str:
    tasks = "".join(f"""
[[frame_extractor.tasks]]
id = "gate-{i}"
task_type = "绊线人数统计"
rtsp_url = "synthetic://gate-{i}?width=160&height=120&fps=25"
interval_ms = 100
""" for i in range(3))
    return f"""
[frame_extractor]
output_dir = "{tmp_path}/frames"
{tasks}
[detector]
backend = "emulated"
emulated_latency_ms = 250
actors = 1
[alerts]
jsonl_path = "{tmp_path}/alerts.jsonl"
[stats]
interval_sec = 60
path = "{tmp_path}/stats.json"
"""


def test_below_the_floors_every_tracking_camera_says_degraded_in_its_stats_and_metrics(tmp_path):
    # Three tripwire cameras need 3 frames/s each; one slot of 250 ms infers 4 in all.
    with Running(decode_config(degraded_conf(tmp_path))) as fw:
        fw.snapshot()  # starts the window
        got = threading.Event()

        def all_degraded() -> bool:
            snap = fw.snapshot(fresh=True)
            cams = snap.cameras.values()
            if all(c.inferred >= 5 for c in cams) and all(c.degraded.startswith("got ") for c in cams):
                got.set()
                return True
            return False

        wait_for(all_degraded, 30, "every camera degraded")
        snap = fw.snapshot(fresh=False)
        assert all(c.min_fps == 3.0 and c.degraded.endswith("needs 3") for c in snap.cameras.values())
        text = exposition(snap)
    assert got.is_set()
    assert 'framewatch_camera_degraded{camera="gate-0"} 1' in text
    assert 'framewatch_camera_min_fps{camera="gate-0"} 3' in text


def test_above_the_floors_no_camera_is_degraded(tmp_path):
    text = degraded_conf(tmp_path).replace("emulated_latency_ms = 250", "emulated_latency_ms = 20")
    with Running(decode_config(text)) as fw:
        wait_for(lambda: all(c.inferred >= 20 for c in fw.snapshot().cameras.values()), 30, "frames inferred")
        fw.snapshot(fresh=True)  # a new window from here
        wait_for(lambda: all(c.inferred >= 40 for c in fw.snapshot(fresh=False).cameras.values()), 30,
                 "more frames inferred")
        snap = fw.snapshot(fresh=True)
    assert all(c.degraded == "" and c.inferred_per_s >= 3 for c in snap.cameras.values())
