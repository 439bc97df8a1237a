"""The old system's region configs (algo_config 1.0): regions in pixels on the bundled clip, the detection filters,
the geometry at its edges, and every validation error with its path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import cv2
import msgspec
import pytest
from framewatch.actors.analytics.regions import foot_point, point_in_polygon
from framewatch.actors.analytics.engine import CameraAnalytics
from framewatch.actors.analytics.events import EventRecord
from framewatch.actors.analytics.rules import decode_algo_config, has_builtin_rule
from framewatch.actors.analytics.tasktypes import decode_task_params
from framewatch.actors.core.config import ConfigError, decode_config, load_config, resolve_asset
from framewatch.actors.core.messages import Detection
from framewatch.actors.inference.detectors import SsdliteDetector

COUNTING, INTRUSION, SMOKING = "人数统计", "区域入侵", "吸烟检测"
W, H = 768, 576  # the clip's frame size: regions below are pixels of it

LOWER_HALF = {"id": "lower_half", "name": "下半部", "type": "rectangle", "points": [[0, 288], [768, 576]]}
# The lawn at the bottom left: on the clip, nobody's feet come below y = 411 nor left of x = 266.
LAWN = {"id": "lawn", "name": "草坪", "type": "polygon", "points": [[0, 430], [420, 430], [560, 576], [0, 576]]}
# The road on the right, where two people walk on frame 20.
ROAD = {"id": "road", "type": "polygon", "points": [[600, 260], [768, 240], [768, 420], [650, 420]]}


def old_format(*regions: dict, **params: float) -> dict:
    conf: dict = {"config_version": "1.0", "regions": list(regions)}
    if params:
        conf["algorithm_params"] = dict(params)
    return conf


def disabled(region: dict) -> dict:
    return {**region, "enabled": False}


class Seen(NamedTuple):
    """What the task type's rule made of people standing still for a second (three samples, 0.5 s apart)."""

    records: list[EventRecord]
    starts: list[EventRecord]
    detections: list[Detection]
    """The objects of the events started, in the order they were given (each once)."""
    regions: dict[str, int]
    """Per region id: the objects of the events started there."""

    @property
    def alert(self) -> bool:
        return bool(self.starts)

    @property
    def counts(self) -> dict[str, int]:
        """People counting: the counts of the frame-wide event (or of the first one started)."""
        ranked = sorted(self.starts, key=lambda r: r.region_id != "")
        return dict(ranked[0].counts) if ranked else {}


def evaluate(task_type: str, algo_config: dict, detections: list[Detection], width: int = W,
             height: int = H) -> Seen:
    engine = CameraAnalytics("cam", task_type, decode_task_params(task_type, algo_config))
    records = [r for t in (0.0, 0.5, 1.0) for r in engine.step(detections, t, width, height).records]
    starts = [r for r in records if r.event_state == "start"]
    boxes = {d.box for r in starts for d in r.detections}
    regions: dict[str, int] = {}
    for r in starts:
        regions[r.region_id] = regions.get(r.region_id, 0) + len(r.detections)
    return Seen(records, starts, [d for d in detections if d.box in boxes], regions)


# --- on the bundled clip, with the real detector ------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip() -> dict[int, list[Detection]]:
    """The SSDLite detector's people on frames 0, 20 and 45 of the clip (768x576, people walking)."""
    detector = SsdliteDetector(resolve_asset("asset:ssdlite_person.pb"), resolve_asset("asset:ssdlite_person.pbtxt"),
                               threshold=0.5)
    cap = cv2.VideoCapture(resolve_asset("asset:vtest_5s.mp4"))
    found = {}
    try:
        for index in range(46):  # read, not seek: seeking this B-frame clip is not frame exact
            ok, frame = cap.read()
            assert ok and frame.shape == (H, W, 3)
            if index in (0, 20, 45):
                found[index] = detector.detect(frame)
    finally:
        cap.release()
        detector.close()
    # What the tests below rely on, in one place: frame 20 has four people, feet at y 277, 310, 374 and 380, give or
    # take a pixel (cv2.dnn and OpenVINO builds round differently: 276/309 seen with openvino 2026.4.1 on AVX2).
    feet = sorted(d.box[3] for d in found[20])
    assert len(feet) == 4 and all(abs(got - want) <= 2 for got, want in zip(feet, [277, 310, 374, 380])), feet
    return found


