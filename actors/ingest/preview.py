"""A camera's latest frame for the console's preview: kept for free, converted to JPEG only when asked, and rarely.

The extractor hands each frame it converts to ``offer``: a reference is kept (frames are not modified after
extraction), nothing is copied or encoded. ``jpeg`` encodes the latest frame on request, at most once per
``min_interval_sec``: within that interval, or while the frame has not changed, every request gets the cached JPEG.
So a console polling, or a client hammering ``/preview``, costs at most one conversion per camera per interval, on
the HTTP thread, never on the extractor's. Only frames the extractor already decoded and converted are shown: a
camera that inference cannot keep up with shows a frame a little older (``age_sec`` says how old).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..storage.writer import encode_jpeg

__all__ = ["Preview"]


class Preview:
    """The latest frame of one camera (thread-safe: the extractor offers, HTTP threads read)."""

    def __init__(self, *, min_interval_sec: float = 1.0, quality: int = 80) -> None:
        self._lock = threading.Lock()
        self._encode = threading.Lock()  # one conversion at a time per camera
        self._image: Any = None
        self._captured_at = 0.0  # wall-clock time of the latest frame
        self._jpeg: bytes | None = None
        self._jpeg_of: Any = None  # the image the cached JPEG was made from
        self._jpeg_captured_at = 0.0
        self._encoded_mono = float("-inf")
        self._min_interval = min_interval_sec
        self._quality = quality
        self.encodes = 0  # conversions made (the rate limit's evidence)

    def offer(self, image: Any, captured_at: float) -> None:
        with self._lock:
            self._image = image
            self._captured_at = captured_at

    def jpeg(self) -> tuple[bytes, float] | None:
        """The latest frame as JPEG and its capture time (wall clock); None before the first frame."""
        with self._encode:
            with self._lock:
                image, captured_at = self._image, self._captured_at
            if image is None:
                return None
            fresh_enough = time.monotonic() - self._encoded_mono < self._min_interval
            if self._jpeg is not None and (image is self._jpeg_of or fresh_enough):
                return self._jpeg, self._jpeg_captured_at
            jpeg = encode_jpeg(image, self._quality)
            if jpeg is None:
                return (self._jpeg, self._jpeg_captured_at) if self._jpeg is not None else None
            self._jpeg, self._jpeg_of, self._jpeg_captured_at = jpeg, image, captured_at
            self._encoded_mono = time.monotonic()
            self.encodes += 1
            return jpeg, captured_at
