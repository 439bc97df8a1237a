"""One camera's analytics end to end: detections at irregular capture times through the filters, the tracker, the
rule and the event book."""

from __future__ import annotations

import itertools

import pytest
from framewatch.actors.analytics.engine import CameraAnalytics
from framewatch.actors.analytics.events import EventRecord
from framewatch.actors.analytics.tasktypes import decode_task_params
from framewatch.actors.analytics.tracker import TrackerConf
from framewatch.actors.core.messages import Detection

TRIPWIRE, INTRUSION, LOITERING, HELMET, OFF_POST = "绊线人数统计", "区域入侵", "徘徊检测", "安全帽检测", "人员离岗"
SMOKING, ABANDONED = "吸烟检测", "物品遗留"
W, H = 800, 600


def person(x: float, y: float, score: float = 0.9, label: str = "person", w: int = 40, h: int = 100) -> Detection:
    """A box whose foot point is at (x, y)."""
    return Detection(label, score, (round(x - w / 2), round(y - h), round(x + w / 2), round(y)))


def camera(task_type: str, algo_config: dict, **kwargs) -> CameraAnalytics:
    return CameraAnalytics("cam", task_type, decode_task_params(task_type, algo_config), id_prefix="cam", **kwargs)


def old_format(*regions: dict, algorithm_params: dict | None = None, **custom) -> dict:
    return {"config_version": "1.0", "regions": list(regions),
            "algorithm_params": {**(algorithm_params or {}), "custom_params": custom}}


ZONE = {"id": "zone", "name": "禁区", "type": "rectangle", "points": [[200, 200], [600, 500]]}
GATE = {"id": "gate", "type": "line", "points": [[0, 300], [800, 300]], "properties": {"direction": "bidirectional"}}


def times(start: float, end: float, steps: tuple[float, ...]) -> list[float]:
    out, t = [], start
    for dt in itertools.cycle(steps):
        if t >= end:
            return out
        out.append(round(t, 6))
        t += dt
    return out


def test_only_the_labels_the_type_needs_and_detections_passing_algorithm_params_are_tracked():
    cam = camera(INTRUSION, old_format(ZONE, algorithm_params={"confidence_threshold": 0.5,
                                                               "min_detection_size": 60}))
    step = cam.step([person(300, 300), person(400, 300, score=0.3), person(500, 300, w=20, h=40),
                     person(250, 400, label="car")], 0.0, W, H)
    assert [(tr.id, tr.label, tr.box) for tr in step.tracks] == [(1, "person", (280.0, 200.0, 320.0, 300.0))]
    assert cam.labels == frozenset({"person"}) and step.records == []


def test_tripwire_through_the_tracker_counts_exactly_per_direction_at_irregular_rates():
    cam = camera(TRIPWIRE, old_format(GATE))
    # Four lanes 150 px apart, two walking down (in), two up (out), at 80 px/s; samples 3 to 6 per second.
    lanes = [(100, 1), (250, -1), (400, 1), (550, -1)]
    records: list[EventRecord] = []
    for t in times(0, 6, (0.2, 0.33, 0.17, 0.28)):
        dets = [person(x, 300 + d * (80 * t - 200)) for x, d in lanes]
        records += cam.step(dets, t, W, H).records
    assert [(r.event_state, r.direction, r.counts) for r in records] == [
        ("instant", "in", {"in": 1, "out": 0}), ("instant", "out", {"in": 1, "out": 1}),
        ("instant", "in", {"in": 2, "out": 1}), ("instant", "out", {"in": 2, "out": 2})]
    assert sorted(r.subject for r in records) == ["1", "2", "3", "4"]  # one track per person, each counted once


def test_a_service_served_violation_is_one_event_per_person_with_updates_and_an_end():
    cam = camera(HELMET, old_format(alert_interval=3))
    records: list[EventRecord] = []
    samples = times(0, 10, (0.8, 1.3, 1.0))  # what a fake no_helmet service returns, about 1 per second
    for t in samples:
        worker = [person(300 + 5 * t, 400, label="no_helmet", score=0.6 + 0.03 * t)] if t < 8 else []
        others = [person(600, 400, label="helmet"), person(100, 400)]  # neither is a violation
        records += cam.step(worker + others, t, W, H).records
    records += cam.step([], 12.0, W, H).records  # past the tracker's max age (2.5 s at 1 fps): lost
    # Samples at 0, 0.8, 2.1, 3.1, 3.9, 5.2, 6.2, 7.0, 8.3, 9.3: alert_delay 2 s reached at 2.1, updates 3 s apart;
    # from 8.3 the track coasts (not seen, not yet lost) and the event goes on without detections.
    assert [(r.event_id, r.event_state, r.at, len(r.detections)) for r in records] == [
        ("cam-1", "start", 2.1, 1), ("cam-1", "update", 5.2, 1), ("cam-1", "update", 8.3, 0), ("cam-1", "end", 12.0, 0)]
    assert all((r.rule, r.subject, r.track_ids) == ("no_helmet", "1", (1,)) for r in records)
    assert (records[-1].best_score, records[-1].best_at) == (pytest.approx(0.6 + 0.03 * 7.0), 7.0)


def test_the_step_says_which_events_best_shot_is_this_sample():
    cam = camera(INTRUSION, old_format(ZONE))
    improved = [cam.step([person(300, 300, score=s)], t, W, H, sample=f"frame-{t}").improved
                for t, s in [(0.0, 0.6), (0.5, 0.7), (1.0, 0.9), (1.5, 0.8), (2.0, 0.95)]]
    assert improved == [[], ["cam-1"], ["cam-1"], [], ["cam-1"]]
    assert cam.best_sample("cam-1") == "frame-2.0"


