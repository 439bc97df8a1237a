"""Detector backends behind one interface: a BGR array in, detections out.

A detector is created, used and closed by one inference actor on that actor's thread (``cv2.dnn`` nets are not
shared between threads). ``detect`` may raise: the inference actor counts the frame as failed and fails itself, so
the supervisor restarts it with a fresh detector.

- ``SsdliteDetector``: the built-in SSDLite-MobileNetV2 person detector (vendored in ``actors/assets``), run through
  ``cv2.dnn`` on the decoded frame (no JPEG round trip). 36-60 ms per frame on the reference 2-core box.
- ``EmulatedDetector``: sleeps a configured latency (with optional jitter) and finds nothing; sleeping releases the
  GIL like real inference does, so it stands in for a detector in backpressure tests and benchmarks.
- ``NoopDetector``: returns at once; measures the pipeline's own cost.
"""

from __future__ import annotations

import os
import random
import time
from typing import Protocol

import cv2
import numpy as np

from ..core.config import DetectorConf, resolve_asset
from ..core.messages import Detection
from ..core.supervision import StartError


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...

    def close(self) -> None: ...


class SsdliteDetector:
    name = "ssdlite-person"
    _INPUT = (300, 300)

    def __init__(self, model: str, model_config: str, *, threshold: float = 0.5, threads: int = 1) -> None:
        """Raises ``StartError`` naming ``detector.model`` / ``detector.model_config`` when a file cannot be loaded."""
        cv2.setNumThreads(threads)
        paths = {"detector.model": resolve_asset(model), "detector.model_config": resolve_asset(model_config)}
        for setting, path in paths.items():
            if not os.path.isfile(path):
                raise StartError(setting, f"no such file: {path}")
        try:
            self._net = cv2.dnn.readNetFromTensorflow(paths["detector.model"], paths["detector.model_config"])
        except cv2.error as exc:
            # OpenCV's message is a multi-line report; its last non-empty line says what failed.
            reason = [line for line in str(exc).splitlines() if line.strip()][-1:] or ["cv2.error"]
            raise StartError("detector.model", f"cannot load {model!r} with {model_config!r}: "
                                               f"{reason[0].strip()}") from None
        self._threshold = threshold

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        self._net.setInput(cv2.dnn.blobFromImage(image, size=self._INPUT, swapRB=True))
        out = self._net.forward()  # [1, 1, N, 7]: image_id, class_id, score, x1, y1, x2, y2 (0..1)
        found = []
        for _, _, score, x1, y1, x2, y2 in out[0, 0]:
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
        self._net = None


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
        return SsdliteDetector(conf.model, conf.model_config, threshold=conf.threshold, threads=conf.threads)
    if conf.backend == "emulated":
        return EmulatedDetector(conf.emulated_latency_ms, conf.emulated_jitter_ms)
    return NoopDetector()
