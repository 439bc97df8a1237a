"""The accuracy harness (benchmarks/accuracy.py, benchmarks/scenes.py): its scoring on hand-made cases, its emulated
detector and schedules, and one run over a scene of every task type. Behaviour, not figures of the analytics."""

from __future__ import annotations

import json
import random

import pytest
from framewatch.actors.analytics.events import EventRecord
from framewatch.actors.analytics.tasktypes import TASK_TYPES, decode_task_params
from framewatch.actors.core.messages import Detection
from framewatch.benchmarks import accuracy
from framewatch.benchmarks.accuracy import (CLEAN, NOISY, Alert, EmulatedDetector, Schedule, Tally, match_alerts,
                                            score_run)
from framewatch.benchmarks.scenes import Incident, Scene, Walker, build_scenes, scenes_by_type


def record(state: str, at: float, *, rule: str = "intrusion", region: str = "zone", direction: str = "",
           subject: str = "1", started_at: float | None = None,
           detections: tuple[Detection, ...] = ()) -> EventRecord:
    return EventRecord(event_id=f"e-{at}", event_state=state, task_id="cam", task_type="区域入侵", rule=rule,
                       region_id=region, region_name="", subject=subject, direction=direction, track_ids=(1,),
                       started_at=at if started_at is None else started_at, at=at,
                       ended_at=at if state in ("end", "instant") else None, counts={}, detections=detections,
                       best_score=0.9, best_at=at)


def scene_with(incidents: list[Incident], *, objects: tuple = (), true_counts: dict[str, int] | None = None,
               rules: tuple[str, ...] = ("intrusion",)) -> Scene:
    return Scene(name="hand-made", task_type="区域入侵", description="", duration_sec=60.0, objects=objects,
                 algo_config={"regions": []}, rules=rules, incidents=tuple(incidents), true_counts=true_counts)


def test_precision_recall_duplicates_and_spurious_alerts_are_counted_from_starts_only():
    scene = scene_with([Incident(rule="intrusion", start=10.0, end=20.0, region_id="zone", what="A"),
                        Incident(rule="intrusion", start=30.0, end=35.0, region_id="zone", what="B")])
    records = [
        record("start", 9.5),                      # A, 0.5 s early: within the 1 s tolerance
        record("update", 11.0, started_at=9.5),    # not an alert
        record("start", 12.0),                     # a second alert inside A's window: a duplicate
        record("end", 20.0, started_at=9.5),       # not an alert
        record("start", 50.0),                     # outside every window: spurious
        record("start", 31.0, region="other"),     # B's time, another region: spurious
        record("instant", 32.0, rule="count_report", region=""),  # a dashboard record, not this rule
    ]
    tally, details = score_run(scene, records, tolerance_sec=1.0)
    summary = tally.summary()
    assert (summary["alerts"], summary["matched"], summary["duplicates"], summary["spurious"],
            summary["missed"]) == (4, 1, 1, 2, 1)
    assert summary["precision"] == 0.25 and summary["recall"] == 0.5
    assert summary["alerts_per_incident"] == 2.0
    assert summary["exactly_one"] == 0.0  # A has a duplicate, B no alert
    assert summary["updates_per_incident"] == 0.5
    assert summary["latency_mean_sec"] == -0.5
    assert details["missed"] == ["B"] and details["duplicates"] == [[12.0, "A"]]


def test_each_alert_goes_to_the_window_that_ends_first_so_that_the_matching_is_the_largest():
    incidents = [Incident(rule="r", start=4.0, end=10.0), Incident(rule="r", start=4.0, end=6.0)]
    m = match_alerts([Alert(5.0, "r"), Alert(8.0, "r")], incidents, tolerance_sec=0.0)
    assert sorted(m.pairs) == [(0, 1), (1, 0)] and m.missed == [] and m.spurious == []


def test_an_alert_on_another_object_does_not_match_and_one_without_a_detection_may():
    a = Walker("a", t=0.0, x=200, y=500).walk(600, 500, 80).build()
    b = Walker("b", t=0.0, x=900, y=500).walk(1200, 500, 80).build()
    incident = Incident(rule="intrusion", start=2.0, end=5.0, region_id="zone", subject="a", what="a inside")
    box_b = tuple(round(v) for v in b.box_at(3.0))
    on_b = score_run(scene_with([incident], objects=(a, b)),
                     [record("start", 3.0, detections=(Detection("person", 0.9, box_b),))])
    assert on_b.tally.matched == 0 and on_b.tally.duplicates == 0 and on_b.tally.spurious == 1
    coasting = score_run(scene_with([incident], objects=(a, b)), [record("start", 3.0)])
    assert coasting.tally.matched == 1


