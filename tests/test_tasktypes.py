"""The nine task types on scripted scenes: tracks given sample by sample at irregular capture times, through the
type's rule and an event book, and the exact records that come out. Then the parameters: defaults, floors, labels,
and every error naming its key path."""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Iterator
from typing import Any, NamedTuple

import msgspec
import pytest
from framewatch.actors.analytics.events import EventBook, EventRecord
from framewatch.actors.analytics.rules import OLD_TASK_TYPES, error_path
from framewatch.actors.analytics.tasks.base import Scene
from framewatch.actors.analytics.tasktypes import TASK_TYPES, decode_task_params
from framewatch.actors.analytics.track import Track
from framewatch.actors.core.messages import Detection

COUNTING, TRIPWIRE, FALL, OFF_POST = "人数统计", "绊线人数统计", "人员跌倒", "人员离岗"
SMOKING, INTRUSION, LOITERING, ABANDONED, HELMET = "吸烟检测", "区域入侵", "徘徊检测", "物品遗留", "安全帽检测"
W, H = 800, 600


class Obj(NamedTuple):
    """One object in one sample: a track id, its box, and whether the detector saw it (else it coasts)."""

    id: int
    box: tuple[float, float, float, float]
    label: str = "person"
    score: float = 0.9
    matched: bool = True
    velocity: tuple[float, float] = (0.0, 0.0)
    """As the tracker measured it, px/s."""


def standing(track_id: int, x: float, y: float, *, w: float = 40, h: float = 100, **kwargs: Any) -> Obj:
    """A box whose foot point (bottom centre) is at (x, y)."""
    return Obj(track_id, (x - w / 2, y - h, x + w / 2, y), **kwargs)


def rect(region_id: str, x1: float, y1: float, x2: float, y2: float, **properties: Any) -> dict:
    return {"id": region_id, "name": region_id.upper(), "type": "rectangle", "points": [[x1, y1], [x2, y2]],
            "properties": properties}


def line(region_id: str, a: tuple[float, float], b: tuple[float, float], direction: str = "bidirectional") -> dict:
    return {"id": region_id, "name": region_id.upper(), "type": "line", "points": [list(a), list(b)],
            "properties": {"direction": direction, "color": "#4ECDC4"}}


def old_format(*regions: dict, **custom: Any) -> dict:
    return {"config_version": "1.0", "regions": list(regions), "algorithm_params": {"custom_params": custom}}


def irregular(start: float, end: float, steps: tuple[float, ...]) -> Iterator[float]:
    """Capture times from ``start`` (included) to ``end`` (excluded), the gaps cycling through ``steps``."""
    t = start
    for dt in itertools.cycle(steps):
        if t >= end - 1e-9:
            return
        yield round(t, 6)
        t += dt


class Run:
    """A task type's rule and an event book, fed tracks; hits and times are kept per track id like a tracker."""

    def __init__(self, task_type: str, algo_config: dict) -> None:
        self.spec = TASK_TYPES[task_type]
        self.params = decode_task_params(task_type, algo_config)
        self.state = self.spec.initial_state()
        custom = self.params.custom
        self.book = EventBook("cam", task_type, alert_interval_sec=custom.alert_interval,
                              end_grace_sec=custom.end_grace_sec, id_prefix="cam")
        self.seen: dict[int, tuple[float, int, float]] = {}
        self.records: list[EventRecord] = []

    def step(self, t: float, *objs: Obj) -> list[EventRecord]:
        tracks = []
        for obj in objs:
            first, hits, last = self.seen.get(obj.id, (t, 0, t))
            if obj.matched:
                hits, last = hits + 1, t
            self.seen[obj.id] = (first, hits, last)
            tracks.append(Track(id=obj.id, label=obj.label, box=obj.box, score=obj.score, first_seen=first,
                                last_seen=last, hits=hits, matched=obj.matched, velocity=obj.velocity))
        out = self.spec.rule(self.params, self.state, Scene(tracks, t, W, H))
        self.state = out.state
        records = self.book.step(t, out.conditions, out.instants, live_tracks={tr.id for tr in tracks}).records
        self.records += records
        return records


def brief(records: list[EventRecord]) -> list[tuple]:
    return [(r.event_id, r.event_state, r.at, r.region_id, r.subject) for r in records]


# --- 人数统计 -------------------------------------------------------------------------------------------------------


