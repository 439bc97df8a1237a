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


def assert_conserved(snap, *, at_rest: bool = False) -> None:  # type: ignore[no-untyped-def]
    """The conservation equations, for every camera and the totals of a stats snapshot (``conservation_errors``):
    sampled = skipped + inferred + failed + in_flight, inferred = with_detections + without_detections, no counter
    negative, totals = the cameras' sums; ``at_rest`` (after a stop): nothing in flight."""
    from framewatch.actors.core.metrics import conservation_errors

    errors = conservation_errors(snap, at_rest=at_rest)
    assert not errors, errors
