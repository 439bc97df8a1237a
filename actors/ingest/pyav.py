"""PyAV source: every packet is demuxed, only the frames inference can take are decoded.

Why: decoding is the largest cost after the detector. 14 cameras at 720p/25 fps cost 0.63-0.70 cores to decode every
frame (OpenCV's ``grab`` decodes), although backpressure skips most samples; demuxing alone costs 0.14 cores and
decoding only keyframes 0.24 (FACTS, 2026-12-02). So this source always demuxes (the stream never backs up and the
extractor keeps its per-frame sampling clock), and decodes a frame only when the extractor retrieves it, plus the
frames that one depends on.

Which frames can be retrieved is the decision (``GopPolicy``): a keyframe always (it decodes alone); a frame between
keyframes only if the group of pictures (GOP) it belongs to is *offered*, because it can be decoded only after every
frame since its keyframe. Offering is decided once per GOP, at its first frame after the keyframe, and can only end
before the next keyframe, never start: no frame is ever decoded against a missing reference. Within an offered GOP the
packets are kept and decoded when a frame is retrieved (a catch-up from the last one decoded), so the tail of a GOP
after its last retrieved frame is never decoded either. (Decoding offered GOPs as they come instead shortens the
catch-up, during which the credit counts against the watermark, but measured 14 cameras: 30% more decoding for at most
4% more frames inferred with a detector that takes no CPU; with one that does, the CPU is worth more.)

A keyframe for which a sample is waiting is decoded as it arrives, before its credit is granted, and its picture may
serve that sample for a short grace after it (the credit often comes late under overload): no decode while a credit is
held, none at all for a late one. ``frame_time`` is then the keyframe's time, so frame ages stay true.

Modes (``decode_mode``, per camera, from the last GOPs): "keyframes" (no whole GOP offered), "full" (every GOP
offered), "gop" (some).

Timestamps are the stream's: PTS/DTS mapped to ``time.monotonic()`` at open and re-anchored on a jump or a loop
(``LiveClock`` for cameras, ``sources.Pacer`` for files), so frame spacing is the stream's and a frozen camera is seen
as no packet within the read timeout (``SourceStalled``), whatever the decoder holds back.

B-frames: a decoder that reorders holds pictures back, so a lone keyframe is decoded by a second codec context and
drained there; the GOP decoder is never drained (draining would lose its references). Its pictures lag the newest
packet by the reorder depth; until the first one of a GOP comes out, a retrieve returns the GOP's keyframe.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterator
from fractions import Fraction

import av
import av.error
import numpy as np

from ..core.urls import is_live
from .sources import Pacer, SourceError, SourceStalled, check_file, end_of_stream

log = logging.getLogger(__name__)

#: RTSP over TCP (no UDP loss on a busy box) with a small probe: open in ~0.12 s instead of ~2.4 s (measured on the
#: loopback camera), and no two seconds of packets buffered during the probe and handed out stale afterwards.
_LIVE_OPTIONS = {"rtsp_transport": "tcp", "probesize": "32768"}
#: Packets of an offered GOP waiting for a retrieve beyond this many bytes are decoded at once (memory bound).
_MAX_UNFED_BYTES = 8 << 20


class GopPolicy:
    """Which frames to make retrievable, from the camera's demand: keyframes, whole GOPs, or a keyframe's picture
    shortly after it.

    The costs: a keyframe decodes alone, but a frame ``k`` frames after it costs ``k + 1`` decodes. So a camera that
    gets at most about one credit per keyframe interval is best served at keyframes (one decode per inferred frame),
    and one that gets more needs its GOPs decoded. What a camera gets is the supervisor's choice, and it can only be
    seen by asking: while only keyframes are offered, the source asks for credits only at keyframes (``want`` answers
    the next keyframe's time), so the grant rate it sees cannot exceed the keyframe rate. Hence:

    - No GOP is offered (decodable beyond its keyframe) unless a sample must be served before the next keyframe,
      because it is skipped by then (the following one is due). A sample that can wait is served by the keyframe:
      its sampling instant moves by less than a keyframe interval, and it costs one decode instead of a catch-up.
      An offered GOP stops being offered once no such sample is left in it.
    - An offered GOP proves itself by the credits spent in it: ``ENTER`` (2: more than its keyframe alone could
      serve) switches to offering every GOP that needs it; an average per offered GOP below ``LEAVE`` (1.5) switches
      back. The band between them is the hysteresis: a camera at its fair share near one frame per keyframe
      interval does not flip every GOP.
    - Evidence that more is available, while at keyframes: a spare credit still held after the keyframe took one,
      while a sample must be served in this GOP (inference had room; the credit must not wait a whole GOP either);
      or a probe, one GOP offered after ``PROBE_MIN`` GOPs served by their keyframe, the gap doubling to
      ``PROBE_MAX`` after each probe that found nothing (needed when a camera may hold one credit only).
    - Grace: for ``grace`` seconds after a keyframe, a sample may still take the keyframe's picture (decoded already
      when a sample was waiting for it), so a credit granted a little late costs no decode at all. Under overload the
      supervisor grants in bursts, when the load falls to the low watermark; a camera asking only at its keyframes
      is seldom asking then, and starves next to cameras that take any frame (measured: 14 cameras, 8 frames/s, the
      ones at keyframes got 0-0.07 frames/s, the others 0.8-1.4). Asking earlier instead holds the credit until the
      keyframe, against the watermark (measured: fair, but 5.8 instead of 7.9 frames/s inferred). ``grace`` doubles
      (up to ``GRACE_MAX`` and half a keyframe interval) each time it runs out with the keyframe wanted but not
      taken, and shrinks while credits come within it. It is part of the keyframes mode.

    Times are the source's timestamps (monotonic seconds), the same clock as the samples' due times.
    """

    ENTER = 2.0
    LEAVE = 1.5
    PROBE_MIN = 4
    PROBE_MAX = 16
    GRACE_MAX = 0.5  # s: the keyframe's picture is that old at most when it is sent
    GUESS = 2.0  # s: a keyframe interval assumed until one is measured (cameras: mostly 1-2 s)
    HISTORY = 8

    def __init__(self, period: float) -> None:
        self.period = period  # frame period, s
        self.interval: float | None = None  # keyframe interval, s (EWMA), learned from the stream
        self.grace = 2 * period
        self._last_key: float | None = None
        self._timed_key = False  # the last keyframe's timestamp came from the stream (an interval can be measured)
        self._demand_known = False  # want() was called: without demand (a plain grab/retrieve loop) offer everything
        self._due = -math.inf  # the next sample may take a frame from _due until _until
        self._until = math.inf
        self._held = 0
        self._decoding = False  # the hysteresis state: offer every GOP that needs it
        self._credits_avg = 0.0  # credits spent per offered GOP (EWMA)
        self._probe_every = self.PROBE_MIN
        self._since_probe = 0
        self._history: deque[bool] = deque(maxlen=self.HISTORY)  # GOPs offered or not, last ones
        # The current GOP:
        self.waiting_at_key = False  # a sample was waiting when its keyframe came
        self._key_wanted = False  # a sample wanted the keyframe's picture (at it or within the grace)
        self._decided = False
        self._offered = False
        self._why = ""  # why it is offered: "decoding" | "credit" | "probe" | "learning"
        self._spent = 0
        self._key_spent = False  # the keyframe's picture was taken (at the keyframe or within the grace)
        self._key_late = False  # ... within the grace

    @property
    def mode(self) -> str:
        if not self._demand_known:
            return "full"
        if not self._history:
            return "full" if self._decoding else "keyframes"
        offered = sum(self._history)
        return "keyframes" if offered == 0 else "full" if offered == len(self._history) else "gop"

    def next_key(self) -> float | None:
        """When the next keyframe is expected, or None before the interval is known."""
        if self._last_key is None or self.interval is None:
            return None
        return self._last_key + self.interval

    def keyframe(self, ts: float, *, timed: bool = True) -> None:
        """A keyframe at ``ts`` ends the previous GOP (its evidence is counted) and starts one. ``timed``: its
        timestamp is the stream's (a packet without one is stamped on arrival, which says nothing of the interval)."""
        if self._last_key is not None:
            self._close_gop()
        if self._last_key is not None and timed and self._timed_key and ts > self._last_key:
            gap = ts - self._last_key
            self.interval = gap if self.interval is None else 0.75 * self.interval + 0.25 * gap
        self._last_key, self._timed_key = ts, timed
        self.waiting_at_key = self._key_wanted = self._demand_known and self._due <= ts
        self._decided = self._offered = self._key_spent = self._key_late = False
        self._why = ""
        self._spent = 0

    def offer(self, ts: float) -> bool:
        """A frame after the keyframe: may it (and so its GOP up to it) be decoded? Decided at the GOP's first one;
        afterwards it can only turn False."""
        if not self._decided:
            self._decided = True
            self._why = self._decide(ts)
            self._offered = bool(self._why)
            if self._why == "probe":
                self._since_probe = 0
        elif self._offered and self._demand_known and not self._still_needed(ts):
            self._offered = False
        return self._offered

    def key_serves(self, ts: float) -> bool:
        """May a sample at ``ts`` take the keyframe's picture (the grace)? Once per keyframe."""
        return self._demand_known and not self._key_spent and ts - (self._last_key or ts) <= self.grace

    def want(self, due: float, until: float, held: int, ts: float) -> float:
        """The extractor's demand after the frame at ``ts`` (``FrameSource.want``); returns when a frame can serve the
        sample."""
        self._demand_known = True
        self._due, self._until, self._held = due, until, held
        if due <= ts and self.key_serves(ts):
            self._key_wanted = True
        key = self.next_key()
        if key is None:
            return due
        # Served by a keyframe: the credit is asked for a frame after it, when its picture is decoded (a sample is
        # waiting) and the grace serves it; a credit granted before would be held while the keyframe arrives and
        # decodes, against the watermark.
        after = self.period
        if due < key:  # it falls in this GOP
            if self._offered or not self._decided and self._needs() and (self._decoding or self._spare()):
                return due
            if self.key_serves(max(due, ts)):
                return due  # the keyframe's picture serves it
            return max(due, key + after)  # the next keyframe serves it, or the sample after it
        first = key + math.ceil((due - key) / self.interval) * self.interval  # type: ignore[operator]
        if self._decoding and until <= first + self.period / 2:
            return due  # its GOP will be offered
        return max(due, first + after)

    def retrieved(self, *, key: bool, late: bool = False) -> None:
        """A frame was taken: ``key`` the keyframe's picture, ``late`` within the grace (after the keyframe)."""
        self._spent += 1
        self._key_spent |= key
        self._key_late |= late

    # --- internals ---

    def _needs(self) -> bool:
        """A sample must be served before the next keyframe: it is skipped (the following one is due) before then.
        A credit held without such a sample waits for the next sample whatever is decoded: no reason to decode."""
        key = self.next_key()
        return key is None or self._until <= key + self.period / 2  # (the keyframe may come a little late)

    def _spare(self) -> bool:
        return self._held > 0 and self._key_spent  # beside the one the keyframe took (a late one: the grace's)

    def _decide(self, ts: float) -> str:
        if not self._demand_known:
            return "decoding"
        if self.interval is None:  # until two keyframes are timed: offer, and measure, unless it surely can wait
            guess = (self._last_key or ts) + self.GUESS
            return "learning" if self._until <= guess else ""
        if self._needs():
            if self._spare():
                return "credit"
            if self._decoding:
                return "decoding"
            if self._since_probe >= self._probe_every:
                return "probe"
        return ""

    def _still_needed(self, ts: float) -> bool:
        if self._held > 0 and self._due <= ts:
            return True  # a credit and a waiting sample: serve it now rather than hold the credit for a keyframe
        return self._needs()

    def _close_gop(self) -> None:
        if not self._demand_known:
            return
        offered = self._why != ""
        if self._why != "learning":  # the GOPs before the interval was known say nothing about the mode
            # (a probe that found nothing was a look, not a mode)
            self._history.append(offered and (self._why != "probe" or self._spent >= self.ENTER))
        if not offered and self._key_wanted and self.interval is not None:
            if self._key_late:
                self.grace = max(2 * self.period, 0.9 * self.grace)
            elif not self._key_spent:  # its credit came too late even for the grace: longer next time
                self.grace = min(2 * self.grace, max(2 * self.period, min(self.interval / 2, self.GRACE_MAX)))
        if self._decoding and offered:
            self._credits_avg = 0.5 * self._credits_avg + 0.5 * self._spent
            if self._credits_avg < self.LEAVE:
                self._decoding = False
        elif offered:  # a spare credit, a probe or the first GOP: did decoding bring more than the keyframe alone?
            if self._spent >= self.ENTER:
                self._decoding = True
                self._credits_avg = float(self._spent)
                self._probe_every = self.PROBE_MIN
            elif self._why == "probe":
                self._probe_every = min(2 * self._probe_every, self.PROBE_MAX)
        if not offered and self._spent and not self._decoding:
            self._since_probe += 1  # served by its keyframe alone: maybe it could have more


