"""One timer thread for the whole system: ``send_after`` and ``send_every`` deliver messages to actors.

pykka has no timers and an actor's inbox ``get()`` has no timeout, so periodic work (supervisor ticks, alert flushes,
retention sweeps, source reopen after a backoff) is a message that this thread ``tell``s on time. An actor never
sleeps to wait for something, so its mailbox stays responsive.

The supervision tree owns the ``Timers`` (a child of stage ``timers``: started first, stopped last); it is its only
owner. A target is anything with ``tell`` (an actor ref or a ``Link``); one that has stopped for good raises
``ActorDeadError`` and its periodic timer is dropped; nothing here raises into the caller.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Any

import pykka

from .supervision import Ready

log = logging.getLogger(__name__)


class TimerHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    def __init__(self, name: str = "timers") -> None:
        self._heap: list[tuple[float, int, float | None, Any, Any, TimerHandle]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=False)
        self.ready = Ready()

    def start(self) -> Timers:
        self._thread.start()
        self.ready.set()
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop delivering; returns False if the thread did not end within ``timeout``."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def send_after(self, delay_sec: float, ref: Any, message: Any) -> TimerHandle:
        return self._schedule(delay_sec, None, ref, message)

    def send_every(self, period_sec: float, ref: Any, message: Any) -> TimerHandle:
        return self._schedule(period_sec, period_sec, ref, message)

    def _schedule(self, delay: float, period: float | None, ref: Any, message: Any) -> TimerHandle:
        handle = TimerHandle()
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), period, ref, message, handle))
            self._cond.notify()
        return handle

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._stopping:
                    return
                due, _, period, ref, message, handle = heapq.heappop(self._heap)
                if period is not None and not handle.cancelled:
                    # Next deadline from the schedule, not from now, so periods do not drift; skip missed ones.
                    nxt = due + period
                    now = time.monotonic()
                    if nxt < now:
                        nxt = now + period
                    heapq.heappush(self._heap, (nxt, next(self._seq), period, ref, message, handle))
            if handle.cancelled:
                continue
            try:
                ref.tell(message)
            except pykka.ActorDeadError:
                handle.cancel()
            except Exception:  # a target's bug must not stop every other timer
                log.exception("timers: delivering %s failed", type(message).__name__)