def test_counting_reports_on_a_grid_and_has_an_event_while_a_zone_has_more_than_max_count():
    run = Run(COUNTING, {**old_format(rect("hall", 0, 0, 400, 600, max_count=2), rect("door", 400, 0, 800, 600),
                                      count_interval_sec=10), "count_threshold": 2})
    # Samples at 0, 0.7, 2.0 ... 9.7, 11.0 ... 18.7, 20.0, 20.9, 22.5 ... 29.9, 31.5.
    for t in irregular(0, 32, (0.7, 1.3, 0.9, 1.6)):
        crowd = [standing(1, 100, 300), standing(2, 200, 300), standing(3, 300, 300)] if t < 20 else []
        run.step(t, *crowd, standing(4, 600, 300))
    reports = [r for r in run.records if r.event_state == "instant"]
    # People count from their second sample (0.7): the report at 0 sees nobody. Then the first sample at or after
    # 10, 20, 30 s.
    assert [(r.at, r.counts) for r in reports] == [
        (0.0, {"person": 0, "hall": 0, "door": 0}),
        (11.0, {"person": 4, "hall": 3, "door": 1}),
        (20.0, {"person": 1, "hall": 0, "door": 1}),
        (31.5, {"person": 1, "hall": 0, "door": 1}),
    ]
    assert all((r.rule, r.region_id, r.started_at, r.ended_at) == ("count_report", "", r.at, r.at) for r in reports)
    events = [r for r in run.records if r.event_state != "instant"]
    # hall: 3 > max_count 2 from 0.7 until 20.0 (ended 1 s of grace later, at 22.5); door (no max_count): 1 person
    # < count_threshold 2, never.
    assert [(r.event_id, r.event_state, r.at, r.region_id, r.ended_at) for r in events] == [
        ("cam-2", "start", 0.7, "hall", None), ("cam-2", "end", 22.5, "hall", 20.0)]
    assert events[0].counts == {"person": 3} and events[0].track_ids == (1, 2, 3)
    assert events[0].region_name == "HALL" and events[0].subject == ""


def test_max_count_people_is_still_fine_and_an_area_without_it_alerts_at_the_threshold():
    run = Run(COUNTING, old_format(rect("hall", 0, 0, 400, 600, max_count=2), rect("door", 400, 0, 800, 600),
                                   count_interval_sec=0))
    for t in (0.0, 1.0, 2.0):
        run.step(t, standing(1, 100, 300), standing(2, 200, 300), standing(3, 600, 300))
    # hall holds 2 = max_count: fine; door has 1 >= the default threshold 1.
    assert brief(run.records) == [("cam-1", "start", 1.0, "door", "")]


def test_a_long_gap_gives_one_count_report_not_a_burst():
    run = Run(COUNTING, old_format(count_interval_sec=5))
    for t in (0.0, 4.0, 5.5, 47.0, 48.0, 50.2):
        run.step(t, standing(1, 100, 300))
    assert [r.at for r in run.records if r.event_state == "instant"] == [0.0, 5.5, 47.0, 50.2]


# --- 绊线人数统计 ----------------------------------------------------------------------------------------------------

GATE = line("gate", (100, 300), (700, 300))


def walk(track_id: int, x: float, y0: float, y1: float, t0: float, t: float, speed: float = 100.0) -> Obj | None:
    """A person walking straight down (y0 < y1) or up at ``speed`` px/s from ``t0``; None before and after."""
    span = abs(y1 - y0) / speed
    if not t0 <= t <= t0 + span:
        return None
    return standing(track_id, x, y0 + (y1 - y0) * (t - t0) / span)


def test_tripwire_counts_each_crossing_once_per_direction_with_running_totals():
    run = Run(TRIPWIRE, old_format(GATE))
    plan = [(1, 200, 150, 450, 0.0), (2, 300, 450, 150, 1.0), (3, 400, 150, 450, 2.0), (4, 500, 150, 450, 3.0),
            (5, 600, 450, 150, 4.0)]
    for t in irregular(0, 8, (0.25, 0.4, 0.3, 0.33)):
        run.step(t, *[o for o in (walk(i, x, y0, y1, t0, t) for i, x, y0, y1, t0 in plan) if o is not None])
    assert [(r.event_state, r.rule, r.region_id, r.subject, r.direction, r.counts) for r in run.records] == [
        ("instant", "line_crossing", "gate", "1", "in", {"in": 1, "out": 0}),
        ("instant", "line_crossing", "gate", "2", "out", {"in": 1, "out": 1}),
        ("instant", "line_crossing", "gate", "3", "in", {"in": 2, "out": 1}),
        ("instant", "line_crossing", "gate", "4", "in", {"in": 3, "out": 1}),
        ("instant", "line_crossing", "gate", "5", "out", {"in": 3, "out": 2}),
    ]
    # Each counts at its first sample 15 px past the line (1.5 s + 0.15 s after it set off), not before.
    for record, (_, _, _, _, t0) in zip(run.records, plan, strict=True):
        assert t0 + 1.65 <= record.at < t0 + 1.65 + 0.4
    assert len({r.event_id for r in run.records}) == 5


def test_a_person_standing_on_the_line_counts_nothing():
    run = Run(TRIPWIRE, old_format(GATE))
    jitter = itertools.cycle([-8, 5, 12, -14, 0, 9, -3, 14, -11, 6])
    for t in irregular(0, 60, (0.2, 0.35, 0.5)):
        run.step(t, standing(1, 400, 300 + next(jitter)))
    # One walking up to the line, standing on it, and going back where they came from.
    for t in irregular(60, 70, (0.3, 0.25)):
        y = 200 + 10 * (t - 60) if t < 65 else 300 - 10 * (t - 65)
        run.step(t, standing(2, 400, y + next(jitter) * (t < 65) * 0.5))
    assert run.records == []


