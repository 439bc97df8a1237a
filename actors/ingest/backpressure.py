"""Backpressure: the supervisor grants frames, extractors spend them.

Each camera has a ``Valve`` holding at most ``ahead`` credits (``[backpressure] credits_ahead``, default 1). At every
sample due, the extractor calls ``Valve.take()``: with a credit it converts the freshest frame and sends it to
inference; without one it skips that sample (counted), having paid only for the grab. A file read as fast as it
decodes (``realtime = false``) has no clock of its own to keep: its valve ``waits`` instead, its extractor stops
reading until a credit comes (``take(waiter=...)``: the grant calls it back), so every sample is inferred and no
frame is read or decoded only to be skipped. The supervisor runs ``Controller.tick`` on its timer tick and whenever an inference
slot finishes a frame: it reads the inference load (frames queued in mailboxes plus frames being inferred), compares
it with the watermarks, and grants the free slots as credits to cameras whose next sample is due within the horizon
(about one tick), so a credit is spent almost at once.

- Extraction never outpaces inference: ``load + outstanding credits <= high watermark``, so mailboxes are bounded by
  configuration. Above the high watermark no credit is granted until the level falls to the low one (hysteresis).
- Fresh frames: a credit is spent on the sample due next, so the frame inferred is the newest one, not an old queued one.
- Credits ahead: with ``ahead`` > 1 a camera sampling within the horizon may hold several, granted in rounds (every
  wanting camera one, then a second each...) while there is room, so a fast backend is not held to one credit round
  trip per frame per camera; the watermark still bounds the sum.
- Fair shares: free slots go to the wanting camera with the lowest virtual time (start-time fair queuing: each grant
  advances a camera's virtual time by ``1 / weight``). A camera that comes back after idling starts at the current
  minimum, so it cannot claim a burst for the time it was away.
- No idling: the low watermark keeps frames queued behind the one being inferred, so a slot never waits for a tick.
- Floors first: a tracking task type needs a minimum sampling rate (``Valve.min_fps``: tripwire 3/s, intrusion 2/s,
  off-post 0.5/s...). A wanting camera whose floor grant is owed (no grant for ``1 / min_fps`` seconds) goes before
  every camera that is not owed one, whatever their virtual times; the rest of the room is shared fairly. A camera
  above its floor competes on virtual time like any other, so a slow type asks for little and a camera without a
  floor is not starved by floors it does not have. When the box cannot meet the floors, the camera's stats say
  ``degraded`` (``core.metrics``).

The ``unbounded`` policy (benchmark baseline: the old system) makes every ``take()`` succeed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import msgspec


class Valve:
    """Credits for one camera; ``take`` is called by its extractor, ``grant``/``close`` by the supervisor."""

    __slots__ = ("task_id", "weight", "interval_sec", "min_fps", "_lock", "_credits", "_in_hand", "_next_due",
                 "_open", "unbounded", "vtime", "granted", "floor_due", "ahead", "waits", "_waiter")

    def __init__(self, task_id: str, *, weight: float = 1.0, interval_sec: float = 1.0, min_fps: float = 0.0,
                 unbounded: bool = False, ahead: int = 1, waits: bool = False):
        """``ahead``: credits it may hold at once; ``waits``: its samples wait for a credit instead of being skipped
        (an unpaced file), so it wants one for as long as a sample is pending, however long that is."""
        self.task_id = task_id
        self.ahead = max(1, ahead)
        self.waits = waits
        self._waiter: Callable[[], None] | None = None
        self.weight = weight
        self.interval_sec = interval_sec
        # The sampling floor its tracking needs (frames/s), at most what its interval asks for; 0: none.
        self.min_fps = min(min_fps, 1 / interval_sec) if interval_sec > 0 else min_fps
        self.floor_due = 0.0  # supervisor thread only: when its next floor grant is owed (monotonic seconds)
        self.unbounded = unbounded
        self._lock = threading.Lock()
        self._credits = 0
        self._in_hand = 0  # credits taken whose frame is being converted, not yet in the pool's load
        self._next_due = float("inf")  # when the extractor will next sample; inf while its source is down
        self._open = True
        self.vtime = 0.0  # supervisor thread only
        self.granted = 0  # supervisor thread only

    def take(self, waiter: Callable[[], None] | None = None) -> bool:
        """A sample is due: True if it may be sent to inference (a credit is spent), False to skip it (or, with
        ``waiter``, to wait: the next grant calls ``waiter`` once, from the granting thread)."""
        with self._lock:
            if not self._open:
                return False
            if self.unbounded:
                return True
            if self._credits > 0:
                self._credits -= 1
                self._in_hand += 1
                return True
            # Set under the lock that grant() takes: a grant between this failed take and the wait cannot be missed.
            self._waiter = waiter
            return False

    def handed_over(self) -> None:
        """The frame a taken credit paid for is now in the pool's load (or was counted failed)."""
        with self._lock:
            self._in_hand = max(0, self._in_hand - 1)

    def due(self, when: float) -> None:
        """The extractor's next sample is due at ``when`` (monotonic seconds)."""
        with self._lock:
            self._next_due = when

    def idle(self) -> None:
        """The source is down: no sample is coming, so no credit should wait here."""
        with self._lock:
            self._next_due = float("inf")

    def grant(self, n: int = 1) -> None:
        with self._lock:
            if not self._open:
                return
            self._credits += n
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter()

    @property
    def credits(self) -> int:
        """Frames this camera may still add to the load: unspent credits plus those being converted right now."""
        with self._lock:
            return self._credits + self._in_hand

    def wanting(self, now: float, horizon: float) -> bool:
        """Holds fewer than ``ahead`` credits and samples within ``horizon`` seconds: a credit granted now is spent
        on a fresh frame almost at once, instead of being held (and counted against the watermark) for a whole
        interval. A valve that ``waits`` wants one while a sample is pending, however long it has been."""
        with self._lock:
            return (
                self._open
                and self._credits + self._in_hand < self.ahead
                and (self.waits or now - self.interval_sec - 1.0 < self._next_due)
                and self._next_due <= now + horizon
            )

    def close(self) -> int:
        """No more frames (shutdown, task given up); returns the credits withdrawn."""
        with self._lock:
            self._open = False
            self._waiter = None
            withdrawn, self._credits = self._credits, 0
            return withdrawn


