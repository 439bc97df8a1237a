"""The built-in SSDLite person detector on real frames, on both runtimes (OpenVINO, cv2.dnn), and the task-type rules
on its detections."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from framewatch.actors.analytics.regions import point_in_polygon
from framewatch.actors.core.config import (
    Config,
    ConfigError,
    DetectorConf,
    decode_toml,
    resolve_asset,
)
from framewatch.actors.core.messages import Detection
from framewatch.actors.core.supervision import StartError
from framewatch.actors.inference import detectors
from framewatch.actors.inference.detectors import SHARED_MODELS, build_detector

ROOT = Path(__file__).resolve().parents[1]
PEOPLE_FRAMES = (0, 20, 45)


@pytest.fixture(scope="module", params=["openvino", "opencv"])
def detector(request):
    d = build_detector(DetectorConf(backend="ssdlite", threshold=0.5, runtime=request.param))
    assert d.name == f"ssdlite-person/{request.param}"
    yield d
    d.close()


def clip_frame(index: int, size: tuple[int, int] | None = None) -> np.ndarray:
    cap = cv2.VideoCapture(resolve_asset("asset:vtest_5s.mp4"))
    try:
        for _ in range(index + 1):  # read, not seek: seeking this B-frame clip is not frame exact
            ok, frame = cap.read()
    finally:
        cap.release()
    assert ok
    return frame if size is None else cv2.resize(frame, size)


def test_people_are_found_on_clip_frames_with_people(detector):
    for index in PEOPLE_FRAMES:
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


def test_point_in_polygon_handles_concave_shapes():
    u_shape = [(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)]
    assert point_in_polygon(0.5, 2, u_shape) and point_in_polygon(2.5, 2, u_shape)
    assert not point_in_polygon(1.5, 2, u_shape)


# --- the two runtimes --------------------------------------------------------------------------------------------


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / area if area else 0.0


@pytest.mark.parametrize("size", [None, (1280, 720)], ids=["768x576", "1280x720"])
def test_openvino_finds_the_same_people_as_cv2_dnn_on_clip_frames(size):
    openvino = build_detector(DetectorConf(runtime="openvino"))
    opencv = build_detector(DetectorConf(runtime="opencv"))
    try:
        for index in PEOPLE_FRAMES:
            frame = clip_frame(index, size)
            by_openvino, by_opencv = openvino.detect(frame), opencv.detect(frame)
            assert len(by_openvino) == len(by_opencv) >= 2, (index, by_openvino, by_opencv)
            matches = [max(by_openvino, key=lambda other: iou(person.box, other.box)) for person in by_opencv]
            assert len({id(match) for match in matches}) == len(matches), (index, by_openvino, by_opencv)  # 1:1
            for person, match in zip(by_opencv, matches):
                assert iou(person.box, match.box) >= 0.9, (index, person, match)
                assert abs(person.score - match.score) <= 0.02, (index, person, match)
    finally:
        openvino.close()
        opencv.close()


def simulate(monkeypatch, loader) -> None:
    """OpenVINO replaced by ``loader``, and the once-per-process notices forgotten."""
    monkeypatch.setattr(detectors, "_import_openvino", loader)
    monkeypatch.setattr(detectors, "_noticed", set())


def no_openvino():
    raise ImportError("No module named 'openvino' (simulated)")


def test_auto_falls_back_to_cv2_dnn_with_one_warning_when_openvino_is_not_installed(monkeypatch, caplog):
    simulate(monkeypatch, no_openvino)
    frame = clip_frame(20)
    with caplog.at_level(logging.WARNING, logger=detectors.__name__):
        pair = [build_detector(DetectorConf()) for _ in range(2)]  # two inference actors: one notice
    reference = build_detector(DetectorConf(runtime="opencv"))
    try:
        [notice] = [r for r in caplog.records if r.name == detectors.__name__]
        assert notice.levelno == logging.WARNING
        assert ("OpenVINO not used (openvino is not installed (No module named 'openvino' (simulated)))"
                in notice.message)
        assert "cv2.dnn" in notice.message
        for d in pair:
            assert d.name == "ssdlite-person/opencv"
            assert d.detect(frame) == reference.detect(frame) != []
    finally:
        for d in [*pair, reference]:
            d.close()


def test_auto_falls_back_to_cv2_dnn_when_openvino_cannot_load_the_model(monkeypatch, caplog):
    def refuses(path):
        raise RuntimeError(f"Exception from src/inference/src/cpp/core.cpp:84:\nsimulated: cannot read {path}")

    simulate(monkeypatch, lambda: SimpleNamespace(Core=lambda: SimpleNamespace(read_model=refuses)))
    with caplog.at_level(logging.WARNING, logger=detectors.__name__):
        d = build_detector(DetectorConf())
    try:
        assert d.name == "ssdlite-person/opencv" and d.detect(clip_frame(20))
        [notice] = [r.message for r in caplog.records if r.name == detectors.__name__]
        assert "OpenVINO cannot load" in notice and "ssdlite_person.pb" in notice
        assert "simulated: cannot read" in notice and "core.cpp" not in notice  # the last line of OpenVINO's report
    finally:
        d.close()


def test_runtime_openvino_without_openvino_fails_the_start_naming_detector_runtime(monkeypatch):
    simulate(monkeypatch, no_openvino)
    with pytest.raises(StartError) as info:
        build_detector(DetectorConf(runtime="openvino"))
    assert info.value.setting == "detector.runtime" and "openvino is not installed" in info.value.reason


@pytest.mark.parametrize("runtime", ["auto", "openvino", "opencv"])
def test_a_model_that_cannot_load_fails_the_start_naming_detector_model(tmp_path, runtime):
    broken = tmp_path / "broken.pb"
    broken.write_bytes(b"this is not a TensorFlow graph")
    for model in (str(broken), str(tmp_path / "missing.pb")):
        with pytest.raises(StartError) as info:
            build_detector(DetectorConf(runtime=runtime, model=model))
        assert info.value.setting == "detector.model", info.value
        assert model in info.value.reason


def test_an_unknown_runtime_is_a_config_error_naming_detector_runtime():
    with pytest.raises(ConfigError, match=r"at `\$\.detector\.runtime`"):
        decode_toml('[detector]\nruntime = "tensorrt"\n', Config, ConfigError)


def test_detectors_share_one_compiled_openvino_model_freed_when_the_last_closes():
    def held() -> int:
        return sum(users for (path, _), users in SHARED_MODELS.users().items() if path.endswith("ssdlite_person.pb"))

    before = held()
    made: list = []
    threads = [threading.Thread(target=lambda: made.append(build_detector(DetectorConf(runtime="openvino"))))
               for _ in range(2)]  # created at once, like the inference actors: compiled once, under the lock
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(made) == 2 and held() == before + 2
    assert len({key for key in SHARED_MODELS.users() if key[0].endswith("ssdlite_person.pb")}) == 1
    made[0].close()
    made[0].close()  # closing twice releases once
    assert held() == before + 1
    made[1].close()
    assert held() == before


def concurrent_detect(threads: int, streams: int, calls: int) -> dict[str, int]:
    """``threads`` threads, like inference actors: each builds its own OpenVINO detector (one shared compiled model),
    then all call ``detect`` on clip frames at once, from their first call on (the first concurrent use of openvino's
    tensors is where two threads deadlocked). Returns the calls whose result differs from one thread's alone."""
    frames = [clip_frame(i) for i in PEOPLE_FRAMES]
    conf = DetectorConf(runtime="openvino", actors=threads, openvino_streams=streams)
    start = threading.Barrier(threads)
    found: list[list[list[Detection]]] = [[] for _ in range(threads)]

    def work(k: int) -> None:
        d = build_detector(conf)
        start.wait()
        found[k] = [d.detect(frames[(i + k) % len(frames)]) for i in range(calls)]
        d.close()

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    alone = build_detector(conf)
    expected = [alone.detect(frame) for frame in frames]
    alone.close()
    wrong = sum(got != expected[(i + k) % len(frames)] for k in range(threads) for i, got in enumerate(found[k]))
    return {"calls": sum(map(len, found)), "wrong": wrong, "users_left": sum(SHARED_MODELS.users().values())}