def test_a_tall_person_standing_on_the_line_with_gaussian_jitter_of_their_size_counts_nothing_at_10_fps():
    # 5 px of foot jitter on a 150 px person is what a detector gives; 15 px is 3 of those, and 10 minutes at 10 fps
    # would cross it both ways. The margin grows with the box (0.15 x 150 = 22.5 px, 4.5 sd).
    run = Run(TRIPWIRE, old_format(GATE))
    rng = random.Random(5)
    for k in range(6000):
        run.step(k / 10, standing(1, 400, 250 + 5 * k / 10) if k < 100 else
                 standing(1, 400, 300 + rng.gauss(0, 5), h=150))
    assert run.records == []
    # The same walk across the line counts once, at its first sample 22.5 px past it.
    run = Run(TRIPWIRE, old_format(GATE))
    for k in range(30):
        run.step(k / 10, standing(1, 400, 250 + 5 * k, h=150))
    assert [(r.direction, r.at) for r in run.records] == [("in", 1.5)]


def test_the_margin_is_the_larger_of_cross_margin_px_and_cross_margin_ratio_of_the_box_height():
    for custom, h, first in [({}, 60, 1.2), ({}, 200, 1.3), ({"cross_margin_ratio": 0}, 200, 1.2),
                             ({"cross_margin_px": 40, "cross_margin_ratio": 0.1}, 200, 1.4)]:
        run = Run(TRIPWIRE, old_format(GATE, **custom))
        for k in range(30):
            run.step(k / 10, standing(1, 400, 200 + 10 * k, h=h))
        # 10 px per sample from 100 px above the line: 15 px past it at 1.2 s (0.15 x 60 is less), 30 px
        # (0.15 x 200) at 1.3 s, 40 px at 1.4 s.
        assert [r.at for r in run.records] == [first], custom


def test_jitter_around_the_line_after_a_crossing_never_counts_twice():
    run = Run(TRIPWIRE, old_format(GATE))
    jitter = itertools.cycle([5, -7, 12, -13, 17, -2, 9])  # 300 + jitter: 287..317, never 285 again
    for t in irregular(0, 30, (0.3, 0.45, 0.2)):
        y = 150 + 100 * t if t < 1.5 else 300 + next(jitter)
        run.step(t, standing(1, 400, y))
    assert [(r.direction, r.counts) for r in run.records] == [("in", {"in": 1, "out": 0})]


def test_a_line_with_a_direction_counts_only_that_direction():
    for direction, expected in [("in", [("in", {"in": 1, "out": 0})]), ("out", [("out", {"in": 0, "out": 1})])]:
        run = Run(TRIPWIRE, old_format(line("gate", (100, 300), (700, 300), direction)))
        for t in irregular(0, 4, (0.3, 0.2)):
            run.step(t, *[o for o in (walk(1, 200, 150, 450, 0.0, t), walk(2, 600, 450, 150, 0.5, t)) if o])
        assert [(r.direction, r.counts) for r in run.records] == expected


def test_walking_round_the_end_of_a_line_counts_nothing():
    run = Run(TRIPWIRE, old_format(GATE))
    path = [(650, 200), (720, 200), (790, 200), (790, 300), (790, 400), (720, 400), (650, 400), (600, 400)]
    for t, (x, y) in zip(itertools.count(0, 0.5), path):
        run.step(t, standing(1, x, y))
    assert run.records == []
    # The same corners, crossing inside the segment: one crossing.
    run = Run(TRIPWIRE, old_format(GATE))
    for t, (x, y) in zip(itertools.count(0, 0.5), [(650, 200), (650, 300), (650, 400)]):
        run.step(t, standing(1, x, y))
    assert [r.direction for r in run.records] == ["in"]


def test_a_coasting_box_past_the_line_is_not_a_crossing_until_the_person_is_seen_there():
    run = Run(TRIPWIRE, old_format(GATE))
    run.step(0.0, standing(1, 400, 250))
    run.step(0.5, standing(1, 400, 350, matched=False))
    assert run.records == []
    run.step(1.5, standing(1, 400, 360))
    assert [(r.at, r.direction, r.detections) for r in run.records] == [
        (1.5, "in", (Detection("person", 0.9, (380, 260, 420, 360)),))]


