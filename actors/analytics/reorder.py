"""Putting one camera's inferred frames back in capture order before tracking.

Inference slots finish out of order (two slots, different latencies; a frame retried on another service), and a
tracker fed a frame older than the last one would see time go backwards. Frames carry their camera's ``seq``
(consecutive over the frames sent to inference), so the next frame expected is known; but a sent frame may never come
back (it failed, its slot crashed), so waiting for a gap is bounded twice: by how long the later frames have waited
(``max_wait_sec``, capture time) and by how many are held (``max_held``). A frame arriving after a later one was
released is too late for tracking and is returned as ``late`` (the caller counts it; its detections are not tracked).

At the start nothing is known about what is still in flight: a camera's first frame is ``seq`` 1 and goes at once;
any other first frame (the analytics restarted mid-stream) is held like one behind a gap, so frames finishing out
of order just after a restart are still put in order.

Pure: no clock (times are passed in, monotonic seconds), no I/O.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

T = TypeVar("T")


class Reorder(Generic[T]):
    """Releases items in ``seq`` order, skipping a gap once it has been waited for long enough."""

    def __init__(self, *, max_wait_sec: float = 1.0, max_held: int = 8) -> None:
        if max_wait_sec < 0 or max_held < 1:
            raise ValueError("max_wait_sec must be >= 0 and max_held >= 1")
        self._max_wait = max_wait_sec
        self._max_held = max_held
        self._held: list[tuple[int, float, T]] = []  # (seq, arrived, item), a heap on seq
        self._next: int | None = None  # the seq expected next; None before the first release
        self.skipped = 0  # seqs given up on (never arrived in time)

    @property
    def held(self) -> int:
        return len(self._held)

    def push(self, seq: int, item: T, now: float) -> tuple[list[T], bool]:
        """Add ``item`` (arrived at ``now``); returns the items now releasable, in order, and whether ``item`` came
        too late (its seq was already passed: it is not held and not returned)."""
        if self._next is not None and seq < self._next:
            return self.release(now), True
        heapq.heappush(self._held, (seq, now, item))
        return self.release(now), False

    def release(self, now: float) -> list[T]:
        """What can go now: the expected seq and those following it without a gap; past a gap, everything held
        once the oldest held item has waited ``max_wait_sec`` or more than ``max_held`` are held."""
        out: list[T] = []
        held = self._held
        while held:
            seq, arrived, item = held[0]
            expected = 1 if self._next is None and seq == 1 else self._next
            if expected is None or seq > expected:
                if now - arrived < self._max_wait and len(held) <= self._max_held:
                    break  # a gap worth waiting for
                self.skipped += seq - expected if expected is not None else 0
            heapq.heappop(held)
            out.append(item)
            self._next = seq + 1
        return out

    def flush(self) -> list[T]:
        """Everything held, in order (the camera stops)."""
        return self.release(float("inf"))