def test_a_rectangle_over_the_lower_half_makes_one_intrusion_per_person_walking_there(clip):
    seen = evaluate(INTRUSION, old_format(LOWER_HALF), clip[20])
    lower = [d for d in clip[20] if d.box[3] >= 288]
    assert seen.alert and seen.detections == lower and len(lower) == 3
    assert seen.regions == {"lower_half": 3} and len(seen.starts) == 3
    assert {(r.rule, r.region_name) for r in seen.starts} == {("intrusion", "下半部")}


def test_the_same_rectangle_disabled_gives_no_event(clip):
    seen = evaluate(INTRUSION, old_format(disabled(LOWER_HALF)), clip[20])
    assert not seen.alert and seen.records == []


def test_a_polygon_where_nobody_walks_gives_no_event_on_any_frame(clip):
    for index, people in clip.items():
        assert people and not evaluate(INTRUSION, old_format(LAWN), people).alert, index


def test_a_polygon_on_the_road_catches_the_two_people_on_it_and_a_disabled_region_beside_it_changes_nothing(clip):
    seen = evaluate(INTRUSION, old_format(ROAD, disabled(LOWER_HALF), LAWN), clip[20])
    on_road = [d for d in clip[20] if d.box[0] >= 680]
    assert seen.alert and seen.detections == on_road and len(on_road) == 2
    assert seen.regions == {"road": 2}


def test_the_pixel_rectangle_and_the_old_fraction_roi_of_the_lower_half_find_the_same_intruders(clip):
    roi = {"roi": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}
    for people in clip.values():
        by_roi, by_region = evaluate(INTRUSION, roi, people), evaluate(INTRUSION, old_format(LOWER_HALF), people)
        assert by_roi.detections == by_region.detections
        assert set(by_roi.regions) <= {"roi"} and set(by_region.regions) <= {"lower_half"}


def test_the_confidence_threshold_ignores_detections_below_it(clip):
    scores = sorted(d.score for d in clip[20])  # about 0.67, 0.70, 0.77, 0.91
    assert scores[1] < 0.75 < scores[2]
    seen = evaluate(COUNTING, old_format(confidence_threshold=0.75), clip[20])
    assert seen.counts == {"person": 2} and all(d.score >= 0.75 for d in seen.detections)
    intrusion = evaluate(INTRUSION, old_format(LOWER_HALF, confidence_threshold=0.75), clip[20])
    assert intrusion.regions == {"lower_half": 1}


def test_the_size_limits_ignore_boxes_whose_larger_side_is_outside_them(clip):
    sizes = sorted(max(x2 - x1, y2 - y1) for x1, y1, x2, y2 in (d.box for d in clip[20]))  # about 82, 87, 103, 107
    assert sizes[1] < 95 < sizes[2]
    big = evaluate(COUNTING, old_format(min_detection_size=95), clip[20])
    small = evaluate(COUNTING, old_format(max_detection_size=95), clip[20])
    assert big.counts == small.counts == {"person": 2}
    assert sorted(big.detections + small.detections, key=clip[20].index) == clip[20]


def test_people_counting_has_an_event_while_more_people_than_max_count_stand_in_the_region(clip):
    at_most = {**LOWER_HALF, "properties": {"max_count": 2, "color": "#FF6B6B"}}
    seen = evaluate(COUNTING, old_format(at_most), clip[20])
    (start,) = seen.starts
    assert (start.rule, start.region_id, start.region_name, start.counts) == (
        "people_count", "lower_half", "下半部", {"person": 3})
    assert len(seen.detections) == 3
    three_allowed = {**LOWER_HALF, "properties": {"max_count": 3}}
    assert not evaluate(COUNTING, old_format(three_allowed), clip[20]).alert


