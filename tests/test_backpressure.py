"""Backpressure under overload: 8 cameras at 25 fps against ~40 frames/s of inference (2 actors x 50 ms).

Invariants 1-4 of the design: extraction never outpaces inference (bounded mailboxes, no conversion or encoding of a
frame that is not inferred), fair shares, a busy pool, and counters that reconcile in every snapshot.
"""

from __future__ import annotations

import threading
import time

import cv2
import pytest
from framewatch.actors.core.config import decode_config
from framewatch.actors.ingest import sources
from framewatch.actors.ingest.backpressure import Controller, Valve
from framewatch.actors.system import Running

from tests.waiting import assert_conserved, wait_for

CAMERAS = 8
HIGH, LOW, SLOTS = 2, 1, 2


def overload_conf(tmp_path, policy: str = "fair", weights: list[float] | None = None) -> str:
    tasks = "".join(
        f"""
[[frame_extractor.tasks]]
id = "cam-{i}"
task_type = "人数统计"
rtsp_url = "synthetic://cam-{i}?width=320&height=240&fps=25"
interval_ms = 40
weight = {weights[i] if weights else 1.0}
"""
        for i in range(CAMERAS)
    )
    return f"""
[frame_extractor]
output_dir = "{tmp_path}/frames"
max_frame_count = 50
{tasks}
[ai_analysis]
save_only_with_detection = false
[backpressure]
policy = "{policy}"
high_watermark = {HIGH}
low_watermark = {LOW}
[detector]
backend = "emulated"
emulated_latency_ms = 50
actors = {SLOTS}
[alerts]
jsonl_path = "{tmp_path}/alerts.jsonl"
[stats]
interval_sec = 60
path = "{tmp_path}/stats.json"
"""


class Counter:
    def __init__(self, fn):
        self.fn = fn
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.n += 1
        return self.fn(*args, **kwargs)


def warmed_up(fw) -> None:
    """Past start-up: every camera has had frames inferred and the pool is saturated (its peak at the watermark)."""
    def ready() -> bool:
        snap = fw.snapshot(fresh=False)
        return all(c.inferred >= 3 for c in snap.cameras.values()) and snap.backpressure.peak_load >= SLOTS

    wait_for(ready, 30, "every camera inferred and the pool saturated")


def test_under_overload_mailboxes_stay_bounded_shares_are_fair_and_inference_stays_busy(tmp_path, monkeypatch):
    retrieve = Counter(sources.SyntheticSource.retrieve)
    encode = Counter(cv2.imencode)
    monkeypatch.setattr(sources.SyntheticSource, "retrieve", lambda self: retrieve(self))
    monkeypatch.setattr(cv2, "imencode", encode)

    with Running(decode_config(overload_conf(tmp_path))) as fw:
        warmed_up(fw)
        start = fw.snapshot()
        end_at = time.monotonic() + 10
        max_mailboxes = 0
        while time.monotonic() < end_at:
            mailboxes = fw.system.pool.mailboxes()
            max_mailboxes = max(max_mailboxes, sum(mailboxes.values()))
            snap = fw.snapshot(fresh=False)
            assert_conserved(snap)
            time.sleep(0.05)
        window = fw.snapshot()
        peak_load = fw.system.pool.peak_load
    final = fw.final
    assert final is not None
    assert_conserved(window)
    assert_conserved(final)

    # 1. Mailboxes bounded by configuration: queued + in inference never above the high watermark.
    assert peak_load <= HIGH * SLOTS, peak_load
    assert max_mailboxes <= HIGH * SLOTS + SLOTS
    # ... and nothing is converted or encoded that is not inferred (or in flight at that moment).
    t = final.totals
    assert t.failed == 0 and t.in_flight == 0
    assert retrieve.n <= t.inferred + t.in_flight
    assert encode.n <= t.inferred
    assert t.skipped > t.inferred  # demand is 5x capacity: most samples are skipped, not queued

    # 2. Fair shares within 25% in the measured window.
    inferred = {cam: window.cameras[cam].inferred - start.cameras[cam].inferred for cam in window.cameras}
    fair = sum(inferred.values()) / CAMERAS
    for cam, n in inferred.items():
        assert abs(n - fair) <= 0.25 * fair, (cam, n, fair, inferred)

    # 3. Inference stays busy: >= 90% of the two slots' time was spent inferring.
    assert window.inference.busy >= 0.9, window.inference
    # Fresh frames: a frame waits at most about the queue ahead of it (2 per slot x 50 ms), not seconds.
    assert window.inference.frame_age_p95_ms < 400, window.inference


