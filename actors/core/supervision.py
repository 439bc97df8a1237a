"""Supervision as data: child specs, restart budgets, reconnect backoff.

Erlang/OTP's idea: a child is a spec (id, how to start it, restart type, shutdown timeout), and a supervisor restarts
a crashed child at most ``intensity`` times within ``period`` seconds. One restart more and the child is given up:
the supervisor stops restarting it, reports it, and escalates when the system can no longer work (no inference slot
left). A source that cannot be opened is not a crash: it is retried with ``Backoff``, forever, never spinning.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import pykka


class ChildSpec(msgspec.Struct, frozen=True):
    id: str  # also the thread name, e.g. "extractor:cam-01"
    start: Callable[[], pykka.ActorRef[Any]]
    kind: Literal["extractor", "inference", "service"]
    restart: Literal["permanent", "temporary"] = "permanent"
    shutdown_timeout_sec: float = 5.0
    on_started: Callable[[pykka.ActorRef[Any]], None] | None = None  # e.g. install the new ref in the pool


class RestartBudget:
    """At most ``intensity`` restarts within any ``period_sec`` window."""

    def __init__(self, intensity: int, period_sec: float) -> None:
        self.intensity = intensity
        self.period = period_sec
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Record a restart if the budget allows one now."""
        while self._times and now - self._times[0] > self.period:
            self._times.popleft()
        if len(self._times) >= self.intensity:
            return False
        self._times.append(now)
        return True


class Backoff:
    """Exponential delays: initial, doubling to ``maximum``; reset after ``reset_after_sec`` without a failure."""

    def __init__(self, initial_sec: float, maximum_sec: float, reset_after_sec: float) -> None:
        self.initial = initial_sec
        self.maximum = maximum_sec
        self.reset_after = reset_after_sec
        self.attempt = 0
        self._last_failure: float | None = None

    def next_delay(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        if self._last_failure is not None and now - self._last_failure > self.reset_after:
            self.attempt = 0
        self._last_failure = now
        delay = min(self.initial * (2 ** self.attempt), self.maximum)
        self.attempt += 1
        return delay