@pytest.mark.parametrize("fps", [1, 5])
def test_loitering_through_the_tracker_starts_at_the_same_time_at_any_rate(fps):
    cam = camera(LOITERING, old_format(ZONE))
    starts = []
    for t in times(0, 30, (1.1 / fps, 0.9 / fps)):
        x = 100 + 60 * t if t < 3 else 280 + 10 * ((t * 3) % 4)  # enters the zone (x = 200) at t = 1.67
        starts += [r.at for r in cam.step([person(x, 300)], t, W, H).records if r.event_state == "start"]
    assert len(starts) == 1 and 11.67 <= starts[0] <= 11.67 + 1.1 / fps


def test_the_tracker_keeps_a_track_through_one_missed_sample_at_the_types_floor():
    cam = camera(OFF_POST, old_format())  # floor 0.5 fps: samples 2 s apart, track_max_age_sec 5
    ids = [[tr.id for tr in cam.step([person(400, 400)] if t != 4 else [], t, W, H).tracks] for t in (0, 2, 4, 6)]
    assert ids == [[1], [1], [1], [1]]
    short = camera(OFF_POST, old_format(), tracker_conf=TrackerConf(max_age_sec=1.0))
    ids = [[tr.id for tr in short.step([person(400, 400)] if t != 4 else [], t, W, H).tracks] for t in (0, 2, 4, 6)]
    assert ids == [[1], [2], [], [3]]  # every 2 s gap ends every track


def test_an_abandoned_bag_missed_in_two_samples_in_a_row_at_the_floor_stays_one_event():
    # At 0.5 fps (the floor), irregular, the detector misses the bag at 42 and 44 s: 6 s unseen, past the people's
    # lifetime (5 s). Its track lives on (10 s for objects), so the bag is one abandoned object, not a second one.
    cam = camera(ABANDONED, old_format())
    records: list[EventRecord] = []
    for t in times(0, 90, (2.0, 1.0, 3.0)):
        dets = [] if t in (42, 44) else [person(400, 420, label="backpack", w=40, h=50)]
        step = cam.step(dets, t, W, H)
        records += step.records
        assert [tr.id for tr in step.tracks] == [1]
    records += cam.close(90.0)
    assert [(r.event_state, r.at, r.subject) for r in records] == [("start", 30.0, "1"), ("end", 90.0, "1")]


def test_a_false_violation_detected_twice_is_no_event_however_long_its_track_coasts():
    cam = camera(SMOKING, old_format(ZONE))  # floor 1 fps: a track unseen lives 3.25 s, the threshold is 3 s
    records: list[EventRecord] = []
    for t in times(0, 8, (0.1,)):
        dets = [person(300, 400, label="smoking")] if t < 0.2 else []
        records += cam.step(dets, t, W, H).records
    assert records == []


def test_someone_leaving_the_view_next_to_an_intruder_does_not_make_a_second_intrusion():
    cam = camera(INTRUSION, old_format(ZONE))
    # A stands just outside the zone (x < 200) beside B, who stands inside it, 60 px away; A walks out of view at
    # 2 s. A's coasting track must not take over B's detection: B is one intrusion, from 0.5 s (min_inside_sec)
    # until B's track is lost (last seen at 5.9 s, then unseen longer than track_max_age_sec, 2.625 s at 2 fps).
    records: list[EventRecord] = []
    for t in times(0, 9, (0.1,)):
        dets = ([person(170, 400)] if t < 2 else []) + ([person(230, 400)] if t < 6 else [])
        records += cam.step(dets, t, W, H).records
    assert [(r.event_state, r.at, r.subject) for r in records] == [("start", 0.5, "2"), ("end", 8.6, "2")]


def test_reset_and_close_end_the_open_events():
    cam = camera(INTRUSION, old_format(ZONE))
    for t in (0.0, 0.5, 1.0):
        cam.step([person(300, 300), person(400, 300)], t, W, H)
    assert [(r.event_id, r.event_state, r.at) for r in cam.reset(1.2)] == [("cam-1", "end", 1.2),
                                                                           ("cam-2", "end", 1.2)]
    # After a reset the clock may start anew; ids go on, so new events never reuse old tracks' ids.
    step = cam.step([person(300, 300)], 0.0, W, H)
    assert [tr.id for tr in step.tracks] == [3]
    cam.step([person(300, 300)], 0.5, W, H)
    assert [(r.event_id, r.event_state) for r in cam.close(0.7)] == [("cam-3", "end")]
    stats = cam.statistics()
    assert (stats.steps, stats.tracks, stats.events.started, stats.events.ended, stats.events.open) == (5, 1, 3, 3, 0)


def test_params_of_another_type_or_an_unknown_type_are_refused():
    with pytest.raises(TypeError, match="区域入侵 takes IntrusionParams"):
        CameraAnalytics("cam", INTRUSION, decode_task_params(LOITERING, {}))
    with pytest.raises(KeyError, match="no built-in rule for task type"):
        CameraAnalytics("cam", "车辆计数", decode_task_params(LOITERING, {}))


def test_capture_time_going_back_is_refused():
    cam = camera(INTRUSION, {})
    cam.step([], 5.0, W, H)
    with pytest.raises(ValueError, match="capture time went back"):
        cam.step([], 4.0, W, H)