def test_weighted_policy_gives_shares_in_proportion_to_weights(tmp_path):
    weights = [3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    with Running(decode_config(overload_conf(tmp_path, "weighted", weights))) as fw:
        warmed_up(fw)  # the shares are measured over the window that follows
        start = fw.snapshot()
        time.sleep(8)  # the measured window (a duration, not a condition)
        window = fw.snapshot()
    inferred = [window.cameras[f"cam-{i}"].inferred - start.cameras[f"cam-{i}"].inferred for i in range(CAMERAS)]
    unit = sum(inferred) / sum(weights)
    for i, n in enumerate(inferred):
        assert abs(n - weights[i] * unit) <= 0.25 * weights[i] * unit, (i, inferred)


def test_the_controller_pauses_at_the_high_watermark_and_resumes_at_the_low_one():
    ctl = Controller(high_per_slot=2, low_per_slot=1, max_queue=1000, weighted=False, horizon_sec=1.0)
    valves = [Valve(f"c{i}", interval_sec=0.04) for i in range(4)]
    now = time.monotonic()
    for v in valves:
        v.due(now)
    first = ctl.tick(valves, load=0, slots=2, now=now)
    assert (first.granted, first.high, first.low) == (4, 4, 2)
    assert all(v.take() for v in valves)  # each camera spends its credit on its next sample...
    assert ctl.tick(valves, load=0, slots=2, now=now).granted == 0  # ...converting: still counted, no new grant
    for v in valves:
        v.handed_over()  # ...now in the pool's load
        v.due(now)
    assert ctl.tick(valves, load=4, slots=2, now=now).paused is True
    assert ctl.tick(valves, load=3, slots=2, now=now).granted == 0  # still above low: hysteresis
    resumed = ctl.tick(valves, load=2, slots=2, now=now)
    assert (resumed.paused, resumed.granted) == (False, 2)


def test_a_camera_whose_source_is_down_holds_no_credit():
    ctl = Controller(high_per_slot=2, low_per_slot=1, max_queue=1000, weighted=False, horizon_sec=1.0)
    up, down = Valve("up", interval_sec=0.04), Valve("down", interval_sec=0.04)
    now = time.monotonic()
    up.due(now)
    down.idle()
    ctl.tick([up, down], load=0, slots=2, now=now)
    assert (up.credits, down.credits) == (1, 0)


def test_unbounded_policy_never_skips_like_the_old_system():
    valve = Valve("old", unbounded=True)
    assert all(valve.take() for _ in range(1000))
    valve.close()
    assert valve.take() is False


@pytest.mark.parametrize("credits_ahead", [1, 3])
def test_with_a_no_op_detector_and_8_cameras_flat_out_the_mailbox_bound_still_holds(tmp_path, credits_ahead):
    text = (overload_conf(tmp_path).replace('backend = "emulated"', 'backend = "noop"')
            .replace("interval_ms = 40", "interval_ms = 1").replace("fps=25", "fps=1000")
            .replace(f"low_watermark = {LOW}", f"low_watermark = {LOW}\ncredits_ahead = {credits_ahead}"))
    with Running(decode_config(text)) as fw:
        warmed_up(fw)
        max_mailboxes = 0
        deadline = time.monotonic() + 5  # a measured window: a duration, not a condition
        while time.monotonic() < deadline:
            max_mailboxes = max(max_mailboxes, sum(fw.system.pool.mailboxes().values()))
            assert_conserved(fw.snapshot(fresh=False))
        peak_load = fw.system.pool.peak_load
        window = fw.snapshot()
    assert peak_load <= HIGH * SLOTS, peak_load  # the pool's own count, exact
    # The slots' mailboxes are read one after the other, not at one instant: a frame can be seen in two reads.
    assert max_mailboxes <= HIGH * SLOTS + SLOTS
    assert window.totals.inferred > 500 and window.totals.skipped > 0
    assert_conserved(fw.final, at_rest=True)


def test_credits_ahead_are_granted_in_rounds_and_the_watermark_still_bounds_their_sum():
    ctl = Controller(high_per_slot=3, low_per_slot=1, max_queue=1000, weighted=False, horizon_sec=1.0)
    valves = [Valve(f"c{i}", interval_sec=0.001, ahead=4) for i in range(2)]
    now = time.monotonic()
    for v in valves:
        v.due(now)
    state = ctl.tick(valves, load=0, slots=2, now=now)  # room for 6: three rounds of one each
    assert (state.granted, state.level) == (6, 6)
    assert [v.credits for v in valves] == [3, 3]
    assert ctl.tick(valves, load=0, slots=2, now=now).granted == 0  # at the high watermark
    one = [Valve("alone", interval_sec=0.001, ahead=2)]
    one[0].due(now)
    assert ctl.tick(one, load=0, slots=2, now=now).granted == 2  # room for 6, but no more than `ahead` each
    assert one[0].credits == 2


def test_a_waiting_valve_calls_its_waiter_once_on_the_next_grant_and_keeps_wanting():
    valve = Valve("file", interval_sec=0.001, waits=True)
    woken: list[int] = []
    valve.due(time.monotonic() - 60)  # its sample has waited a minute: a waiting valve still wants it
    assert valve.take(lambda: woken.append(1)) is False
    assert valve.wanting(time.monotonic(), 0.01)
    live = Valve("live", interval_sec=0.001)
    live.due(time.monotonic() - 60)
    assert not live.wanting(time.monotonic(), 0.01)  # a live camera's sample that old was skipped long ago
    valve.grant(1)
    valve.grant(1)
    assert woken == [1]  # called once, by the first grant
    assert valve.take() and valve.take() and not valve.take()
    valve.close()
    assert valve.take(lambda: woken.append(2)) is False
    valve.grant(1)
    assert woken == [1]  # a closed valve neither takes grants nor wakes


def test_an_unpaced_file_is_analysed_whole_at_inference_pace_nothing_skipped(tmp_path):
    """realtime = false: every sample waits for its credit, so every frame of the clip is inferred, once, in order,
    with inference slower than decoding (emulated 20 ms on 1 slot) and every frame sampled."""
    text = overload_conf(tmp_path).replace("actors = 2", "actors = 1").replace("emulated_latency_ms = 50",
                                                                               "emulated_latency_ms = 20")
    tasks = "".join(f"""
[[frame_extractor.tasks]]
id = "file-{i}"
task_type = "人数统计"
rtsp_url = "asset:vtest_5s.mp4"
interval_ms = 1
loop = false
realtime = false
decoder = "{decoder}"
""" for i, decoder in enumerate(("pyav", "opencv")))
    head, _, rest = text.partition("\n[[frame_extractor.tasks]]")
    text = head + tasks + rest[rest.index("\n[ai_analysis]"):]
    with Running(decode_config(text)) as fw:
        wait_for(lambda: all(c.state == "ended" for c in fw.snapshot(fresh=False).cameras.values())
                 and fw.snapshot(fresh=False).totals.in_flight == 0, 60, "both clips analysed to their end")
        snap = fw.snapshot()
        peak_load = fw.system.pool.peak_load
    frames = 0
    cap = cv2.VideoCapture(str(sources.resolve_asset("asset:vtest_5s.mp4")))
    while cap.grab():
        frames += 1
    cap.release()
    for cam_id, cam in snap.cameras.items():
        assert cam.skipped == 0, (cam_id, cam)
        assert cam.inferred == cam.sampled == frames, (cam_id, cam.inferred, frames)
    assert snap.cameras["file-0"].decode_mode == "full"
    assert peak_load <= 2 * 1  # high watermark x 1 slot, although decoding is far faster than inference
    assert_conserved(fw.final, at_rest=True)
