"""The event book: one event per lasting condition, with a start, updates at most every alert_interval, one end;
instants; the best shot; the bound on open events."""

from __future__ import annotations

import re

import pytest
from framewatch.actors.analytics.events import Condition, EventBook, EventRecord, Instant
from framewatch.actors.core.messages import Detection

TASK = "区域入侵"


def person(score: float) -> Detection:
    return Detection("person", score, (10, 10, 50, 110))


def inside(track_id: int, score: float = 0.8) -> Condition:
    return Condition(rule="intrusion", region_id="zone", region_name="禁区", subject=str(track_id),
                     track_ids=(track_id,), detections=(person(score),), score=score)


def book(**kwargs: float) -> EventBook:
    return EventBook("cam", TASK, id_prefix="cam", **kwargs)


def states(records: list[EventRecord]) -> list[tuple[str, str, float]]:
    return [(r.event_id, r.event_state, r.at) for r in records]


def run(events: EventBook, script: list[tuple[float, list[Condition]]], live: set[int] | None = None,
        ) -> list[EventRecord]:
    records: list[EventRecord] = []
    for t, conditions in script:
        records += events.step(t, conditions, live_tracks=live).records
    return records


def test_a_condition_held_over_many_samples_is_one_event_with_a_start_and_an_end():
    events = book(end_grace_sec=1.0)
    times = [0.0, 0.4, 1.3, 1.5, 2.9]
    records = run(events, [(t, [inside(7)]) for t in times] + [(3.1, []), (3.8, []), (4.0, []), (4.1, []),
                                                               (5.0, [])])
    assert states(records) == [("cam-1", "start", 0.0), ("cam-1", "end", 4.1)]  # 4.1 - 3.1 is 0.9999999999999996
    start, end = records
    assert (start.started_at, start.ended_at, start.detections, start.track_ids) == (0.0, None, (person(0.8),), (7,))
    assert (end.started_at, end.ended_at, end.detections) == (0.0, 3.1, ())  # ended when first missed, at 3.1
    assert (end.rule, end.region_id, end.region_name, end.subject, end.task_type) == (
        "intrusion", "zone", "禁区", "7", TASK)
    assert events.statistics().open == 0


def test_updates_come_at_most_every_alert_interval_of_capture_time():
    events = book(alert_interval_sec=5.0, end_grace_sec=0.0)
    times = [0.0, 2.0, 4.9, 5.1, 7.0, 9.9, 10.2, 10.3, 16.0, 16.5]
    records = run(events, [(t, [inside(7)]) for t in times] + [(17.0, [])])
    assert states(records) == [("cam-1", "start", 0.0), ("cam-1", "update", 5.1), ("cam-1", "update", 10.2),
                               ("cam-1", "update", 16.0), ("cam-1", "end", 17.0)]


def test_without_alert_interval_a_long_event_has_no_updates():
    records = run(book(end_grace_sec=0.0), [(float(t), [inside(7)]) for t in range(600)] + [(600.0, [])])
    assert [r.event_state for r in records] == ["start", "end"]


def test_a_condition_back_within_the_grace_continues_the_same_event():
    events = book(end_grace_sec=2.0)
    records = run(events, [(0.0, [inside(7)]), (1.0, []), (2.9, [inside(7)]), (3.0, []), (4.9, []), (5.0, [])])
    assert states(records) == [("cam-1", "start", 0.0), ("cam-1", "end", 5.0)]
    assert records[-1].ended_at == 3.0
    # After the end, the same key is a new event with a new id.
    assert states(events.step(6.0, [inside(7)]).records) == [("cam-2", "start", 6.0)]


def test_an_event_bound_to_a_lost_track_ends_at_once_and_a_region_wide_one_waits_for_the_grace():
    crowd = Condition(rule="people_count", region_id="hall", track_ids=(7, 8), counts={"person": 2})
    events = book(end_grace_sec=10.0)
    events.step(0.0, [inside(7), crowd], live_tracks={7, 8})
    assert events.step(1.0, [], live_tracks={7, 8}).records == []  # both within the grace
    ended = events.step(2.0, [], live_tracks={9}).records  # the tracker dropped 7 and 8
    assert states(ended) == [("cam-1", "end", 2.0)]
    assert ended[0].ended_at == 1.0
    assert states(events.step(11.0, [], live_tracks=set()).records) == [("cam-2", "end", 11.0)]


