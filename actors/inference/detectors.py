"""Detector backends behind one interface: a BGR array in, detections out.

A detector is created, used and closed by one inference actor on that actor's thread. ``detect`` may raise: the
inference actor counts the frame as failed and fails itself, so the supervisor restarts it with a fresh detector.

- ``SsdliteDetector``: the built-in SSDLite-MobileNetV2 person detector (vendored in ``actors/assets``) on the decoded
  frame (no JPEG round trip), run by one of two runtimes (``detector.runtime``) behind the same pre- and
  post-processing:

  - OpenVINO (``openvino`` on PyPI, reads the TensorFlow ``.pb`` itself): one compiled model per process, shared by
    every inference actor (see ``_CompiledSsd`` for the threading design). 1.6-1.7x the frames/s of cv2.dnn on a
    2-core AVX2 box with 2 actors, e.g. 48.5-50 vs 29.5-30 frames/s at 768x576 (``benchmarks/detector_speed.py``).
  - OpenCV ``cv2.dnn`` (``.pb`` + ``.pbtxt``): one net per actor, 36-60 ms per frame on the reference box.

  ``auto`` (the default) takes OpenVINO when it imports and loads the model, else cv2.dnn after one WARNING line
  naming why.
- ``EmulatedDetector``: sleeps a configured latency (with optional jitter) and finds nothing; sleeping releases the
  GIL like real inference does, so it stands in for a detector in backpressure tests and benchmarks.
- ``NoopDetector``: returns at once; measures the pipeline's own cost.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import sys
import threading
import time
from types import ModuleType
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from ..core.config import DetectorConf, resolve_asset
from ..core.messages import Detection
from ..core.supervision import StartError

log = logging.getLogger(__name__)

Runtime = Literal["auto", "openvino", "opencv"]


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...

    def close(self) -> None: ...


# --- SSDLite: shared pre/post-processing, two runtimes ----------------------------------------------------------------


class _Net(Protocol):
    """One runtime's forward pass of the SSDLite graph."""

    runtime: str  # "openvino" | "opencv": the end of the detector's name

    def forward(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb``: the frame resized to 300x300, RGB uint8 HWC. Returns ``[N, 5]`` float rows
        ``(score, x1, y1, x2, y2)``, coordinates normalised to 0..1."""
        ...

    def close(self) -> None: ...


class SsdliteDetector:
    """The SSDLite person model. ``runtime``: see the module docstring; ``streams``: OpenVINO streams, 0 for one per
    CPU core (``build_detector`` passes one per inference actor, at most one per core). ``close`` releases this
    detector's share of the process-wide OpenVINO model (freed with its last user) or its own cv2.dnn net."""

    _INPUT = (300, 300)

    def __init__(self, model: str, model_config: str, *, threshold: float = 0.5, threads: int = 1,
                 runtime: Runtime = "auto", streams: int = 0) -> None:
        """Raises ``StartError`` naming ``detector.model`` / ``detector.model_config`` when a file cannot be loaded,
        ``detector.runtime`` when ``runtime = "openvino"`` and OpenVINO is not installed."""
        cv2.setNumThreads(threads)  # cv2.dnn's threads, and the resize/colour conversion of either runtime
        self._threshold = threshold
        net = _open_net(runtime, resolve_asset(model), resolve_asset(model_config), streams or _cpu_count())
        self._net: _Net | None = net
        self.name = f"ssdlite-person/{net.runtime}"  # alerts carry it as ``backend``

    def detect(self, image: np.ndarray) -> list[Detection]:
        assert self._net is not None, "detect() after close()"
        h, w = image.shape[:2]
        # Resize, then swap to RGB: what blobFromImage(image, size=(300, 300), swapRB=True) does, done once for both.
        rgb = cv2.cvtColor(cv2.resize(image, self._INPUT), cv2.COLOR_BGR2RGB)
        found = []
        for score, x1, y1, x2, y2 in self._net.forward(rgb):
            if score < self._threshold:
                continue
            box = (
                int(np.clip(x1, 0, 1) * w),
                int(np.clip(y1, 0, 1) * h),
                int(np.clip(x2, 0, 1) * w),
                int(np.clip(y2, 0, 1) * h),
            )
            found.append(Detection(label="person", score=round(float(score), 4), box=box))
        return found

    def close(self) -> None:
        if self._net is not None:
            self._net.close()
            self._net = None


def _open_net(runtime: Runtime, model: str, model_config: str, streams: int) -> _Net:
    _require_file("detector.model", model)
    if runtime == "opencv":
        return _OpenCvNet(model, model_config)
    try:
        return _OpenVinoNet(model, streams)
    except StartError as exc:
        if runtime == "openvino":
            raise
        _notice(f"detector: OpenVINO not used ({exc.reason}); the SSDLite model runs on cv2.dnn instead, at about "
                "60% of the frames/s (detector.runtime = \"auto\"; \"opencv\" chooses cv2.dnn without this notice)")
        return _OpenCvNet(model, model_config)


def _require_file(setting: str, path: str) -> None:
    if not os.path.isfile(path):
        raise StartError(setting, f"no such file: {path}")


_noticed: set[str] = set()
_noticed_lock = threading.Lock()


def _notice(message: str) -> None:
    """Log ``message`` at WARNING once per process: every inference actor (and every restart) falls back alike."""
    with _noticed_lock:
        if message in _noticed:
            return
        _noticed.add(message)
    log.warning("%s", message)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _OpenCvNet:
    runtime = "opencv"

    def __init__(self, model: str, model_config: str) -> None:
        _require_file("detector.model_config", model_config)
        try:
            self._net = cv2.dnn.readNetFromTensorflow(model, model_config)
        except cv2.error as exc:
            # OpenCV's message is a multi-line report; its last non-empty line says what failed.
            reason = [line for line in str(exc).splitlines() if line.strip()][-1:] or ["cv2.error"]
            raise StartError("detector.model", f"cannot load {model!r} with {model_config!r}: "
                                               f"{reason[0].strip()}") from None

    def forward(self, rgb: np.ndarray) -> np.ndarray:
        self._net.setInput(cv2.dnn.blobFromImage(rgb))  # already 300x300 RGB: only HWC uint8 -> NCHW float32
        out = self._net.forward()  # [1, 1, N, 7]: image_id, class_id, score, x1, y1, x2, y2 (0..1)
        return out[0, 0, :, 2:7]

    def close(self) -> None:
        self._net = None


# --- OpenVINO ---------------------------------------------------------------------------------------------------------


def _import_openvino() -> ModuleType:
    """``openvino``, imported on first use only (0.4 s; never with ``runtime = "opencv"``), without its telemetry.

    Imported plainly, openvino 2026.4 sends a usage event to Google Analytics on import, on by default: it writes
    ``~/intel/openvino_ga_cid`` and ``~/intel/stats``, and posts from a non-daemon thread-pool thread that forks a
    process for it (a fork of framewatch's multi-threaded process, then a 3 s wait with no internet, and one more
    thread alive at exit). Its converter falls back to its own no-op stub when ``openvino_telemetry`` cannot be
    imported, so it is hidden during the import (and only then). Tests replace this function to simulate a machine
    without openvino."""
    hide = "openvino" not in sys.modules and "openvino_telemetry" not in sys.modules
    if hide:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # None: "import fails" to importlib
    try:
        import openvino
    finally:
        if hide:
            del sys.modules["openvino_telemetry"]
    return openvino


#: Longest wait for one inference (normally 20-60 ms), or for a free request. Past it ``detect`` raises, so an
#: inference actor never hangs on a wedged runtime: the frame counts as failed and the supervisor restarts the actor.
INFER_TIMEOUT_S = 30.0


class _CompiledSsd:
    """The SSDLite graph compiled once by OpenVINO, with a pool of one infer request per stream.

    Why this threading design: inference actors call ``detect`` one frame at a time, each on its own thread, so the
    2 cores are used fully only when the actors' calls run at once, each on its own OpenVINO stream (a share of the
    cores with its own threads): ``NUM_STREAMS`` = actors, at most one per core (2 streams gave 1.3-1.4x the
    frames/s of 1 stream with 2 actors, ``benchmarks/detector_speed.py``). One compiled model serves them all
    (compiling costs 1-2 s, and its memory is held once). ``infer`` takes an idle request from the pool (a caller
    beyond the streams waits there), starts it, waits for it with a timeout (GIL released) and puts it back: a
    request is only ever used by one thread at a time, made once, and OpenVINO never calls into Python.

    The warm-up inference in ``__init__`` is what keeps two threads from deadlocking: the first ``Tensor.data`` of
    a process initialises pybind11's numpy API lazily (a C++ static whose initialiser takes the GIL back, while a
    second thread holding the GIL waits on the same static), so two threads touching a tensor for the first time at
    once freeze the whole interpreter, for good and past any timeout: 11 of 30 processes doing just that hung here,
    none of 30 after one access beforehand. This is the deadlock FACTS.md saw with two threads calling ``infer()``;
    one thread feeding an ``AsyncInferQueue`` never has two first accesses at once. The warm-up runs while the
    model is created under ``_SharedModels``' lock, before any detector can call ``infer``.

    Other ways that went wrong here (openvino 2026.4):

    - ``compiled_model(inputs)`` uses one hidden request for every caller: "Infer Request is busy" when two overlap.
    - ``AsyncInferQueue.start_async`` from two threads: its Python half picks an idle request and copies the inputs
      into it, then its C++ half takes the next idle request again, so two callers can fill the same request and one
      is handed another frame's detections (seen: 2-3 of 90 calls), or "Infer Request is busy".
    - ``AsyncInferQueue`` with a Python completion callback, made safe with a lock: correct, but the callback runs on
      OpenVINO's threads and needs the GIL; one that does so while the interpreter exits is killed by Python, and
      the process aborts ("terminate called without an active exception": 3 exits of 8 in one trial).
    """

    def __init__(self, ov: Any, path: str, streams: int) -> None:
        core = ov.Core()
        model = core.read_model(path)
        model.reshape([1, 300, 300, 3])  # image_tensor:0 is [?, ?, ?, 3] uint8 RGB; fixed so OpenVINO plans once
        self._compiled = core.compile_model(model, "CPU", _openvino_properties(streams))
        self._boxes = self._compiled.output("detection_boxes:0")  # [1, 100, 4] normalised (y1, x1, y2, x2)
        self._scores = self._compiled.output("detection_scores:0")  # [1, 100], sorted high to low
        self._count = self._compiled.output("num_detections:0")  # [1], valid rows
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(streams):
            self._idle.put(self._compiled.create_infer_request())
        self.infer(np.zeros((300, 300, 3), np.uint8))  # the warm-up: see above (and the first inference is slow)

    def infer(self, rgb: np.ndarray) -> np.ndarray:
        """``[N, 5]`` rows ``(score, x1, y1, x2, y2)`` for one 300x300 RGB frame; thread-safe."""
        try:
            request = self._idle.get(timeout=INFER_TIMEOUT_S)
        except queue.Empty:
            raise TimeoutError(f"no OpenVINO infer request free in {INFER_TIMEOUT_S:g} s") from None
        stuck = False
        try:
            request.start_async({0: rgb[np.newaxis]})
            stuck = not request.wait_for(int(INFER_TIMEOUT_S * 1000))
            if stuck:
                raise TimeoutError(f"OpenVINO inference took over {INFER_TIMEOUT_S:g} s")
            return self._rows(request)
        finally:  # a stuck request is never handed out again: a fresh one takes its place
            self._idle.put(self._compiled.create_infer_request() if stuck else request)

    def _rows(self, request: Any) -> np.ndarray:
        n = int(request.get_tensor(self._count).data[0])
        boxes = request.get_tensor(self._boxes).data[0, :n]
        scores = request.get_tensor(self._scores).data[0, :n]
        # A new array: the request's output buffers are overwritten by its next inference.
        return np.column_stack((scores, boxes[:, 1], boxes[:, 0], boxes[:, 3], boxes[:, 2]))

    def close(self) -> None:
        """Called when no detector uses it any more: nothing is in flight, but a request that timed out."""
        self._idle = queue.SimpleQueue()
        self._compiled = None


def _openvino_properties(streams: int) -> dict[str, Any]:
    """CPU plugin settings, chosen by measurement (``benchmarks/detector_speed.py``): throughput mode with one stream
    per concurrent caller; the cores are split between the streams by OpenVINO (``INFERENCE_NUM_THREADS`` left at
    its default, every core)."""
    return {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}


class _SharedModels:
    """The process's compiled models, one per (model file, streams), each kept while a detector uses it: created by
    the first detector that needs it (the others wait for it under the lock rather than compile their own) and freed
    when the last one closes, so a stopped pipeline holds no OpenVINO threads or memory. A restarted actor finds it
    still there unless it was the only user (then it compiles again, 1-2 s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, int], tuple[_CompiledSsd, int]] = {}

    def acquire(self, path: str, streams: int) -> _CompiledSsd:
        """Raises ``StartError``: ``detector.runtime`` without OpenVINO, ``detector.model`` when it cannot load."""
        key = (os.path.abspath(path), streams)
        with self._lock:
            model, users = self._models.get(key) or (self._compile(path, streams), 0)
            self._models[key] = (model, users + 1)
            return model

    def release(self, model: _CompiledSsd) -> None:
        with self._lock:
            for key, (held, users) in self._models.items():
                if held is model:
                    if users > 1:
                        self._models[key] = (held, users - 1)
                    else:
                        del self._models[key]
                        held.close()
                    return

    def users(self) -> dict[tuple[str, int], int]:
        """Per compiled model (model file, streams): the detectors holding it. For tests and diagnostics."""
        with self._lock:
            return {key: users for key, (_, users) in self._models.items()}

    @staticmethod
    def _compile(path: str, streams: int) -> _CompiledSsd:
        try:
            ov = _import_openvino()
        except ImportError as exc:
            raise StartError("detector.runtime", f"openvino is not installed ({exc})") from None
        try:
            return _CompiledSsd(ov, path, streams)
        except Exception as exc:  # noqa: BLE001  (RuntimeError mostly: a report whose last line says what failed)
            reason = [line.strip() for line in str(exc).splitlines() if line.strip()][-1:] or [type(exc).__name__]
            raise StartError("detector.model", f"OpenVINO cannot load {path!r}: {reason[0]}") from None


SHARED_MODELS = _SharedModels()


class _OpenVinoNet:
    runtime = "openvino"

    def __init__(self, model: str, streams: int) -> None:
        self._model: _CompiledSsd | None = SHARED_MODELS.acquire(model, streams)

    def forward(self, rgb: np.ndarray) -> np.ndarray:
        assert self._model is not None
        return self._model.infer(rgb)

    def close(self) -> None:
        if self._model is not None:
            SHARED_MODELS.release(self._model)
            self._model = None


# --- stand-ins --------------------------------------------------------------------------------------------------------


class EmulatedDetector:
    name = "emulated"

    def __init__(self, latency_ms: float, jitter_ms: float = 0.0, seed: int | None = None) -> None:
        self._latency = latency_ms / 1000
        self._jitter = jitter_ms / 1000
        self._rng = random.Random(seed)

    def detect(self, image: np.ndarray) -> list[Detection]:
        delay = self._latency + (self._rng.uniform(-self._jitter, self._jitter) if self._jitter else 0.0)
        time.sleep(max(0.0, delay))
        return []

    def close(self) -> None:
        pass


class NoopDetector:
    name = "noop"

    def detect(self, image: np.ndarray) -> list[Detection]:
        return []

    def close(self) -> None:
        pass


def build_detector(conf: DetectorConf) -> Detector:
    """Create the configured backend; called on the inference actor's own thread."""
    if conf.backend == "ssdlite":
        return SsdliteDetector(conf.model, conf.model_config, threshold=conf.threshold, threads=conf.threads,
                               runtime=conf.runtime, streams=openvino_streams(conf))
    if conf.backend == "emulated":
        return EmulatedDetector(conf.emulated_latency_ms, conf.emulated_jitter_ms)
    return NoopDetector()


def build_coco_detector(conf: DetectorConf) -> Detector:
    """The 80-class detector for ``detector.coco_task_types`` (``nanodet``); the emulated and no-op backends stand in
    for it as they do for the person detector."""
    if conf.backend != "ssdlite":
        return build_detector(conf)
    from .nanodet import NanodetDetector  # onnxruntime is imported only when a task needs the model

    return NanodetDetector(conf.coco_model, threshold=conf.coco_threshold, threads=conf.threads)


def openvino_streams(conf: DetectorConf) -> int:
    """``detector.openvino_streams``, or 0's meaning: one per inference actor (each calls one frame at a time, so
    more streams would idle), at most one per CPU core."""
    return conf.openvino_streams or max(1, min(conf.actors, _cpu_count()))