def test_in_is_left_to_right_of_the_line_as_drawn_from_its_first_point():
    # Drawn right to left, a horizontal line's right is above it: walking up is "in". Drawn top to bottom, a
    # vertical line's right is on the image's left: walking leftwards is "in".
    for region, start, end in [(line("back", (700, 300), (100, 300)), (400, 450), (400, 150)),
                               (line("side", (400, 0), (400, 600)), (550, 300), (250, 300))]:
        run = Run(TRIPWIRE, old_format(region))
        for t, k in zip(itertools.count(0, 0.25), range(11)):
            run.step(t, standing(1, start[0] + (end[0] - start[0]) * k / 10, start[1] + (end[1] - start[1]) * k / 10))
        assert [(r.region_id, r.direction) for r in run.records] == [(region["id"], "in")]


def test_every_enabled_line_has_its_own_totals_and_a_disabled_one_counts_nothing():
    run = Run(TRIPWIRE, old_format(GATE, line("exit", (100, 500), (700, 500)),
                                   {**line("off", (100, 400), (700, 400)), "enabled": False}))
    for t in irregular(0, 5, (0.25,)):
        run.step(t, *[o for o in (walk(1, 400, 150, 580, 0.0, t),) if o])
    assert [(r.region_id, r.region_name, r.counts) for r in run.records] == [
        ("gate", "GATE", {"in": 1, "out": 0}), ("exit", "EXIT", {"in": 1, "out": 0})]


# --- 区域入侵 --------------------------------------------------------------------------------------------------------

ZONE = rect("zone", 200, 200, 600, 500)


def test_a_one_sample_flicker_is_no_intrusion_and_a_stay_is_one_event_until_the_person_leaves():
    run = Run(INTRUSION, old_format(ZONE))
    run.step(0.0, standing(1, 100, 300))
    run.step(0.4, standing(1, 300, 300))  # one sample inside
    run.step(0.9, standing(1, 100, 300))
    run.step(1.3)  # gone
    # Seen inside once, then coasting for 3 s (the tracker keeps it, nobody sees it): one sample is no intrusion.
    run.step(1.5, standing(5, 500, 300))
    run.step(2.5, standing(5, 500, 300, matched=False))
    run.step(4.5, standing(5, 500, 300, matched=False))
    assert run.records == []
    run.step(4.6)
    for t in (5.0, 5.2, 5.45, 5.6, 6.0, 7.1):
        run.step(t, standing(2, 300, 300))
    for t in (8.0, 8.3, 8.8, 9.1, 10.0):
        run.step(t, standing(2, 100, 300))
    # min_inside_sec 0.5 is reached at 5.6 (5.45 is 0.45 s in); out from 8.0, ended 1 s (the grace) later.
    assert brief(run.records) == [("cam-1", "start", 5.6, "zone", "2"), ("cam-1", "end", 9.1, "zone", "2")]
    start, end = run.records
    assert (start.rule, start.region_name, start.track_ids, end.ended_at) == ("intrusion", "ZONE", (2,), 8.0)


def test_two_samples_inside_make_an_intrusion_even_after_a_long_gap_and_a_lost_track_ends_it_at_once():
    run = Run(INTRUSION, old_format(ZONE))
    run.step(10.0, standing(7, 300, 300))
    run.step(13.0, standing(7, 310, 300))
    run.step(14.0, standing(7, 320, 300, matched=False))  # coasting: still inside, no detection
    run.step(14.5)
    assert brief(run.records) == [("cam-1", "start", 13.0, "zone", "7"), ("cam-1", "end", 14.5, "zone", "7")]
    assert run.records[1].ended_at == 14.5


def test_a_stay_that_lapses_less_than_the_grace_is_the_same_intrusion():
    run = Run(INTRUSION, old_format(ZONE, end_grace_sec=2.0))
    for t, x in [(0.0, 300), (0.5, 300), (1.0, 100), (2.4, 100), (2.9, 300), (3.5, 100), (5.5, 100)]:
        run.step(t, standing(1, x, 300))
    assert brief(run.records) == [("cam-1", "start", 0.5, "zone", "1"), ("cam-1", "end", 5.5, "zone", "1")]


def test_alert_interval_gives_updates_of_a_long_intrusion():
    run = Run(INTRUSION, old_format(ZONE, alert_interval=5))
    for t in irregular(0, 17, (0.7, 1.1, 0.45)):
        run.step(t, standing(1, 300, 300))
    run.step(17.0)
    # Samples at 0, 0.7, 1.8, 2.25, 2.95 ... 5.2, 6.3 ... 11.25, 11.95 ... 16.45.
    assert [(r.event_state, r.at) for r in run.records] == [
        ("start", 0.7), ("update", 6.3), ("update", 11.95), ("end", 17.0)]
    assert len({r.event_id for r in run.records}) == 1


def test_intrusion_without_regions_watches_the_whole_frame_or_the_roi_and_disabled_areas_watch_nothing():
    whole, roi = Run(INTRUSION, {}), Run(INTRUSION, {"roi": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]})
    off = Run(INTRUSION, old_format({**ZONE, "enabled": False}))
    for run in (whole, roi, off):
        for t in (0.0, 1.0):
            run.step(t, standing(1, 100, 300), standing(2, 700, 300))
    assert brief(whole.records) == [("cam-1", "start", 1.0, "", "1"), ("cam-2", "start", 1.0, "", "2")]
    assert brief(roi.records) == [("cam-1", "start", 1.0, "roi", "2")]
    assert off.records == []