def test_the_old_count_threshold_form_is_unchanged(clip):
    seen = evaluate(COUNTING, {"count_threshold": 4}, clip[20])
    assert seen.alert and seen.counts == {"person": 4} and seen.detections == clip[20]
    assert not evaluate(COUNTING, {"count_threshold": 5}, clip[20]).alert


# --- the rules on hand-made detections ----------------------------------------------------------------------------


def person(x1: int, y1: int, x2: int, y2: int, score: float = 0.9) -> Detection:
    return Detection("person", score, (x1, y1, x2, y2))


def standing_at(x: int, y: int) -> Detection:
    """A 20x40 person whose foot point is (x, y)."""
    return person(x - 10, y - 40, x + 10, y)


SQUARE = {"id": "square", "type": "rectangle", "points": [[100, 100], [200, 200]]}


def test_a_foot_point_on_a_rectangle_edge_or_corner_is_inside_and_one_pixel_out_is_not():
    for x, y in [(100, 100), (200, 200), (100, 200), (200, 100), (150, 100), (150, 200), (100, 150), (200, 150)]:
        assert evaluate(INTRUSION, old_format(SQUARE), [standing_at(x, y)], 400, 400).alert, (x, y)
    for x, y in [(99, 150), (201, 150), (150, 99), (150, 201), (99, 99), (201, 201)]:
        assert not evaluate(INTRUSION, old_format(SQUARE), [standing_at(x, y)], 400, 400).alert, (x, y)


def test_a_point_on_a_polygon_edge_or_vertex_is_inside_and_concave_notches_are_outside():
    triangle = [(0.0, 0.0), (100.0, 0.0), (0.0, 100.0)]
    assert all(point_in_polygon(x, y, triangle) for x, y in [(50, 50), (100, 0), (0, 30), (0, 0)])
    assert not point_in_polygon(50.5, 50.5, triangle)
    u_shape = [(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)]
    assert point_in_polygon(1.5, 1, u_shape) and not point_in_polygon(1.5, 2, u_shape)


def test_a_region_past_the_frame_is_clipped_to_it_and_catches_feet_cut_off_at_the_border():
    beyond = {"id": "bottom", "type": "polygon", "points": [[-50, 300], [450, 300], [450, 900], [-50, 900]]}
    cut_off = person(10, 350, 30, 460)  # a box (from a remote service) reaching 60 px below a 400x400 frame
    assert foot_point(cut_off.box, 400, 400) == (20.0, 400.0)
    assert evaluate(INTRUSION, old_format(beyond), [cut_off], 400, 400).alert
    edge = {"id": "edge", "type": "rectangle", "points": [[0, 300], [400, 400]]}  # drawn down to the bottom edge
    assert evaluate(INTRUSION, old_format(edge), [cut_off], 400, 400).alert
    assert evaluate(INTRUSION, {}, [cut_off], 400, 400).alert  # the default roi, the whole frame, too


def test_overlapping_regions_both_catch_a_person():
    left = {"id": "left", "name": "左", "type": "rectangle", "points": [[0, 0], [60, 100]]}
    right = {"id": "right", "name": "右", "type": "rectangle", "points": [[40, 0], [100, 100]]}
    both, only_right = standing_at(50, 50), standing_at(90, 50)
    seen = evaluate(INTRUSION, old_format(left, right), [only_right, both], 100, 100)
    assert seen.detections == [only_right, both]
    assert seen.regions == {"left": 1, "right": 2}


