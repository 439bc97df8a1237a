"""Numeric alert ids: ``Alert.id``, the old system's unsigned row id.

An id is ``milliseconds since the epoch x 1000 + a sequence number within that millisecond``, taken when the alert is
made (``inference.slot.make_alert``, on any inference thread). It is an ``int`` that Go decodes into ``uint`` and
JavaScript holds exactly: below ``2**53`` until the year 2255 (``2**53 / 1000`` ms after 1970).

Why it is unique:

- within a process: ids are strictly increasing. Each id is the larger of "now" and "the last id + 1", under a lock,
  so a burst of more than 1000 alerts in one millisecond, or a clock stepped back (an NTP correction), only makes the
  ids run ahead of the clock for a while; they never repeat.
- across restarts, with no state on disk: a restarted framewatch starts from its clock, which is past every id of
  the previous run as long as the previous run was not ahead of the clock by more than the time framewatch was down.
  What breaks that: **the clock set back by more than the restart gap** (e.g. a box that boots with a wrong RTC and
  an NTP sync that later corrects it forwards), or an absurd sustained rate (> 1000 alerts per ms).
- not across instances: two framewatch instances (two edge boxes) writing to one topic draw from their own clocks
  and collide when both make an alert in the same millisecond. The old system's row ids were per server too; a
  consumer merging several boxes keys on ``(task_id, id)`` (task ids are per camera) or on ``Alert.uid``.

A redelivered alert is the same ``Alert`` (the spool stores and replays it whole), so it keeps its id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

PER_MS = 1000
"""Ids per millisecond before the sequence borrows from the next millisecond."""

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer a JavaScript (IEEE double) consumer holds exactly."""


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class AlertIds:
    """A thread-safe source of strictly increasing ids (see the module docstring). ``clock_ms`` is injectable for
    tests."""

    def __init__(self, clock_ms: Callable[[], int] = _wall_ms) -> None:
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> int:
        with self._lock:
            self._last = max(self._clock_ms() * PER_MS, self._last + 1)
            return self._last


def issued_ms(alert_id: int) -> int:
    """The wall clock (ms since the epoch) when ``alert_id`` was issued, give or take the ids that ran ahead."""
    return alert_id // PER_MS


next_alert_id: Callable[[], int] = AlertIds().next
"""The process's one source of alert ids: every inference slot draws from it."""
