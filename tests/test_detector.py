"""The built-in SSDLite person detector on real frames, and the task-type rules on its detections."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from framewatch.actors.analytics.rules import (
    AreaIntrusion,
    IntrusionConf,
    PeopleCounting,
    PeopleCountingConf,
    point_in_polygon,
)
from framewatch.actors.core.config import DetectorConf, resolve_asset
from framewatch.actors.core.messages import Detection
from framewatch.actors.inference.detectors import build_detector


@pytest.fixture(scope="module")
def detector():
    d = build_detector(DetectorConf(backend="ssdlite", threshold=0.5))
    yield d
    d.close()


def clip_frame(index: int) -> np.ndarray:
    cap = cv2.VideoCapture(resolve_asset("asset:vtest_5s.mp4"))
    try:
        for _ in range(index + 1):  # read, not seek: seeking this B-frame clip is not frame exact
            ok, frame = cap.read()
    finally:
        cap.release()
    assert ok
    return frame


def test_people_are_found_on_clip_frames_with_people(detector):
    for index in (0, 20, 45):
        found = detector.detect(clip_frame(index))
        assert len(found) >= 2, (index, found)
        h, w = 576, 768
        for d in found:
            assert d.label == "person" and 0.5 <= d.score <= 1.0
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


def people_free_images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    images = [
        np.full((576, 768, 3), 128, np.uint8),
        rng.integers(0, 255, (576, 768, 3), dtype=np.uint8),
        cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (31, 31), 0),
    ]
    gradient = np.tile(np.linspace(0, 255, 768, dtype=np.uint8), (576, 1))
    images.append(cv2.merge([gradient, gradient[::-1], gradient]))
    shapes = np.full((360, 640, 3), 200, np.uint8)
    cv2.rectangle(shapes, (50, 50), (250, 200), (20, 120, 220), -1)
    cv2.circle(shapes, (450, 200), 90, (200, 30, 30), -1)
    images.append(shapes)
    return images


def test_no_person_above_threshold_on_people_free_images(detector):
    for i, image in enumerate(people_free_images()):
        assert detector.detect(image) == [], i


def test_people_counting_alerts_when_the_count_reaches_the_threshold():
    people = [Detection("person", 0.9, (0, 0, 10, 10)) for _ in range(3)]
    rule = PeopleCounting(PeopleCountingConf(count_threshold=3))
    decision = rule.evaluate(people, 100, 100)
    assert decision.alert and decision.counts == {"person": 3}
    assert not rule.evaluate(people[:2], 100, 100).alert


def test_intrusion_alerts_only_for_a_foot_point_inside_the_roi():
    rule = AreaIntrusion(IntrusionConf(roi=[(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)]))
    inside = Detection("person", 0.8, (10, 20, 30, 80))  # foot (20, 80) of 100x100: in the lower-left quarter
    head_only = Detection("person", 0.8, (10, 60, 30, 45))  # bottom at y=45: above the ROI
    outside = Detection("person", 0.8, (70, 20, 90, 90))
    decision = rule.evaluate([inside, head_only, outside], 100, 100)
    assert decision.alert and decision.detections == [inside]
    assert decision.counts == {"person": 3, "in_roi": 1}
    assert not rule.evaluate([outside], 100, 100).alert


def test_point_in_polygon_handles_concave_shapes():
    u_shape = [(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)]
    assert point_in_polygon(0.5, 2, u_shape) and point_in_polygon(2.5, 2, u_shape)
    assert not point_in_polygon(1.5, 2, u_shape)