class LiveClock:
    """Maps a live stream's timestamps to ``time.monotonic()``.

    A packet cannot arrive before its frame was captured, so ``arrival - pts`` is at least the camera-to-us latency
    and its minimum over packets is that latency: ``display + minimum`` is when the picture the decoder can show now
    (``display``: the packet's DTS, else PTS) was captured, on our clock, without trusting the camera's wall clock.
    The minimum is renewed every ``WINDOW_S`` so the two clocks drifting apart does not accumulate (a backlog older
    than the window is then no longer visible in frame ages). A jump of the stream's clock (camera restarted, PTS
    reset) re-anchors at once. Timestamps never pass the arrival time, and go back only at such a jump.
    """

    WINDOW_S = 30.0

    def __init__(self, period: float) -> None:
        self._tolerance = max(1.0, 10 * period)  # a clock step beyond this (and beyond the arrival gap): a jump
        self._period = period
        self._offset: float | None = None
        self._window_min = math.inf
        self._window_end = 0.0
        self._last_display: float | None = None
        self._last_arrival = 0.0
        self._last = 0.0

    def map(self, pts: float | None, display: float | None, now: float) -> float:
        if display is None:  # no timestamp at all: one period after the previous frame, never in the future
            self._last = min(now, self._last + self._period) if self._last else now
            return self._last
        if self._offset is None or self._jumped(display, now):
            self._offset = now - (pts if pts is not None else display)
            self._window_min, self._window_end = self._offset, now + self.WINDOW_S
            self._last = 0.0
        if pts is not None:
            lag = now - pts
            self._offset = min(self._offset, lag)
            self._window_min = min(self._window_min, lag)
        if now >= self._window_end:
            if self._window_min < math.inf:
                self._offset = self._window_min
            self._window_min, self._window_end = math.inf, now + self.WINDOW_S
        self._last_display, self._last_arrival = display, now
        self._last = min(now, max(display + self._offset, self._last))
        return self._last

    def _jumped(self, display: float, now: float) -> bool:
        if self._last_display is None:
            return False
        step = display - self._last_display
        return step < -self._tolerance or step > (now - self._last_arrival) + self._tolerance