def test_an_instant_is_one_record_with_its_own_id_and_its_image_is_kept():
    events = book()
    crossing = Instant(rule="line_crossing", region_id="gate", subject="3", direction="in", track_ids=(3,),
                       detections=(person(0.7),), score=0.7, counts={"in": 1, "out": 0})
    step = events.step(4.5, [], [crossing, crossing])
    assert [(r.event_id, r.event_state, r.started_at, r.at, r.ended_at) for r in step.records] == [
        ("cam-1", "instant", 4.5, 4.5, 4.5), ("cam-2", "instant", 4.5, 4.5, 4.5)]
    assert step.improved == ["cam-1", "cam-2"]
    assert step.records[0].direction == "in" and step.records[0].counts == {"in": 1, "out": 0}
    assert events.statistics().instants == 2 and events.statistics().open == 0


def test_the_best_shot_is_the_sample_with_the_highest_score_of_the_events_objects():
    events = book(alert_interval_sec=1.0, end_grace_sec=0.0)
    improved = []
    for t, score in [(0.0, 0.5), (0.5, 0.9), (1.0, 0.6), (1.5, 0.9), (2.0, 0.95)]:
        step = events.step(t, [inside(7, score)], sample=f"frame@{t}")
        improved.append(step.improved)
    assert improved == [["cam-1"], ["cam-1"], [], [], ["cam-1"]]  # strictly higher only
    assert events.best_sample("cam-1") == "frame@2.0"
    end = events.step(3.0, []).records[0]
    update = [r for r in run(book(alert_interval_sec=1.0), [(0.0, [inside(7, 0.5)]), (0.5, [inside(7, 0.9)]),
                                                               (1.0, [inside(7, 0.6)])]) if r.event_state == "update"]
    assert (end.best_score, end.best_at) == (0.95, 2.0)
    assert [(r.best_score, r.best_at, r.detections) for r in update] == [(0.9, 0.5, (person(0.6),))]
    assert events.best_sample("cam-1") is None  # ended


def test_past_max_open_new_conditions_are_refused_and_counted_and_open_events_keep_their_end():
    events = book(max_open=2, end_grace_sec=0.0)
    first = events.step(0.0, [inside(1), inside(2), inside(3)]).records
    assert states(first) == [("cam-1", "start", 0.0), ("cam-2", "start", 0.0)]
    events.step(1.0, [inside(1), inside(2), inside(3)])
    assert events.statistics().refused == 2  # one per refused condition per sample
    later = events.step(2.0, [inside(2), inside(3)]).records  # 1 ends: room for 3
    assert states(later) == [("cam-1", "end", 2.0), ("cam-3", "start", 2.0)]  # ends first, making room
    assert events.statistics().open == 2


def test_close_ends_every_open_event():
    events = book()
    events.step(0.0, [inside(1), inside(2)])
    closed = events.close(0.5)
    assert [(r.event_id, r.event_state, r.ended_at) for r in closed] == [("cam-1", "end", 0.5), ("cam-2", "end", 0.5)]
    assert events.statistics().open == 0 and events.statistics().ended == 2


def test_default_ids_carry_the_task_id_and_a_random_prefix_per_book():
    a, b = EventBook("gate-01", TASK), EventBook("gate-01", TASK)
    id_a = a.step(0.0, [inside(1)]).records[0].event_id
    id_b = b.step(0.0, [inside(1)]).records[0].event_id
    assert re.fullmatch(r"gate-01-[0-9a-f]{8}-1", id_a) and id_a != id_b


def test_bad_book_settings_are_refused():
    with pytest.raises(ValueError, match="max_open >= 1"):
        EventBook("cam", TASK, max_open=0)