# --- 徘徊检测 --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [1, 5])
def test_loitering_counts_seconds_not_samples(fps):
    run = Run(LOITERING, old_format(ZONE))
    # Walks in at 100 px/s, crossing the zone's edge (x = 200) at t = 3.3, then wanders inside until t = 40.
    steps = (1.2 / fps, 0.8 / fps)  # irregular around the rate
    for t in irregular(0, 40, steps):
        x = 100 * (t - 1.3) if t < 4.3 else 230 + 20 * ((t * 7) % 5)
        run.step(t, standing(1, x, 300))
    run.step(40.0)
    assert [r.event_state for r in run.records] == ["start", "end"]
    start = run.records[0]
    assert 13.3 <= start.at <= 13.3 + 1.2 / fps  # min_dwell_time 10 s after entering, give or take one sample
    assert start.rule == "loitering" and start.subject == "1"


def test_loitering_min_dwell_time_comes_from_custom_params():
    run = Run(LOITERING, old_format(ZONE, min_dwell_time=3))
    for t in irregular(0, 6, (0.5,)):
        run.step(t, standing(1, 300, 300))
    assert brief(run.records) == [("cam-1", "start", 3.0, "zone", "1")]


# --- 人员离岗 --------------------------------------------------------------------------------------------------------

POST = rect("post", 300, 200, 500, 500)


def test_off_post_alerts_after_the_absence_and_ends_when_the_guard_is_back():
    run = Run(OFF_POST, old_format(POST))
    times = list(irregular(0, 80, (2.0, 2.5, 1.5)))
    for t in times:
        if t <= 10:
            run.step(t, standing(1, 400, 400))  # on duty
        elif t < 60:
            # A false detection for one sample during the absence changes nothing.
            run.step(t, *([standing(2, 420, 400, score=0.4)] if t == 36.0 else []))
        else:
            run.step(t, standing(3, 400, 400))  # back (a new track)
    gone = next(t for t in times if t > 10)  # 10.5: the first sample without the guard
    assert brief(run.records) == [("cam-1", "start", 40.5, "post", ""), ("cam-1", "end", 64.5, "post", "")]
    start, end = run.records
    assert start.at - gone >= 30 and (start.rule, start.counts, start.track_ids) == ("off_post", {"person": 0}, ())
    assert end.ended_at == 62.0  # counted from the returning guard's second sample (60.0, 62.0); 1 s of grace


def test_off_post_needs_min_people():
    run = Run(OFF_POST, old_format(POST, min_people=2, absence_sec=10))
    for t in irregular(0, 30, (2.0,)):
        run.step(t, standing(1, 400, 400), *([standing(2, 350, 400)] if t < 6 else []))
    assert brief(run.records) == [("cam-1", "start", 16.0, "post", "")]
    assert run.records[0].counts == {"person": 1} and run.records[0].track_ids == (1,)


# --- 物品遗留 --------------------------------------------------------------------------------------------------------


def bag(track_id: int, x: float, y: float, **kwargs: Any) -> Obj:
    return standing(track_id, x, y, w=40, h=40, label="backpack", **kwargs)


def test_a_bag_left_alone_is_an_event_until_its_owner_comes_back():
    run = Run(ABANDONED, old_format())
    jitter = itertools.cycle([0, 3, -4, 2, -1])
    for t in irregular(0, 90, (2.0, 1.5, 2.5)):
        owner = [standing(1, 440, 420)] if t <= 10 or t >= 70 else []  # beside the bag, away 10..70 s
        run.step(t, bag(2, 400 + next(jitter), 420), *owner)
    left = 12.0  # first sample without the owner; back at 72.0, the event ends a sample (1 s of grace) later
    assert brief(run.records) == [("cam-1", "start", 42.0, "", "2"), ("cam-1", "end", 74.0, "", "2")]
    start, end = run.records
    assert start.at - left >= 30 and start.rule == "abandoned_object" and start.track_ids == (2,)
    assert start.detections[0].label == "backpack" and end.ended_at == 72.0


def test_a_removed_bag_ends_at_once_and_a_carried_bag_is_never_abandoned():
    run = Run(ABANDONED, old_format(abandon_sec=10))
    for t in irregular(0, 20, (2.0,)):
        run.step(t, bag(2, 400, 420))
    run.step(21.0)  # taken away: its track is lost
    assert brief(run.records) == [("cam-1", "start", 10.0, "", "2"), ("cam-1", "end", 21.0, "", "2")]
    moving = Run(ABANDONED, old_format(abandon_sec=10))
    for t in irregular(0, 60, (2.0,)):
        moving.step(t, bag(3, 100 + 10 * t, 420))  # 20 px between samples, nobody near
    assert moving.records == []