def test_counting_areas_without_max_count_use_count_threshold_and_lines_are_not_areas():
    line = {"id": "gate", "type": "line", "points": [[0, 50], [100, 50]], "properties": {"direction": "in"}}
    crowd = [standing_at(50, 50), standing_at(20, 20), standing_at(80, 80)]
    whole_frame = evaluate(COUNTING, {**old_format(line), "count_threshold": 3}, crowd, 100, 100)
    assert whole_frame.alert and whole_frame.counts == {"person": 3} and set(whole_frame.regions) == {""}
    capped = {**SQUARE, "id": "capped", "properties": {"max_count": 0}}
    seen = evaluate(COUNTING, {**old_format(SQUARE, capped, line), "count_threshold": 2},
                    [standing_at(150, 150), standing_at(10, 10)], 400, 400)
    assert seen.regions == {"capped": 1} and seen.detections == [standing_at(150, 150)]


def test_with_every_area_disabled_neither_rule_has_an_event():
    crowd = [standing_at(150 + 30 * i, 150) for i in range(3)]
    for task_type in (COUNTING, INTRUSION):
        assert evaluate(task_type, old_format(disabled(SQUARE)), crowd, 400, 400).starts == [], task_type


def test_size_bounds_are_inclusive_and_a_max_detection_size_of_0_is_no_limit():
    boxes = [person(0, 0, 10, 50), person(100, 0, 110, 49), person(200, 0, 280, 10), person(300, 0, 381, 10),
             person(0, 1000, 5000, 1010)]
    kept = evaluate(COUNTING, old_format(min_detection_size=50, max_detection_size=80), boxes, 6000, 6000).detections
    assert kept == [boxes[0], boxes[2]]
    unlimited = evaluate(COUNTING, old_format(min_detection_size=50, max_detection_size=0), boxes, 6000, 6000)
    assert unlimited.detections == [boxes[0], boxes[2], boxes[3], boxes[4]]


def test_a_detection_scoring_exactly_the_confidence_threshold_is_kept_and_other_labels_never_count():
    found = [person(0, 0, 10, 10, score=0.7), person(50, 50, 60, 60, score=0.6999),
             Detection("car", 0.99, (20, 20, 29, 29))]
    assert evaluate(COUNTING, old_format(confidence_threshold=0.7), found, 100, 100).detections == [found[0]]


# --- accepted as written: unknown keys, other task types, TOML and JSON ---------------------------------------------

CONSOLE_CONFIG = {  # the protocol's example, as the old console writes it
    "task_id": "cam_gate_001", "task_type": "绊线人数统计", "config_version": "1.0",
    "created_at": "2024-01-01T08:00:00Z", "updated_at": "2024-01-02T08:00:00Z",
    "regions": [
        {"id": "region_001", "name": "入口检测线", "type": "line", "enabled": True,
         "points": [[300, 200], [600, 200]], "properties": {"direction": "in", "color": "#4ECDC4", "thickness": 5}},
        {"id": "region_002", "name": "禁止区域", "type": "rectangle", "enabled": True,
         "points": [[700, 150], [900, 350]], "properties": {"alert_type": "intrusion"}},
        {"id": "region_003", "name": "大厅", "type": "polygon", "enabled": True,
         "points": [[100, 150], [500, 150], [500, 450], [100, 450]], "properties": {"max_count": 50}}],
    "algorithm_params": {"confidence_threshold": 0.7, "iou_threshold": 0.5, "min_detection_size": 50,
                         "max_detection_size": 500, "frame_skip": 0,
                         "custom_params": {"track_enabled": True, "track_max_age": 30, "min_dwell_time": 3,
                                           "alert_interval": 5}},
    "a_key_of_a_newer_console": {"anything": [1, 2]},
}


def task_toml(task_id: str, task_type: str, body: str = "") -> str:
    return f"[[frame_extractor.tasks]]\nid = '{task_id}'\ntask_type = '{task_type}'\nrtsp_url = 'synthetic://{task_id}'\n{body}"