class ControllerState(msgspec.Struct, frozen=True):
    paused: bool
    level: int  # load + outstanding credits
    high: int
    low: int
    granted: int  # credits granted by this tick


class Controller:
    """Watermark hysteresis plus fair granting. Runs on the supervisor's thread only."""

    def __init__(
        self, *, high_per_slot: int, low_per_slot: int, max_queue: int, weighted: bool, horizon_sec: float
    ) -> None:
        self._horizon = horizon_sec
        self._high_per_slot = high_per_slot
        self._low_per_slot = low_per_slot
        self._max_queue = max_queue
        self._weighted = weighted
        self.paused = False

    def watermarks(self, slots: int) -> tuple[int, int]:
        high = min(self._high_per_slot * slots, self._max_queue)
        low = min(self._low_per_slot * slots, high - 1)
        return high, max(low, 0)

    def tick(self, valves: Sequence[Valve], *, load: int, slots: int, now: float) -> ControllerState:
        """Grant credits for the free capacity; ``valves`` are the cameras some backend can serve."""
        high, low = self.watermarks(slots)
        outstanding = sum(v.credits for v in valves)
        level = load + outstanding
        if self.paused and level <= low:
            self.paused = False
        elif not self.paused and level >= high:
            self.paused = True
        granted = 0
        if not self.paused and slots > 0:
            wanting = [v for v in valves if v.wanting(now, self._horizon)]
            if wanting:
                floor = min(v.vtime for v in valves)
                for v in wanting:  # a camera back from idling starts at the current minimum
                    v.vtime = max(v.vtime, floor)
                room = high - level
                while room > 0 and wanting:  # rounds: one credit to each wanting camera, then another while room
                    wanting.sort(key=lambda c: (not _floor_owed(c, now), c.vtime))
                    for v in wanting[:room]:
                        self._grant_one(v, now)
                    granted += min(room, len(wanting))
                    room = high - level - granted
                    wanting = [v for v in wanting if v.wanting(now, self._horizon)]
        return ControllerState(paused=self.paused, level=level + granted, high=high, low=low, granted=granted)

    def _grant_one(self, v: Valve, now: float) -> None:
        v.grant(1)
        v.vtime += 1.0 / (v.weight if self._weighted else 1.0)
        v.granted += 1
        if v.min_fps > 0:
            # The floor's schedule: one grant per period, a debt of at most one period caught up, and grants above
            # the floor bank at most one period ahead.
            period = 1.0 / v.min_fps
            v.floor_due = min(max(v.floor_due, now - period) + period, now + period)


def _floor_owed(valve: Valve, now: float) -> bool:
    return valve.min_fps > 0 and now >= valve.floor_due