def test_a_jittering_bag_stays_still_and_one_stray_sample_does_not_restart_its_clock():
    run = Run(ABANDONED, old_format(abandon_sec=10))
    rng = random.Random(2)
    for k in range(160):  # 10 fps, 5 px jitter on each corner (3.5 on the centre), one sample 30 px off at 5 s
        dx = 30 if k == 50 else rng.gauss(0, 3.5)
        run.step(k / 10, bag(2, 400 + dx, 420 + rng.gauss(0, 3.5)))
    assert brief(run.records) == [("cam-1", "start", 10.0, "", "2")]
    # Moved for good: two samples in a row away from the rest re-anchor it, and its clock starts again.
    run.step(16.0, bag(2, 500, 420))
    run.step(16.1, bag(2, 500, 420))
    assert run.state.objects[2].unattended_since == 16.1


def walking(track_id: int, x: float, y: float, vx: float, **kwargs: Any) -> Obj:
    """A person whose track's velocity is ``vx`` px/s (as a tracker would have measured)."""
    return standing(track_id, x, y, **kwargs)._replace(velocity=(vx, 0.0))


def test_a_passer_by_does_not_restart_an_abandoned_bags_clock_but_someone_stopping_by_it_does():
    run = Run(ABANDONED, old_format(abandon_sec=10))
    for t in irregular(0, 30, (1.0,)):
        # Someone walks past the bag at 100 px/s (1 size/s) from 4 to 9 s, within reach from 6 to 8 s.
        people = [walking(1, 100 + 100 * (t - 4), 420, 100.0)] if 4 <= t <= 9 else []
        run.step(t, bag(2, 400, 420), *people)
    assert brief(run.records) == [("cam-1", "start", 10.0, "", "2")]
    run.step(30.0, bag(2, 400, 420), standing(3, 440, 420))  # stops beside it
    run.step(31.0, bag(2, 400, 420), standing(3, 440, 420))
    assert brief(run.records)[-1] == ("cam-1", "end", 31.0, "", "2")


def test_an_owner_walking_off_keeps_the_clock_from_starting_until_out_of_reach():
    run = Run(ABANDONED, old_format(abandon_sec=10))
    for t in irregular(0, 20, (1.0,)):
        people = [walking(1, 440 + 50 * max(0.0, t - 2), 420, 50.0 if t > 2 else 0.0)] if t <= 8 else []
        run.step(t, bag(2, 400, 420), *people)
    # Reach: 80 px from the bag's centre to the person's box, whose left edge passes x = 480 at 3.2 s: walking
    # (0.5 sizes/s) at 3 s, still within reach, the clock does not start yet; it starts at 4 s.
    assert brief(run.records) == [("cam-1", "start", 14.0, "", "2")]


def test_the_owner_distance_and_the_object_labels_are_configurable():
    near = Run(ABANDONED, old_format(abandon_sec=4, owner_distance_px=200, object_labels=["suitcase"]))
    for t in irregular(0, 10, (1.0,)):
        near.step(t, standing(1, 580, 420), bag(2, 400, 420), standing(3, 100, 420, label="suitcase", w=60, h=60))
    # The person is 140 px from the backpack (within 200 px) - and backpacks are not watched anyway; the suitcase is.
    assert brief(near.records) == [("cam-1", "start", 4.0, "", "3")]


# --- 人员跌倒 --------------------------------------------------------------------------------------------------------

UPRIGHT, LYING, SQUAT = dict(w=40, h=100), dict(w=100, h=40), dict(w=60, h=55)


def test_a_fall_is_an_upright_person_lying_for_the_duration_and_ends_when_they_get_up():
    run = Run(FALL, old_format())
    for t in irregular(0, 12, (0.5, 0.6, 0.4)):
        pose = UPRIGHT if t < 3 or t > 8 else LYING
        if 5.5 < t < 6.5:
            pose = SQUAT  # the box jitters between the thresholds: still fallen
        run.step(t, standing(1, 400, 400, **pose))
    # Samples 0, 0.5, 1.1 ... 3.0 ... 5.0 ... 8.0, 8.6, 9.0, 9.5, 10.1. Lying from 3.0; the event at the first sample
    # 2 s later; upright again at 8.6, ended at the first sample 1 s (the grace) after.
    assert brief(run.records) == [("cam-1", "start", 5.0, "", "1"), ("cam-1", "end", 10.1, "", "1")]
    assert run.records[1].ended_at == 8.6 and run.records[0].rule == "fall"


def test_no_fall_when_lying_from_the_start_squatting_or_lying_briefly():
    run = Run(FALL, old_format())
    for t in irregular(0, 10, (0.5,)):
        run.step(t, standing(1, 100, 400, **LYING),  # lying when first seen: a known blind spot
                 standing(2, 300, 400, **(UPRIGHT if t < 2 else SQUAT)),
                 standing(3, 500, 400, **(LYING if 2 <= t < 3.5 else UPRIGHT)))  # 1.5 s < 2 s
    assert run.records == []


