"""Waiting on conditions, never on sleeps: poll a predicate until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Return the predicate's first truthy value; fail with ``what`` if none comes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


def assert_conserved(snap) -> None:  # type: ignore[no-untyped-def]
    """The conservation equations, for every camera and the totals of a stats snapshot:
    sampled = skipped + inferred + failed + in_flight, and inferred = with_detections + without_detections."""
    for name, c in [*snap.cameras.items(), ("totals", snap.totals)]:
        assert c.sampled == c.skipped + c.inferred + c.failed + c.in_flight, (name, c)
        assert c.inferred == c.with_detections + c.without_detections, (name, c)
