"""Frame sources behind one small interface: open, grab, retrieve, close.

``grab()`` advances the stream and returns the frame's timestamp; ``retrieve()`` converts the last grabbed frame to a
BGR array. They are split so that an extractor can keep draining a live stream at its own pace and pay for the
conversion only for frames that will be inferred (OpenCV's ``grab`` still decodes; ``retrieve`` adds the colour
conversion and the copy).

Sources are not thread-safe: one extractor thread opens, uses and closes each one. Every blocking call is bounded:
RTSP opens and reads have timeouts; paced file and synthetic sources wait at most one frame period.

Errors: ``SourceError`` for "cannot open / read failed" (the extractor backs off and reopens), ``SourceEnded`` for the
end of a non-looping file (the extractor stops that task cleanly).
"""

from __future__ import annotations

import os
import time
from typing import Protocol

import cv2
import numpy as np

from ..core.config import resolve_asset
from ..core.urls import is_live, parse_synthetic

# TCP for RTSP (no UDP loss on a busy box) and a small probe: open time 1.1 s -> 60 ms (measured, see FACTS).
_FFMPEG_CAPTURE_OPTIONS = "rtsp_transport;tcp|probesize;32768"


class SourceError(Exception):
    """The source cannot be opened or stopped delivering frames."""


class SourceStalled(SourceError):
    """A live stream delivered no new frame within the read timeout (the camera froze)."""


class SourceEnded(SourceError):
    """A non-looping file reached its end."""


class FrameSource(Protocol):
    url: str
    live: bool  # True when frames arrive on their own clock (RTSP); False when we pace them

    def open(self) -> None: ...

    def grab(self) -> float:
        """Advance to the next frame; return its capture time as ``time.monotonic()`` seconds."""
        ...

    def retrieve(self) -> np.ndarray:
        """The last grabbed frame as a BGR array."""
        ...

    def close(self) -> None: ...


class _Pacer:
    """Delivers ticks at ``fps`` on the monotonic clock; after a stall it resynchronises instead of bursting."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._next = 0.0

    def wait(self) -> float:
        now = time.monotonic()
        if self._next == 0.0 or now - self._next > self.period * 2:
            self._next = now
        elif self._next > now:
            time.sleep(self._next - now)
        ts = self._next
        self._next += self.period
        return ts


class CaptureSource:
    """A video file or RTSP stream read through OpenCV's FFmpeg backend."""

    def __init__(
        self,
        url: str,
        *,
        open_timeout_ms: int = 3000,
        read_timeout_ms: int = 2000,
        loop: bool = True,
        realtime: bool = True,
    ) -> None:
        self.url = url
        self.live = is_live(url)
        self._open_timeout_ms = open_timeout_ms
        self._read_timeout_ms = read_timeout_ms
        self._loop = loop
        self._realtime = realtime
        self._cap: cv2.VideoCapture | None = None
        self._pacer: _Pacer | None = None

    def open(self) -> None:
        if self.live:
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", _FFMPEG_CAPTURE_OPTIONS)
        elif not os.path.exists(self.url):
            raise SourceError(f"no such file: {self.url}")
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._open_timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._read_timeout_ms,
            cv2.CAP_PROP_N_THREADS, 1,
        ]
        cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.url}")
        self._cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._pacer = _Pacer(fps if 0 < fps <= 240 else 25.0) if (self._realtime and not self.live) else None

    def grab(self) -> float:
        cap = self._require()
        if self._pacer is not None:
            ts = self._pacer.wait()
        started = time.monotonic()
        grabbed = cap.grab()
        if self.live and time.monotonic() - started >= self._read_timeout_ms / 1000:
            # The read timeout fired: FFmpeg's read was interrupted and this capture never delivers live frames again.
            # grab() may still return True, once per frame the decoder held back for reordering (B-frames): old
            # frames with distinct positions, so a repeated CAP_PROP_POS_MSEC does not reveal the stall; the time does.
            raise SourceStalled(f"no new frame from {self.url} within {self._read_timeout_ms} ms (stream frozen)")
        if not grabbed:
            if self.live:
                raise SourceError(f"read failed on {self.url}")
            if not self._loop:
                raise SourceEnded(f"end of {self.url}")
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            if not cap.grab():
                raise SourceError(f"cannot rewind {self.url}")
        return ts if self._pacer is not None else time.monotonic()

    def retrieve(self) -> np.ndarray:
        ok, image = self._require().retrieve()
        if not ok or image is None:
            raise SourceError(f"cannot decode frame from {self.url}")
        return image

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _require(self) -> cv2.VideoCapture:
        if self._cap is None:
            raise SourceError(f"{self.url} is not open")
        return self._cap


class SyntheticSource:
    """Moving shapes on a grey background, at ``fps``; for tests and benchmarks.

    URL: ``synthetic://NAME?width=640&height=360&fps=25&shapes=3&fail_open=0``. Drawing happens in ``retrieve``, so
    skipped frames cost nothing, like ``grab`` without ``retrieve`` on a real source costs no conversion.
    """

    live = False

    def __init__(self, url: str, *, realtime: bool = True) -> None:
        self.url = url
        try:
            params = parse_synthetic(url)
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        self.width, self.height, self.fps, self.shapes = params.width, params.height, params.fps, params.shapes
        self._fail_open = params.fail_open
        self._realtime = realtime
        self._pacer: _Pacer | None = None
        self._n = 0
        self._open = False

    def open(self) -> None:
        if self._fail_open:
            raise SourceError(f"cannot open {self.url} (fail_open)")
        self._pacer = _Pacer(self.fps) if self._realtime else None
        self._open = True

    def grab(self) -> float:
        if not self._open:
            raise SourceError(f"{self.url} is not open")
        self._n += 1
        return self._pacer.wait() if self._pacer is not None else time.monotonic()

    def retrieve(self) -> np.ndarray:
        image = np.full((self.height, self.width, 3), 96, np.uint8)
        for k in range(self.shapes):
            x = int((self._n * (3 + k) + 97 * k) % self.width)
            y = int((self._n * (2 + k) + 53 * k) % self.height)
            cv2.rectangle(image, (x, y), (x + self.width // 10, y + self.height // 6), (40 * k % 255, 200, 90), -1)
        return image

    def close(self) -> None:
        self._open = False


def open_source(
    url: str,
    *,
    open_timeout_ms: int = 3000,
    read_timeout_ms: int = 2000,
    loop: bool = True,
    realtime: bool = True,
) -> FrameSource:
    """Build (not open) the source for a task's ``rtsp_url``."""
    if url.startswith("synthetic://"):
        return SyntheticSource(url, realtime=realtime)
    return CaptureSource(
        resolve_asset(url),
        open_timeout_ms=open_timeout_ms,
        read_timeout_ms=read_timeout_ms,
        loop=loop,
        realtime=realtime,
    )
