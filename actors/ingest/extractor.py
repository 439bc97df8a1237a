"""Extractor actor: one per task (camera). Owns the task's frame source.

Messages: ``Pump`` (from itself: grab the next frame), ``Reopen`` (from the timer: backoff over). Emits ``Frame`` to
the inference pool, only for samples its valve grants; skipped samples cost a grab and a counter, nothing more
(no colour conversion, no encode, no store, no send). A sample that finds no credit stays pending: the next frames
grabbed may still take it (the freshest frame wins) until the following sample is due; only then is it skipped.

An unpaced file (``realtime = false``, ``Valve.waits``) keeps no clock: a sample that finds no credit waits for one
(no Pump until the grant calls ``_wake``), so its whole file is analysed at inference's pace and nothing is read or
decoded only to be skipped; the wait is not a stall.

A source may decode only some frames (PyAV at keyframes only): a credit is taken only for a frame it can retrieve
(``retrievable``), and the valve is told when the source can serve the next sample (``want``), not just when it is
due, so no credit is granted to wait for a keyframe. A frame's capture time is the source's ``frame_time`` (PyAV may
serve a sample with its last keyframe's picture, taken a little earlier). The counting is unchanged: each sample is
counted once, sent or skipped.

Thread: every hook runs on the actor's own thread, named ``extractor:<task id>``. The source is opened in
``on_start``/``Reopen`` and released in ``on_stop``/``on_failure``.

Failures: a source that cannot be opened, fails to read or stalls is closed and reopened after an exponential backoff
(a timer message, never a sleep), so the mailbox keeps answering and ``stop`` is handled within one read timeout.
Anything else raised is a crash: the actor stops and the supervisor restarts it within its restart budget.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pykka

from ..core.logstate import StateLog
from ..core.messages import Frame, Pump, Reopen
from ..core.metrics import Metrics
from ..core.supervision import Backoff, ChildActor
from ..core.timers import Timers
from ..inference.pool import InferencePool
from ..ingest.backpressure import Valve
from ..ingest.preview import Preview
from ..ingest.sources import FrameSource, SourceEnded, SourceError, SourceStalled

log = logging.getLogger(__name__)


class ExtractorActor(ChildActor):
    def __init__(
        self,
        *,
        task_id: str,
        task_type: str,
        interval_sec: float,
        source_factory: Callable[[], FrameSource],
        valve: Valve,
        pool: InferencePool,
        metrics: Metrics,
        timers: Timers,
        backoff: Backoff,
        stall_timeout_sec: float,
        seqs: Iterator[int] | None = None,
        preview: Preview | None = None,
        **child: Any,
    ) -> None:
        """``seqs``: the camera's frame numbers, shared across restarts of this actor, so a frame's ``seq`` stays
        unique and increasing per camera (analytics puts frames back in that order). ``preview``: where each frame
        handed to inference is also left for the console (a reference, no copy)."""
        super().__init__(**child)
        self.thread_name = f"extractor:{task_id}"
        self.task_id = task_id
        self.task_type = task_type
        self.interval = interval_sec
        self._source_factory = source_factory
        self._valve = valve
        self._pool = pool
        self._metrics = metrics
        self._timers = timers
        self._backoff = backoff
        self._stall_timeout = stall_timeout_sec
        self._preview = preview
        self._source: FrameSource | None = None
        self._next_due = 0.0
        self._pending = False  # a sample is due and waits for a credit (until the next one is due)
        self._waiting_since: float | None = None  # an unpaced source's pending sample waits for a credit (no Pump)
        self._grabbed_at = 0.0  # the last grab's timestamp
        self._last_frame = 0.0
        self._seqs = seqs if seqs is not None else itertools.count(1)
        self._decoded_seen = 0  # the source's ``decoded`` already counted in the metrics
        self._mode_seen = ""
        # A dead camera is retried for months: log its failures as states (once, reminders, back up), not per retry.
        self._state = StateLog(log, f"extractor {task_id}", level=logging.WARNING)
        self._decoding = StateLog(log, f"extractor {task_id}: decoding", level=logging.WARNING)

    # --- lifecycle ---

    def setup(self) -> None:
        self._open(attempt=0)

    def on_stop(self) -> None:
        self._close()
        self._metrics.source_state(self.task_id, "stopped")

    def on_crash(self, exc: BaseException) -> None:
        self._close()
        self._metrics.source_state(self.task_id, "crashed", f"{type(exc).__name__}: {exc}")

    def on_receive(self, message: Any) -> None:
        match message:
            case Pump():
                self._pump()
            case Reopen(attempt=attempt):
                self._open(attempt)
            case _:
                log.warning("extractor %s: unexpected message %r", self.task_id, type(message).__name__)

    # --- work ---

    def _open(self, attempt: int) -> None:
        self._close()
        source: FrameSource | None = None
        try:
            source = self._source_factory()
            source.open()
        except SourceError as exc:
            if source is not None:
                source.close()
            self._metrics.source_state(self.task_id, "backoff", str(exc), open_failed=True)
            self._retry_later(str(exc), attempt)
            return
        self._source = source
        self._decoded_seen, self._mode_seen = 0, ""
        self._last_frame = time.monotonic()
        self._next_due = 0.0
        self._pending = False
        self._valve.due(time.monotonic())
        self._metrics.source_state(self.task_id, "running", opened=True)
        if not self._state.up(f"opened {source.url}"):
            log.info("extractor %s: opened %s", self.task_id, source.url)
        self.actor_ref.tell(Pump())

    def _retry_later(self, reason: str, attempt: int) -> None:
        self._valve.idle()
        delay = self._backoff.next_delay()
        self._state.down(f"{reason}; retrying in {delay:.1f} s")
        self._timers.send_after(delay, self.actor_ref, Reopen(attempt=attempt + 1))

    def _close(self) -> None:
        self._waiting_since = None
        if self._pending:  # a sample was due and never got a frame: skipped (a file that ended, a failed stream)
            self._pending = False
            self._metrics.sampled(self.task_id, sent=False)
        if self._source is not None:
            self._source.close()
            self._source = None

    def _wake(self) -> None:
        """The valve's waiter (on the granting thread): the credit an unpaced sample waited for is there."""
        try:
            self.actor_ref.tell(Pump())
        except pykka.ActorDeadError:
            pass  # stopped meanwhile: the credit is withdrawn with the valve

    def _pump(self) -> None:
        source = self._source
        if source is None:
            return  # a stale Pump from before a reopen
        if self._waiting_since is not None:
            self._resume(source)
            return
        try:
            ts = source.grab()
        except SourceEnded:
            self._close()
            self._valve.idle()
            self._metrics.source_state(self.task_id, "ended")
            log.info("extractor %s: end of %s", self.task_id, source.url)
            return
        except SourceStalled as exc:
            self._fail_source(str(exc), stalled=True)
            return
        except SourceError as exc:
            self._fail_source(str(exc), stalled=False)
            return
        now = time.monotonic()
        if now - self._last_frame > self._stall_timeout:
            self._fail_source(f"stalled: no frame for {now - self._last_frame:.1f} s", stalled=True)
            return
        self._last_frame, self._grabbed_at = now, ts
        self._metrics.frame_progress(self.task_id)
        if ts >= self._next_due:
            if self._pending:  # the previous sample got no credit for a whole interval: it is skipped
                self._metrics.sampled(self.task_id, sent=False)
            self._pending = True
            # Next sample one interval later; after a gap, start again from now rather than catching up.
            self._next_due = self._next_due + self.interval if ts - self._next_due < self.interval else ts + self.interval
        if self._pending and source.retrievable():
            if self._valve.take(self._wake if self._valve.waits else None):
                self._pending = False
                self._send(source)
            elif self._valve.waits:
                # Unpaced: nothing more is read until a credit comes for this sample (the grant sends a Pump).
                self._waiting_since = now
                self._valve.due(ts)
                return
        self._after_grab(source, ts)

    def _resume(self, source: FrameSource) -> None:
        """A credit came for the sample an unpaced source waited with: send the frame grabbed before the wait."""
        self._waiting_since = None
        self._last_frame = time.monotonic()  # waiting for inference is not a stalled source
        if self._pending and self._valve.take(self._wake):
            self._pending = False
            self._send(source)
        elif self._pending:
            self._waiting_since = time.monotonic()  # the credit was withdrawn meanwhile (a closing valve): wait on
            return
        self._after_grab(source, self._grabbed_at)

    def _after_grab(self, source: FrameSource, ts: float) -> None:
        # A pending sample wants a credit now (and is skipped at _next_due), otherwise the next one is due at
        # _next_due; the source says when it can serve it (at the next keyframe, if it decodes keyframes only).
        due, until = (ts, self._next_due) if self._pending else (self._next_due, self._next_due + self.interval)
        self._valve.due(source.want(due, until, self._valve.credits))
        self._report_decoding(source)
        self.actor_ref.tell(Pump())

    def _report_decoding(self, source: FrameSource) -> None:
        decoded, mode = source.decoded, source.decode_mode
        if decoded != self._decoded_seen or mode != self._mode_seen:
            self._metrics.decoding(self.task_id, mode, decoded - self._decoded_seen)
            self._decoded_seen, self._mode_seen = decoded, mode

    def _send(self, source: FrameSource) -> None:
        """Convert the frame just grabbed (the freshest) and hand it to the pool; a credit paid for it."""
        self._metrics.sampled(self.task_id, sent=True)
        try:
            image = source.retrieve()
        except SourceError as exc:
            self._valve.handed_over()
            self._metrics.failed(self.task_id, "decode error")
            self._decoding.down(str(exc))
            return
        self._decoding.up()
        captured = source.frame_time  # the grab's time, or a little earlier (a keyframe's picture, just after it)
        wall = time.time() - (time.monotonic() - captured)
        frame = Frame(
            task_id=self.task_id, task_type=self.task_type, seq=next(self._seqs),
            captured_at=wall, captured_mono=captured, image=image,
        )
        if self._preview is not None:
            self._preview.offer(image, wall)
        self._pool.submit(frame)
        self._valve.handed_over()

    def _fail_source(self, reason: str, *, stalled: bool) -> None:
        self._close()
        self._metrics.source_state(self.task_id, "stalled" if stalled else "backoff", reason, stalled=stalled)
        self._retry_later(reason, 0)
