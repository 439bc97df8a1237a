"""Frame sources behind one small interface: open, grab, retrieve, close.

``grab()`` advances the stream and returns the frame's timestamp; ``retrieve()`` converts the last grabbed frame to a
BGR array. They are split so that an extractor can keep draining a live stream at its own pace and pay for the
conversion only for frames that will be inferred (OpenCV's ``grab`` still decodes; ``retrieve`` adds the colour
conversion and the copy).

A source that decodes only part of the stream (``PyavSource``, ``actors/ingest/pyav.py``: keyframes only while
inference takes few frames of the camera) says so through two more calls: ``retrievable()`` (may the frame just
grabbed be retrieved? the extractor takes no credit for one that cannot) and ``want(due, until, held)`` (the camera's
demand; returns when the source can next serve a sample, which the extractor reports to its valve so that no credit is
granted to wait for a keyframe). ``CaptureSource`` and ``SyntheticSource`` can always retrieve and answer ``due``.
``decoded`` counts the frames a source decoded and ``decode_mode`` says how it decodes (stats: decoded per inferred).

Sources are not thread-safe: one extractor thread opens, uses and closes each one. Every blocking call is bounded:
RTSP opens and reads have timeouts; paced file and synthetic sources wait at most until the next frame is due (a
gap of more than 1 s or 10 frames in a file is skipped, not waited for).

Errors: ``SourceError`` for "cannot open / read failed" (the extractor backs off and reopens), ``SourceEnded`` for the
end of a non-looping file (the extractor stops that task cleanly).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Literal, Protocol

import cv2
import numpy as np

from ..core.config import resolve_asset
from ..core.urls import is_live, parse_synthetic

if TYPE_CHECKING:
    from ..core.config import Config, TaskConf

log = logging.getLogger(__name__)

Decoder = Literal["pyav", "opencv"]

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

    @property
    def decode_mode(self) -> str:
        """How frames are decoded now: "keyframes" | "gop" | "full" (PyAV), "opencv", "synthetic"."""
        ...

    @property
    def decoded(self) -> int:
        """Frames decoded since this source was made (what decoding cost, next to the frames inferred)."""
        ...

    def open(self) -> None: ...

    def grab(self) -> float:
        """Advance to the next frame; return its capture time as ``time.monotonic()`` seconds."""
        ...

    def retrievable(self) -> bool:
        """``retrieve()`` can deliver the frame just grabbed (a source decoding keyframes only says False between
        them); the extractor takes a credit only for a frame that is."""
        ...

    def want(self, due: float, until: float, held: int) -> float:
        """The camera's demand after the frame just grabbed: its next sample may take any frame from ``due`` until
        ``until`` (monotonic seconds; ``due`` is the frame's own time when a sample is waiting now, ``until`` when the
        following sample is due and this one is skipped), and ``held`` credits are already granted to it.

        Returns when the source can serve that sample, at or after ``due``: the extractor tells its valve so, and no
        credit is granted long before a frame can be retrieved to spend it on."""
        ...

    def retrieve(self) -> np.ndarray:
        """The last grabbed frame as a BGR array."""
        ...

    @property
    def frame_time(self) -> float:
        """When the frame ``retrieve()`` returned last was captured (monotonic seconds): the grab's time, or earlier
        when the source served the sample with a picture decoded shortly before (PyAV: its last keyframe's)."""
        ...

    def close(self) -> None: ...


class Pacer:
    """Releases frames on the monotonic clock at the native rate; after a stall it resynchronises instead of bursting.

    ``wait()`` without a stream time ticks once per ``period``; ``wait(stream_time)`` releases a frame at its own
    presentation time (seconds on the stream's clock), so variable frame spacing is kept. A stream time that goes
    back (a looping file rewound) or leaps ahead (a gap in a recording) is re-anchored one period after the previous
    frame: files loop seamlessly and a gap does not stall the source."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._anchor: float | None = None  # monotonic time of stream time 0
        self._stream = 0.0  # the previous frame's stream time
        self._last = 0.0  # the previous frame's release time

    def wait(self, stream_time: float | None = None) -> float:
        now = time.monotonic()
        if stream_time is None:
            stream_time = self._stream + self.period if self._anchor is not None else 0.0
        if self._anchor is None:
            self._anchor = now - stream_time
        elif not 0.0 < stream_time - self._stream <= max(1.0, 10 * self.period):
            self._anchor = self._last + self.period - stream_time
        ts = self._anchor + stream_time
        if now - ts > self.period * 2:  # we fell behind (a stall, a slow consumer): drop the debt, do not burst
            self._anchor, ts = now - stream_time, now
        elif ts > now:
            time.sleep(ts - now)
        self._stream, self._last = stream_time, ts
        return ts


def check_file(url: str) -> None:
    """A file source's file must exist (FFmpeg's own error would not say which)."""
    if not os.path.exists(url):
        raise SourceError(f"no such file: {url}")


def end_of_stream(url: str, *, live: bool, loop: bool) -> None:
    """The stream ran out: raises what that means (a live stream failed; a file ended); returns when a looping file
    should be rewound."""
    if live:
        raise SourceError(f"read failed on {url}")
    if not loop:
        raise SourceEnded(f"end of {url}")


class CaptureSource:
    """A video file or RTSP stream read through OpenCV's FFmpeg backend: every frame grabbed is decoded."""

    decode_mode = "opencv"

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
        self._pacer: Pacer | None = None
        self.decoded = 0
        self.frame_time = 0.0

    def open(self) -> None:
        if self.live:
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", _FFMPEG_CAPTURE_OPTIONS)
        else:
            check_file(self.url)
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
        self._pacer = Pacer(fps if 0 < fps <= 240 else 25.0) if (self._realtime and not self.live) else None

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
            end_of_stream(self.url, live=self.live, loop=self._loop)
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            if not cap.grab():
                raise SourceError(f"cannot rewind {self.url}")
        self.decoded += 1  # grab() decodes
        self.frame_time = ts if self._pacer is not None else time.monotonic()
        return self.frame_time

    def retrievable(self) -> bool:
        return True

    def want(self, due: float, until: float, held: int) -> float:
        return due

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
    decode_mode = "synthetic"

    def __init__(self, url: str, *, realtime: bool = True) -> None:
        self.url = url
        try:
            params = parse_synthetic(url)
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        self.width, self.height, self.fps, self.shapes = params.width, params.height, params.fps, params.shapes
        self._fail_open = params.fail_open
        self._realtime = realtime
        self._pacer: Pacer | None = None
        self._n = 0
        self._open = False
        self.decoded = 0  # frames drawn
        self.frame_time = 0.0

    def open(self) -> None:
        if self._fail_open:
            raise SourceError(f"cannot open {self.url} (fail_open)")
        self._pacer = Pacer(self.fps) if self._realtime else None
        self._open = True

    def grab(self) -> float:
        if not self._open:
            raise SourceError(f"{self.url} is not open")
        self._n += 1
        self.frame_time = self._pacer.wait() if self._pacer is not None else time.monotonic()
        return self.frame_time

    def retrievable(self) -> bool:
        return True

    def want(self, due: float, until: float, held: int) -> float:
        return due

    def retrieve(self) -> np.ndarray:
        self.decoded += 1
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
    decoder: Decoder = "pyav",
) -> FrameSource:
    """Build (not open) the source for a task's ``rtsp_url``; ``decoder`` chooses how files and streams are read
    (the conf's choice: ``source_for_task``). Synthetic URLs ignore ``decoder``."""
    if url.startswith("synthetic://"):
        return SyntheticSource(url, realtime=realtime)
    path = resolve_asset(url)
    if decoder == "pyav":
        try:
            from .pyav import PyavSource
        except ImportError as exc:  # `av` is in install_requires: only a broken install gets here
            _warn_no_pyav(exc)
        else:
            return PyavSource(path, open_timeout_ms=open_timeout_ms, read_timeout_ms=read_timeout_ms, loop=loop,
                              realtime=realtime)
    return CaptureSource(
        path,
        open_timeout_ms=open_timeout_ms,
        read_timeout_ms=read_timeout_ms,
        loop=loop,
        realtime=realtime,
    )


def source_for_task(cfg: Config, task: TaskConf) -> FrameSource:
    """The source the conf asks for: the task's ``decoder``, else ``frame_extractor.decoder``, with its timeouts."""
    fe = cfg.frame_extractor
    return open_source(task.rtsp_url, open_timeout_ms=fe.open_timeout_ms, read_timeout_ms=fe.read_timeout_ms,
                       loop=task.loop, realtime=task.realtime, decoder=cfg.task_decoder(task))


def unpaced(task: TaskConf) -> bool:
    """A file (or synthetic source) read as fast as it decodes: no clock of its own, so its samples wait for a credit
    instead of being skipped (``backpressure.Valve.waits``) and the whole file is analysed at inference's pace."""
    return not task.realtime and not is_live(task.rtsp_url)


_warned_no_pyav = False


def _warn_no_pyav(exc: ImportError) -> None:
    """Once per process: the cameras still run, decoding every frame (their stats say decode_mode "opencv")."""
    global _warned_no_pyav
    if not _warned_no_pyav:
        _warned_no_pyav = True
        log.warning("decoder 'pyav' unavailable (%s); decoding with OpenCV, every frame (pip install av)", exc)