def test_the_consoles_config_is_accepted_for_every_task_type_and_kept_as_written(tmp_path):
    task_types = (COUNTING, INTRUSION, "绊线人数统计", SMOKING)
    for i in range(len(task_types)):
        (tmp_path / f"{i}.json").write_text(json.dumps(CONSOLE_CONFIG, ensure_ascii=False), encoding="utf-8")
    text = "".join(task_toml(f"cam-{i}", t, f"algo_config_path = '{i}.json'\n") for i, t in enumerate(task_types))
    (tmp_path / "framewatch.toml").write_text(text, encoding="utf-8")
    tasks = load_config(tmp_path / "framewatch.toml").config.frame_extractor.tasks
    assert all(task.algo_config == CONSOLE_CONFIG for task in tasks)  # what remote services get: every key
    assert tasks[0].algo_config_path == str(tmp_path / "0.json")
    assert has_builtin_rule(SMOKING)  # served on a service's detections, tracked here
    typed = decode_algo_config(COUNTING, tasks[0].algo_config)
    assert [r.id for r in typed.enabled_areas()] == ["region_002", "region_003"]
    assert typed.algorithm_params.confidence_threshold == 0.7


def test_a_region_config_inline_in_toml_works_like_the_json_one():
    body = """[frame_extractor.tasks.algo_config]
config_version = "1.0"
[[frame_extractor.tasks.algo_config.regions]]
id = "lower_half"
type = "rectangle"
points = [[0, 288], [768, 576]]
[frame_extractor.tasks.algo_config.regions.properties]
max_count = 1
color = "#FF0000"
[frame_extractor.tasks.algo_config.algorithm_params]
confidence_threshold = 0.5
[frame_extractor.tasks.algo_config.algorithm_params.custom_params]
count_mode = "max"
"""
    task = decode_config(task_toml("cam-1", COUNTING, body)).config.frame_extractor.tasks[0]
    assert task.algo_config["algorithm_params"]["custom_params"] == {"count_mode": "max"}
    assert task.algo_config["regions"][0]["properties"] == {"max_count": 1, "color": "#FF0000"}
    decision = evaluate(COUNTING, task.algo_config, [standing_at(100, 300), standing_at(200, 400)])
    assert decision.alert and decision.regions == {"lower_half": 2} and decision.counts == {"person": 2}