class PyavSource:
    """A video file or RTSP stream read through PyAV, decoding only what is retrieved (see the module docstring)."""

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
        self._open_s = open_timeout_ms / 1000
        self._read_s = read_timeout_ms / 1000
        self._read_timeout_ms = read_timeout_ms
        self._loop = loop
        self._realtime = realtime
        self.decoded = 0
        self.retrieved_pts: int | None = None  # the last retrieved picture's PTS (stream time base): diagnostics, tests
        self.frame_time = 0.0
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._packets: Iterator[av.Packet] | None = None
        self._decoder: av.video.codeccontext.VideoCodecContext | None = None  # decodes GOPs in order, never drained
        self._still: av.video.codeccontext.VideoCodecContext | None = None  # lone keyframes, drained after each
        self._reorders = False  # the decoder holds pictures back (B-frames): lone keyframes go to ``_still``
        self._time_base = Fraction(1, 90000)
        self._period = 0.04
        self._clock: LiveClock | None = None
        self._pacer: Pacer | None = None
        self._policy = GopPolicy(self._period)
        self._last_ts = 0.0
        self._begin_gop(None)

    @property
    def decode_mode(self) -> str:
        return self._policy.mode

    # --- FrameSource ---

    def open(self) -> None:
        self.close()  # opened again: the previous container is released first
        if not self.live:
            check_file(self.url)
        try:
            container = av.open(self.url, options=dict(_LIVE_OPTIONS) if self.live else {},
                                timeout=(self._open_s, self._read_s))
        except (av.error.FFmpegError, OSError) as exc:
            log.debug("cannot open %s: %s", self.url, exc)
            raise SourceError(f"cannot open {self.url}") from None
        try:
            if not container.streams.video:
                raise SourceError(f"no video stream in {self.url}")
            stream = container.streams.video[0]
            decoder = stream.codec_context
            decoder.thread_count = 1  # one thread per camera: frame threads add a frame of latency each (FACTS)
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 25.0
            self._period = 1.0 / (fps if 0 < fps <= 240 else 25.0)
            self._time_base = stream.time_base or Fraction(1, 90000)
            self._reorders = bool(decoder.has_b_frames)
            self._packets = container.demux(stream)
        except BaseException:
            container.close()
            raise
        self._container, self._stream, self._decoder = container, stream, decoder
        self._still = None
        self._clock = LiveClock(self._period) if self.live else None
        self._pacer = Pacer(1.0 / self._period) if (self._realtime and not self.live) else None
        self._policy = GopPolicy(self._period)
        self._begin_gop(None)

    def grab(self) -> float:
        packet = self._read()
        ts = self._timestamp(packet)
        self._last_ts = ts
        self._image = None
        self._at_key = packet.is_keyframe
        self._late = False
        if packet.is_keyframe:
            self._policy.keyframe(ts, timed=packet.pts is not None or packet.dts is not None)
            self._begin_gop(packet, ts, continuous=self._gop_fed and self._in_step)
            if self._policy.waiting_at_key:
                # Decoded now, before its credit is granted: taken at once, or later within the grace, without a
                # decode while the credit is held (against the watermark).
                self._prepare_key()
        elif self._key is not None and self._policy.offer(ts):
            if not self._unfed and not self._gop_fed:
                self._queue(self._key)
            self._queue(packet)
            self._here = True
        else:
            self._unfed.clear()  # the rest of this GOP is never decoded: drop what was kept for it
            self._unfed_bytes = 0
            self._in_step = False
            self._late = self._here = self._key is not None and self._key_ok and self._policy.key_serves(ts)
        return ts

    def retrievable(self) -> bool:
        return self._here

    def want(self, due: float, until: float, held: int) -> float:
        if not self.live and not self._realtime:
            # Unpaced: every sample waits for its credit at the frame it is due at, so every frame must be decodable
            # (the policy, told no demand, offers every GOP; frames after the last retrieved one are still not decoded).
            return due
        return self._policy.want(due, until, held, self._last_ts)

    def retrieve(self) -> np.ndarray:
        if self._image is not None:
            return self._image
        if not self._here:
            raise SourceError(f"frame of {self.url} not decodable here (between keyframes, its GOP not decoded)")
        key = self._at_key or self._late
        try:
            picture = self._key_picture() if key else self._gop_picture()
        except (av.error.FFmpegError, SourceError) as exc:  # a damaged packet: nothing more of this GOP is trusted
            self._broken()
            raise SourceError(f"cannot decode frame from {self.url}: {exc}") from None
        self._policy.retrieved(key=key, late=self._late)
        self.retrieved_pts = picture.pts
        self.frame_time = self._key_ts if self._late else self._last_ts
        self._image = picture.to_ndarray(format="bgr24")
        return self._image

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._stream = self._packets = self._decoder = self._still = None
        self._begin_gop(None)

    # --- reading ---

    def _read(self) -> av.Packet:
        if self._packets is None:
            raise SourceError(f"{self.url} is not open")
        while True:
            started = time.monotonic()
            try:
                packet = next(self._packets, None)
            except av.error.ExitError:  # FFmpeg's read was interrupted by the read timeout
                raise SourceStalled(self._stalled()) from None
            except (av.error.FFmpegError, OSError) as exc:
                if self.live:
                    raise SourceError(f"read failed on {self.url}") from None
                raise SourceError(f"cannot read {self.url}: {exc}") from None
            if self.live and time.monotonic() - started >= self._read_s:
                # The read timeout fired, yet FFmpeg's RTSP reader hands out one more packet it held before failing
                # on the next read (measured: detection at twice the timeout otherwise). The time says it: frozen.
                raise SourceStalled(self._stalled())
            if packet is None or packet.size == 0:  # the end (PyAV ends a stream with an empty flush packet)
                end_of_stream(self.url, live=self.live, loop=self._loop)
                self._rewind()
                continue
            return packet

    def _stalled(self) -> str:
        return f"no new frame from {self.url} within {self._read_timeout_ms} ms (stream frozen)"

    def _rewind(self) -> None:
        assert self._container is not None and self._stream is not None and self._decoder is not None
        try:
            self._container.seek(0, stream=self._stream)
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot rewind {self.url}: {exc}") from None
        self._packets = self._container.demux(self._stream)
        self._decoder.flush_buffers()
        self._begin_gop(None)  # the pacer re-anchors on the stream time going back: the loop is seamless

    def _timestamp(self, packet: av.Packet) -> float:
        """The stream's time of the picture the decoder can show after this packet, on the monotonic clock."""
        tb = self._time_base
        pts = float(packet.pts * tb) if packet.pts is not None else None
        # DTS grows in packet order even with B-frames, and a reordering decoder shows, after packet n, about the
        # picture presented at packet n's DTS.
        display = float(packet.dts * tb) if packet.dts is not None else pts
        if self._clock is not None:
            return self._clock.map(pts, display, time.monotonic())
        if self._pacer is not None:
            return self._pacer.wait(display)
        return time.monotonic()

    # --- decoding ---

    def _begin_gop(self, key: av.Packet | None, ts: float = 0.0, *, continuous: bool = False) -> None:
        """A new GOP starts at ``key``, at ``ts`` (None: no keyframe since open or rewind, nothing decodable yet).

        ``continuous``: the GOP decoder was given every packet of the previous GOP, so it goes on without a flush
        and the pictures it still holds back (B-frames) come out in order instead of being dropped."""
        self._key = key
        self._key_ts = ts
        self._key_ok = True  # its keyframe decodes (False after a decoding error: nothing of this GOP is retrievable)
        self._late = False  # the frame just grabbed is served by the keyframe's picture (the grace)
        self._here = key is not None  # a keyframe is always retrievable: it decodes alone
        self._at_key = key is not None
        self._image: np.ndarray | None = None
        self._unfed: list[av.Packet] = []  # packets of the offered GOP not yet given to the GOP decoder
        self._unfed_bytes = 0
        self._gop_fed = False  # the GOP decoder has been given this GOP's keyframe
        self._in_step = False  # ... and every packet since, up to the one grabbed last
        self._flush_needed = not continuous  # it holds an older GOP's state, which must not come out now
        if not continuous:
            self._picture: av.VideoFrame | None = None  # the newest picture the GOP decoder made
        self._key_pic: av.VideoFrame | None = None  # the keyframe's picture, once decoded

    def _broken(self) -> None:
        """A decoding error: the rest of this GOP is not retrievable, the GOP decoder starts afresh."""
        self._unfed.clear()
        self._unfed_bytes = 0
        self._here = self._late = self._key_ok = self._gop_fed = self._in_step = False
        self._flush_needed = True
        self._picture = None

    def _prepare_key(self) -> None:
        try:
            self._key_picture()
        except (av.error.FFmpegError, SourceError) as exc:
            log.debug("cannot decode a keyframe of %s: %s", self.url, exc)
            self._broken()

    def _queue(self, packet: av.Packet) -> None:
        self._unfed.append(packet)
        self._unfed_bytes += packet.size
        self._in_step = False
        if self._unfed_bytes > _MAX_UNFED_BYTES:
            self._catch_up()

    def _catch_up(self) -> None:
        """Give the GOP decoder every kept packet up to the current one."""
        if not self._unfed:
            return
        decoder = self._decoder
        assert decoder is not None
        if self._flush_needed:
            decoder.flush_buffers()
            self._flush_needed = False
        for packet in self._unfed:  # the first one is the keyframe unless it was given before
            frames = decoder.decode(packet)
            self.decoded += 1
            if frames:
                self._picture = frames[-1]
        self._unfed.clear()
        self._unfed_bytes = 0
        self._gop_fed = self._in_step = True

    def _key_picture(self) -> av.VideoFrame:
        """The keyframe's picture, decoded once per GOP."""
        if not self._key_ok:
            raise SourceError("its keyframe did not decode")
        if self._key_pic is None and not self._gop_fed and not (self._reorders and self._flush_needed):
            # The GOP decoder can show a picture now: it does not reorder (the keyframe comes out at once), or it goes
            # on from the previous GOP (its newest picture). Either way it keeps the keyframe as the GOP's reference.
            self._queue(self._key)  # type: ignore[arg-type]
            self._catch_up()
            if self._picture is not None:
                self._key_pic = self._picture
            else:
                self._reorders = True
        if self._key_pic is None:
            self._key_pic = self._still_key()
        return self._key_pic

    def _gop_picture(self) -> av.VideoFrame:
        self._catch_up()
        if self._picture is not None:
            return self._picture
        self._reorders = True  # fed from the keyframe and nothing out yet: it holds pictures back
        return self._key_picture()

    def _still_key(self) -> av.VideoFrame:
        """The GOP's keyframe decoded alone, by the second context, drained and flushed (so it forgets it)."""
        if self._still is None:
            assert self._decoder is not None
            still = av.CodecContext.create(self._decoder.codec.name, "r")
            if self._decoder.extradata:
                still.extradata = self._decoder.extradata
            still.thread_count = 1
            self._still = still  # type: ignore[assignment]
        assert self._still is not None and self._key is not None
        frames = self._still.decode(self._key) + self._still.decode(None)
        self._still.flush_buffers()
        self.decoded += 1
        if not frames:
            raise SourceError(f"cannot decode keyframe from {self.url}")
        return frames[-1]