@pytest.mark.parametrize(("threads", "streams"), [(2, 0), (3, 2)], ids=["2-threads-2-streams", "3-threads-2-streams"])
def test_threads_calling_detect_concurrently_on_openvino_finish_with_their_own_results(threads, streams):
    # In a child process: a deadlock inside OpenVINO may hold the GIL, which no in-process timeout can interrupt.
    code = f"import json; from tests.test_detector import concurrent_detect; " \
           f"print(json.dumps(concurrent_detect({threads}, {streams}, 30)))"
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{threads} threads calling detect() did not finish in 120 s: deadlock")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"calls": threads * 30, "wrong": 0, "users_left": 0}


def test_loading_openvino_sends_no_telemetry_and_leaves_no_thread(tmp_path):
    # openvino imported plainly posts a usage event from a thread pool and writes ~/intel/: a fresh process, with
    # its own home, shows what loading the detector does.
    code = ("import sys, threading; from framewatch.actors.core.config import DetectorConf; "
            "from framewatch.actors.inference.detectors import build_detector; "
            "d = build_detector(DetectorConf(runtime='openvino')); d.close(); "
            "print(sorted(t.name for t in threading.enumerate()), 'openvino_telemetry' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["['MainThread']", "False"]
    assert not (tmp_path / "intel").exists()