def test_algo_config_path_is_relative_to_the_conf_files_directory(tmp_path, monkeypatch):
    (tmp_path / "conf" / "regions").mkdir(parents=True)
    (tmp_path / "conf" / "regions" / "door.json").write_text(json.dumps(old_format(SQUARE)), encoding="utf-8")
    conf = tmp_path / "conf" / "framewatch.toml"
    conf.write_text(task_toml("door", INTRUSION, "algo_config_path = 'regions/door.json'\n"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # not the conf's directory
    task = load_config("conf/framewatch.toml").config.frame_extractor.tasks[0]
    assert task.algo_config == old_format(SQUARE)
    assert task.algo_config_path == str(tmp_path / "conf" / "regions" / "door.json")
    assert evaluate(INTRUSION, task.algo_config, [standing_at(150, 150)], 400, 400).alert


# --- every validation error names its path --------------------------------------------------------------------------

TWO_GOOD_TASKS = task_toml("cam-0", COUNTING) + task_toml("cam-1", SMOKING, "algo_config = { sensitivity = 3 }\n")


def region_error(task_type: str, *regions: dict, roi: list | None = None) -> str:
    """The error of a third task (index 2) whose ``algo_config`` has ``regions`` (index 1 is the faulty one)."""
    conf = old_format(*regions)
    if roi is not None:
        conf["roi"] = roi
    body = "algo_config = " + json.dumps(conf, ensure_ascii=False).replace('": ', '" = ')  # a TOML inline table
    with pytest.raises(ConfigError) as info:
        decode_config(TWO_GOOD_TASKS + task_toml("cam-2", task_type, body + "\n"))
    return str(info.value)


AT = "at `$.frame_extractor.tasks[2].algo_config"


@pytest.mark.parametrize("task_type", [COUNTING, INTRUSION, SMOKING])
@pytest.mark.parametrize(("region", "error"), [
    ({"id": "r", "type": "polygon", "points": [[0, 0], [10, 0]]},
     "Expected `array` of length >= 3 - {AT}.regions[1].points`"),
    ({"id": "r", "type": "rectangle", "points": [[200, 200], [100, 300]]},
     "a rectangle is [top-left, bottom-right] with x and y increasing, got [200, 200] then [100, 300] "
     "- {AT}.regions[1].points`"),
    ({"id": "r", "type": "rectangle", "points": [[100, 100], [200, 200], [300, 300]]},
     "Expected `array` of at most length 2, got 3 - {AT}.regions[1].points`"),
    ({"id": "r", "type": "line", "points": [[0, 0]]},
     "Expected `array` of at least length 2, got 1 - {AT}.regions[1].points`"),
    ({"id": "r", "type": "line", "points": [[0, 0], [5, 5], [9, 9]]},
     "Expected `array` of at most length 2, got 3 - {AT}.regions[1].points`"),
    ({"id": "r", "type": "line", "points": [[5, 5], [5, 5]]},
     "a line needs two distinct points, got [5, 5] twice - {AT}.regions[1].points`"),
    ({"id": "r", "type": "line", "points": [[0, 0], [9, 9]], "properties": {"direction": "up"}},
     "Invalid enum value 'up' - {AT}.regions[1].properties.direction`"),
    ({"id": "r", "type": "polygon", "points": [[0, 0], [10, "0"], [5, 5]]},
     "Expected `float`, got `str` - {AT}.regions[1].points[1][1]`"),
    ({"id": "r", "type": "polygon", "points": [[0, 0], [10], [5, 5]]},
     "Expected `array` of length 2, got 1 - {AT}.regions[1].points[1]`"),
    ({"id": "r", "type": "polygon", "points": [[0, 0], [10, 1e9], [5, 5]]},
     "Expected `float` <= 100000.0 - {AT}.regions[1].points[1][1]`"),
    ({"id": "r", "type": "circle", "points": [[0, 0], [10, 10]]}, "Invalid value 'circle' - {AT}.regions[1].type`"),
    ({"id": "r", "points": [[0, 0], [10, 10]]}, "Object missing required field `type` - {AT}.regions[1]`"),
    ({"type": "polygon", "points": [[0, 0], [10, 0], [5, 5]]}, "Object missing required field `id` - {AT}.regions[1]`"),
    ({**SQUARE, "enabled": "no"}, "Expected `bool`, got `str` - {AT}.regions[1].enabled`"),
    ({**SQUARE, "properties": {"max_count": -1}}, "Expected `int` >= 0 - {AT}.regions[1].properties.max_count`"),
    ({**SQUARE, "id": "lower_half"},
     "duplicate region id 'lower_half' (also at $.regions[0]) - {AT}.regions[1].id`"),
])
def test_a_malformed_region_names_its_path_for_every_task_type(task_type, region, error):
    assert region_error(task_type, LOWER_HALF, region) == error.format(AT=AT)


def test_the_rules_own_errors_name_their_paths():
    assert region_error(INTRUSION, LOWER_HALF, roi=[[0, 0], [1, 0], [1, 1]]) == (
        f"roi (fractions of the frame) and polygon/rectangle regions (pixels) cannot be combined; keep one - {AT}.roi`")
    assert region_error(COUNTING, LOWER_HALF, {**SQUARE, "id": "person"}) == (
        f"region id 'person' is also a count name of the rule; rename the region - {AT}.regions[1].id`")
    other_type = task_toml("cam-2", SMOKING, "algo_config = { regions = [{ id = 'person', type = 'polygon', "
                                             "points = [[0, 0], [9, 0], [9, 9]] }] }\n")
    assert decode_config(TWO_GOOD_TASKS + other_type).config  # no built-in rule, no count names to clash with
    bad_sizes = ("[frame_extractor.tasks.algo_config.algorithm_params]\n"
                 "min_detection_size = 60\nmax_detection_size = 50\n")
    with pytest.raises(ConfigError) as info:
        decode_config(TWO_GOOD_TASKS + task_toml("cam-2", COUNTING, bad_sizes))
    assert str(info.value) == ("min_detection_size (60) must not exceed max_detection_size (50) "
                               f"- {AT}.algorithm_params`")
    with pytest.raises(ConfigError) as info:
        decode_config(TWO_GOOD_TASKS + task_toml("cam-2", COUNTING, "algo_config = { regions = {} }\n"))
    assert str(info.value) == f"Expected `array`, got `object` - {AT}.regions`"


def test_a_typo_in_framewatchs_own_form_is_still_an_error_and_the_old_form_keeps_unknown_keys():
    with pytest.raises(msgspec.ValidationError) as info:
        decode_algo_config(COUNTING, {"count_treshold": 3})
    assert str(info.value) == "Object contains unknown field `count_treshold`"
    assert decode_algo_config(COUNTING, {"count_treshold": 3, "config_version": "1.0"}).count_threshold is None


# --- errors in an algo_config_path file name the file and the path inside ------------------------------------------


def file_error(tmp_path: Path, content: str | None, body: str = "algo_config_path = 'gate.json'\n") -> str:
    if content is not None:
        (tmp_path / "gate.json").write_text(content, encoding="utf-8")
    (tmp_path / "framewatch.toml").write_text(TWO_GOOD_TASKS + task_toml("cam-2", INTRUSION, body), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "framewatch.toml")
    return str(info.value)


def test_a_bad_region_in_an_algo_config_file_names_the_file_and_the_path_inside(tmp_path):
    bad = old_format(LOWER_HALF, {"id": "r", "type": "polygon", "points": [[0, 0], [10, 0]]})
    assert file_error(tmp_path, json.dumps(bad)) == (
        f"Expected `array` of length >= 3 - at `$.regions[1].points` in {tmp_path / 'gate.json'} "
        "(algo_config_path of `$.frame_extractor.tasks[2]`)"
    )


def test_an_unreadable_or_malformed_algo_config_file_names_the_file(tmp_path):
    where = f"in {tmp_path / 'gate.json'} (algo_config_path of `$.frame_extractor.tasks[2]`)"
    assert file_error(tmp_path, None) == (
        f"Cannot read algo_config file {str(tmp_path / 'gate.json')!r}: No such file or directory "
        "- at `$.frame_extractor.tasks[2].algo_config_path`"
    )
    assert file_error(tmp_path, '{"regions": [}') == (
        f"Not valid JSON: JSON is malformed: invalid character (byte 13) - at `$` {where}")
    assert file_error(tmp_path, "[1, 2]") == f"Expected `object`, got `array` - at `$` {where}"
    both = "algo_config_path = 'gate.json'\nalgo_config = { roi = [[0, 0], [1, 0], [1, 1]] }\n"
    assert file_error(tmp_path, "{}", both) == (
        "give algo_config or algo_config_path, not both - at `$.frame_extractor.tasks[2].algo_config_path`"
    )
    assert file_error(tmp_path, "{}", "algo_config_path = ''\n") == (
        "Expected `str` of length >= 1 - at `$.frame_extractor.tasks[2].algo_config_path`"
    )


def test_an_algo_config_file_may_start_with_a_byte_order_mark(tmp_path):
    (tmp_path / "gate.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(old_format(SQUARE)).encode())
    (tmp_path / "framewatch.toml").write_text(task_toml("cam-0", INTRUSION, "algo_config_path = 'gate.json'\n"),
                                              encoding="utf-8")
    assert load_config(tmp_path / "framewatch.toml").config.frame_extractor.tasks[0].algo_config == old_format(SQUARE)