def test_fall_thresholds_come_from_custom_params():
    run = Run(FALL, old_format(aspect_ratio_threshold=1.05, fall_duration_threshold=1))
    for t in irregular(0, 4, (0.5,)):
        run.step(t, standing(1, 300, 400, **(UPRIGHT if t < 1 else SQUAT)))  # 60/55 = 1.09 >= 1.05
    assert brief(run.records) == [("cam-1", "start", 2.0, "", "1")]


# --- 吸烟检测, 安全帽检测 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task_type", "label", "start"), [(HELMET, "no_helmet", 3.0), (SMOKING, "smoking", 5.0)])
def test_a_persistent_violation_is_one_event_and_a_flicker_none(task_type, label, start):
    """Samples at 1, 1.8, 3.0, 3.8, 5.0...: alert_delay 2 s gives 3.0, smoking_duration_threshold 3 s 5.0."""
    run = Run(task_type, old_format())
    run.step(0.0, standing(9, 600, 300, label=label))  # one sample, then gone
    for t in irregular(1, 10, (0.8, 1.2)):
        run.step(t, standing(1, 300, 300, label=label), standing(2, 400, 300, label="helmet"))
    run.step(10.5)
    assert brief(run.records) == [("cam-1", "start", start, "", "1"), ("cam-1", "end", 10.5, "", "1")]
    assert run.records[0].rule == TASK_TYPES[task_type].params_type.RULE


def test_a_violation_seen_in_two_samples_then_coasting_past_the_threshold_is_no_event():
    # A false "smoking" box seen twice at 10 fps, then its track coasts (the tracker keeps it 3.25 s at the 1 fps
    # floor): time coasting is no stay, or nearly every short false positive became a 3 s violation.
    run = Run(SMOKING, old_format())
    run.step(0.0, standing(1, 300, 300, label="smoking"))
    run.step(0.1, standing(1, 301, 300, label="smoking"))
    for t in irregular(0.2, 3.4, (0.1,)):
        run.step(t, standing(1, 301, 300, label="smoking", matched=False))
    assert run.records == []
    # Seen again inside: the stay goes on from its first sample, and lasts 3 s at the next match.
    run.step(3.4, standing(1, 300, 300, label="smoking"))
    assert brief(run.records) == [("cam-1", "start", 3.4, "", "1")]


def test_violation_labels_delay_and_zones_are_configurable():
    run = Run(HELMET, old_format(ZONE, violation_labels=["head"], alert_delay=0.5))
    for t in irregular(0, 3, (0.5,)):
        run.step(t, standing(1, 300, 300, label="head"), standing(2, 700, 300, label="head"),
                 standing(3, 300, 300, label="no_helmet"))
    assert brief(run.records) == [("cam-1", "start", 0.5, "zone", "1")]


# --- the rules are pure ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", OLD_TASK_TYPES)
def test_a_rule_never_changes_the_state_it_is_given(task_type):
    run = Run(task_type, old_format(line("gate", (100, 300), (700, 300)), count_interval_sec=1))
    for t in (0.0, 0.5, 1.0):
        run.step(t, standing(1, 400, 250 + 50 * t), bag(2, 200, 400), standing(3, 500, 400, label="no_helmet"))
    before = copy.deepcopy(run.state)
    tracks = [Track(id=1, label="person", box=(380, 300, 420, 400), score=0.9, first_seen=0, last_seen=2, hits=4,
                    matched=True)]
    first = run.spec.rule(run.params, run.state, Scene(tracks, 2.0, W, H))
    again = run.spec.rule(run.params, run.state, Scene(tracks, 2.0, W, H))
    assert run.state == before and first == again


# --- parameters -----------------------------------------------------------------------------------------------------


def test_every_old_task_type_has_a_rule_a_floor_and_its_labels():
    assert sorted(TASK_TYPES) == sorted(OLD_TASK_TYPES)
    floors = {name: spec.default_min_fps for name, spec in TASK_TYPES.items()}
    assert floors == {COUNTING: 1, TRIPWIRE: 3, FALL: 2, OFF_POST: 0.5, SMOKING: 1, INTRUSION: 2, LOITERING: 2,
                      ABANDONED: 0.5, HELMET: 1}
    labels = {name: sorted(decode_task_params(name, {}).labels()) for name in TASK_TYPES}
    assert labels == {**{name: ["person"] for name in TASK_TYPES}, ABANDONED: ["backpack", "handbag", "person",
                                                                              "suitcase"],
                      SMOKING: ["smoking"], HELMET: ["no_helmet"]}
    assert decode_task_params(TRIPWIRE, old_format(min_fps=5)).min_fps == 5
    assert decode_task_params(OFF_POST, {}).track_max_age_sec == 5.0  # survives one missed sample at 0.5 fps
    # At 3 fps, one missed sample is 0.83 s: a backlog's 2 s hole on top of an interval ends fewer tracks.
    assert decode_task_params(TRIPWIRE, {}).track_max_age_sec == pytest.approx(2 + 1.25 / 3)
    assert decode_task_params(TRIPWIRE, old_format(track_max_age_sec=4)).track_max_age_sec == 4
    assert decode_task_params(TRIPWIRE, {}).track_max_age_by_label() == {}
    # Abandoned objects stand still: their tracks survive two long gaps at 0.5 fps and a backlog; people's 5 s.
    abandoned = decode_task_params(ABANDONED, {})
    assert abandoned.track_max_age_sec == 5.0
    assert abandoned.track_max_age_by_label() == {"backpack": 10.0, "handbag": 10.0, "suitcase": 10.0}
    assert decode_task_params(ABANDONED, old_format(object_labels=["bag"], object_track_max_age_sec=20)
                              ).track_max_age_by_label() == {"bag": 20.0}