def test_tripwire_count_error_is_per_direction_and_on_the_total_summed_over_runs():
    crossings = [Incident(rule="line_crossing", start=float(i), end=i + 3.0, direction="in") for i in range(10)]
    crossings += [Incident(rule="line_crossing", start=20.0 + i, end=23.0 + i, direction="out") for i in range(5)]
    scene = scene_with(crossings, true_counts={"in": 10, "out": 5}, rules=("line_crossing",))

    def run(n_in: int, n_out: int) -> Tally:
        records = [record("instant", float(i), rule="line_crossing", direction="in") for i in range(n_in)]
        records += [record("instant", 20.0 + i, rule="line_crossing", direction="out") for i in range(n_out)]
        return score_run(scene, records).tally

    first = run(9, 6)
    assert first.summary()["count_error"] == {"in": 0.1, "out": 0.2, "total": 0.0}
    both = first.add(run(10, 5))
    assert both.summary()["count_error"] == {"in": 0.05, "out": 0.1, "total": 0.0}
    assert both.worst_count_error() == 0.1
    assert both.summary()["counted"] == {"in": 19, "out": 11, "true_in": 20, "true_out": 10}


def test_the_clean_detector_returns_the_true_boxes_and_the_noisy_one_misses_and_jitters_as_configured():
    scene = scenes_by_type(build_scenes())["区域入侵"][0]
    t = 20.0
    truth = sorted((o.label_at(t), tuple(round(v) for v in o.box_at(t))) for o in scene.objects
                   if o.box_at(t) is not None and 0 < o.box_at(t)[0] and o.box_at(t)[2] < scene.width
                   and o.box_at(t)[3] < scene.height)
    clean = EmulatedDetector(scene, CLEAN, random.Random(1)).detect(t)
    assert sorted((d.label, d.box) for d in clean) == truth and truth

    def detections(seed: int) -> list[list[Detection]]:
        detector = EmulatedDetector(scene, NOISY, random.Random(seed))
        return [detector.detect(t) for _ in range(400)]  # the same instant, 400 independent draws

    runs = detections(7)
    assert runs == detections(7)  # seeded: reproducible
    assert 0.86 < sum(len(d) for d in runs) / (len(truth) * len(runs)) < 0.94  # 10 % missed
    errors = []
    for found in runs:
        for d in found:
            _, box = min(truth, key=lambda lb: abs(lb[1][0] - d.box[0]) + abs(lb[1][1] - d.box[1]))
            errors += [a - b for a, b in zip(d.box, box)]
    sd = (sum(e * e for e in errors) / len(errors)) ** 0.5
    assert 4.5 < sd < 5.5  # jitter_px is the standard deviation per coordinate


def test_schedules_are_regular_or_irregular_with_holes_and_always_ascending():
    rng = random.Random(3)
    regular = Schedule("regular", 2.0).times(60.0, rng)
    assert all(abs((b - a) - 0.5) < 1e-6 for a, b in zip(regular, regular[1:]))
    assert 0 <= regular[0] < 0.5 and regular[-1] < 60.0
    irregular = Schedule("irregular", 5.0).times(300.0, rng)
    gaps = [b - a for a, b in zip(irregular, irregular[1:])]
    assert all(g > 0 for g in gaps)
    assert any(g >= 1.0 for g in gaps)  # backlog holes
    assert len(irregular) / 300.0 < 5.0


def test_the_harness_runs_a_scene_of_every_task_type_and_reports_it(tmp_path):
    scenes = [group[0] for group in scenes_by_type(build_scenes()).values()]
    assert {s.task_type for s in scenes} == set(TASK_TYPES)
    rates = (5.0, 2.0, 0.5)  # 2 and 0.5: the floors the event targets are judged at
    report = accuracy.build_report(quick=True, seeds=1, scenes=scenes, rates=rates, profiles=(CLEAN,), cost_sec=3.0)
    by_type = {(row["type"], row["schedule"]): row for row in report["result"]["by_type"] if row["fps"] == 5.0}
    for spec in TASK_TYPES.values():
        for kind in ("regular", "irregular"):
            row = by_type[(spec.key, kind)]
            assert row["runs"] == 1 and row["incidents"] > 0 and row["alerts"] > 0
            assert row["recall"] is not None and 0.5 <= row["recall"] <= 1.0
            assert row["precision"] is not None and 0.0 < row["precision"] <= 1.0
    assert set(report["cost"]) == {spec.key for spec in TASK_TYPES.values()}
    assert all(c["mean_tracks"] > 10 for c in report["cost"].values())
    targets = accuracy.evaluate_targets(report["result"], report["cost"], rates, profile=CLEAN.name, also=())
    assert {t["target"].split(":")[0] for t in targets} >= {"intrusion", "loitering", "off_post",
                                                             "abandoned_object", "fall"}
    assert all(isinstance(t["ok"], bool) and t["figure"] for t in targets)
    table = accuracy.render_table(report)
    assert "tripwire_crossings" in table and "targets" in table
    (tmp_path / "report.json").write_text(json.dumps(report, ensure_ascii=False))  # JSON-serialisable as is


@pytest.mark.parametrize("scene", build_scenes(), ids=lambda s: s.name)
def test_every_scene_decodes_as_the_old_format_and_has_its_truth(scene):
    assert scene.algo_config["config_version"] == "1.0" and "custom_params" in scene.algo_config["algorithm_params"]
    decode_task_params(scene.task_type, scene.algo_config)
    if scene.true_counts is not None:
        assert sum(scene.true_counts.values()) == len(scene.incidents)
    else:
        assert scene.incidents
    assert all(0 <= i.start <= i.end <= scene.duration_sec + 1e-6 for i in scene.incidents)
