"""Inference backends for benchmarks, handed to framewatch through ``Running(..., detector_factory=...)``.

- ``DistributionDetector``: the emulated backend with a latency distribution (constant, uniform, lognormal), drawn
  per frame and spent in ``time.sleep`` (which releases the GIL, as ``cv2.dnn`` does).
- ``DrainableDetector``: wraps any backend; once the harness sets ``Drain``, it returns at once, so frames still
  queued after the measured window (the baseline's backlog) pass in a second instead of minutes. Frames drained this
  way are inferred after the window closed and never enter the results.

Each detector is created on its inference actor's thread (the factory is called there), like the built-in ones.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from itertools import count

import msgspec
import numpy as np

from framewatch.actors.core.config import DetectorConf
from framewatch.actors.core.messages import Detection
from framewatch.actors.inference.detectors import Detector, NoopDetector, build_detector

from .scenario import Inference

_seeds = count()


class LatencyModel:
    """Draws latencies in seconds; the mean is ``mean_ms`` for every distribution."""

    def __init__(self, inf: Inference, seed: int | None) -> None:
        self.kind = inf.distribution
        self.mean = inf.mean_ms / 1000
        self.jitter = inf.jitter_ms / 1000
        self.sigma = inf.sigma
        self._mu = math.log(self.mean) - self.sigma**2 / 2  # E[lognormal(mu, sigma)] = exp(mu + sigma^2 / 2)
        self._rng = random.Random(seed)

    def draw(self) -> float:
        if self.kind == "uniform" and self.jitter:
            return max(0.0, self._rng.uniform(self.mean - self.jitter, self.mean + self.jitter))
        if self.kind == "lognormal" and self.sigma:
            return self._rng.lognormvariate(self._mu, self.sigma)
        return self.mean


class DistributionDetector:
    """The emulated backend: sleeps a drawn latency; finds one person on ``detect_fraction`` of the frames."""

    def __init__(self, inf: Inference, seed: int | None = None) -> None:
        self.name = f"emulated-{inf.distribution}"
        self._model = LatencyModel(inf, seed)
        self._detect_fraction = inf.detect_fraction
        self._rng = random.Random(None if seed is None else seed + 7919)

    def detect(self, image: np.ndarray) -> list[Detection]:
        time.sleep(self._model.draw())
        if self._detect_fraction and self._rng.random() < self._detect_fraction:
            h, w = image.shape[:2]
            return [Detection(label="person", score=0.9, box=(w // 4, h // 4, w // 2, h - 1))]
        return []

    def close(self) -> None:
        pass


class Drain:
    """Shared by every detector of one run: set when the measured window is over."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.frame_bytes = 0  # size of a decoded frame, seen by the first detect()


class DrainableDetector:
    def __init__(self, inner: Detector, drain: Drain) -> None:
        self.name = inner.name
        self._inner = inner
        self._drain = drain

    def detect(self, image: np.ndarray) -> list[Detection]:
        if not self._drain.frame_bytes:
            self._drain.frame_bytes = int(image.nbytes)
        if self._drain.event.is_set():
            return []
        return self._inner.detect(image)

    def close(self) -> None:
        self._inner.close()


def backend_factory(inf: Inference, det: DetectorConf) -> Callable[[], Detector]:
    """A factory of fresh, unwrapped backends (one per inference actor, or per probe thread)."""
    if inf.backend == "emulated":
        return lambda: DistributionDetector(inf, None if inf.seed is None else inf.seed + next(_seeds))
    if inf.backend == "ssdlite":
        ssdlite = msgspec.structs.replace(det, backend="ssdlite")  # the conf's runtime, streams, threads, model
        return lambda: build_detector(ssdlite)
    return NoopDetector


def run_factory(inf: Inference, det: DetectorConf, drain: Drain) -> Callable[[], Detector]:
    make = backend_factory(inf, det)
    return lambda: DrainableDetector(make(), drain)


def theoretical_capacity_fps(inf: Inference, n_slots: int) -> float | None:
    """Frames/s the emulated backend can finish at most: slots * 1000 / mean_ms; remote services with a latency and
    the noop detector: slots * 1000 / latency_ms (their sleep alone, transport not counted); None otherwise."""
    if inf.backend == "remote" and inf.detector == "noop" and inf.latency_ms > 0:
        return n_slots * 1000 / inf.latency_ms
    if inf.backend != "emulated":
        return None
    return n_slots * 1000 / inf.mean_ms