def test_the_old_format_keeps_unknown_keys_and_the_old_tracking_keys():
    conf = {**old_format(line("gate", (300, 200), (600, 200), "in"), track_enabled=True, track_max_age=30,
                         min_dwell_time=3, alert_interval=5, count_mode="enter"),
            "task_id": "cam_gate_001", "created_at": "2024-01-01", "whatever": {"x": 1}}
    conf["algorithm_params"].update(confidence_threshold=0.7, iou_threshold=0.5, frame_skip=0)
    for name in TASK_TYPES:
        params = decode_task_params(name, conf)
        assert params.custom.alert_interval == 5 and params.custom.track_max_age == 30
        assert params.algorithm_params.confidence_threshold == 0.7
    # The seven types without a form of their own take whatever a service may want.
    assert decode_task_params(SMOKING, {"sensitivity": 3}).custom.smoking_duration_threshold == 3.0


@pytest.mark.parametrize(("task_type", "algo_config", "reason", "path"), [
    (LOITERING, old_format(min_dwell_time=-1), "Expected `float` >= 0.0",
     "$.algorithm_params.custom_params.min_dwell_time"),
    (TRIPWIRE, old_format(cross_margin_px="wide"), "Expected `float`, got `str`",
     "$.algorithm_params.custom_params.cross_margin_px"),
    (FALL, old_format(aspect_ratio_threshold=0.8), "Expected `float` >= 1.0",
     "$.algorithm_params.custom_params.aspect_ratio_threshold"),
    (FALL, old_format(fall_duration_threshold=float("inf")), "Expected `float` <= 86400.0",
     "$.algorithm_params.custom_params.fall_duration_threshold"),
    (ABANDONED, old_format(object_labels=[]), "Expected `array` of length >= 1",
     "$.algorithm_params.custom_params.object_labels"),
    (ABANDONED, old_format(object_labels=["person"]),
     "'person' is the people's label, it cannot also be an object label",
     "$.algorithm_params.custom_params.object_labels"),
    (OFF_POST, old_format(min_people=0), "Expected `int` >= 1", "$.algorithm_params.custom_params.min_people"),
    (HELMET, old_format(violation_labels=[""]), "Expected `str` of length >= 1",
     "$.algorithm_params.custom_params.violation_labels[0]"),
    (INTRUSION, old_format(alert_interval=-5), "Expected `float` >= 0.0",
     "$.algorithm_params.custom_params.alert_interval"),
    (COUNTING, old_format(min_fps=0), "Expected `float` >= 0.01", "$.algorithm_params.custom_params.min_fps"),
    (SMOKING, {"algorithm_params": {"custom_params": []}}, "Expected `object`, got `array`",
     "$.algorithm_params.custom_params"),
    (TRIPWIRE, old_format(line("gate", (1, 1), (1, 1))), "a line needs two distinct points, got [1, 1] twice",
     "$.regions[0].points"),
    (COUNTING, old_format(rect("person", 0, 0, 10, 10)),
     "region id 'person' is also a count name of the rule; rename the region", "$.regions[0].id"),
    (INTRUSION, {"roi": [[0, 0], [1, 0], [1, 1]], "regions": [ZONE]},
     "roi (fractions of the frame) and polygon/rectangle regions (pixels) cannot be combined; keep one", "$.roi"),
    (INTRUSION, {"min_inside_sec": 1}, "Object contains unknown field `min_inside_sec`", "$"),
    (COUNTING, {"count_treshold": 3}, "Object contains unknown field `count_treshold`", "$"),
])
def test_a_bad_parameter_is_refused_with_its_key_path(task_type, algo_config, reason, path):
    with pytest.raises(msgspec.ValidationError) as caught:
        decode_task_params(task_type, algo_config)
    assert error_path(caught.value) == (reason, path)


def test_an_unknown_task_type_has_no_params():
    with pytest.raises(KeyError, match="no built-in rule for task type '车辆计数'"):
        decode_task_params("车辆计数", {})
