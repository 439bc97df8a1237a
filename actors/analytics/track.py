"""A tracked object as the tracker hands it to the task-type rules: a frozen snapshot taken after one update.

The tracker (``actors.analytics.tracker``) owns the mutable state (motion model, association); rules see only these
snapshots, so a rule stays a pure function of (tracks, regions, time) plus the state it returns itself.

Times are the monotonic capture times of the samples (``Frame.captured_mono``, seconds), never frame counts: samples
arrive at the rate backpressure grants, which varies.
"""

from __future__ import annotations

import msgspec

Box = tuple[float, float, float, float]
"""``(x1, y1, x2, y2)`` in pixels of the inferred frame."""


class Track(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    """Unique within one camera's tracker for its lifetime, increasing from 1; never reused."""
    label: str
    """The detection label it was created from; a track never changes label."""
    box: Box
    """The last matched detection's box while ``matched``; the motion model's prediction while coasting."""
    score: float
    """The last matched detection's score."""
    first_seen: float
    """Capture time of its first matched sample."""
    last_seen: float
    """Capture time of its last matched sample."""
    hits: int
    """Samples it was matched in."""
    matched: bool
    """Matched in the update that produced this snapshot (False: not seen in this sample, predicted)."""
    velocity: tuple[float, float] = (0.0, 0.0)
    """Estimated motion of the box centre, pixels per second."""

    @property
    def foot(self) -> tuple[float, float]:
        """Where it stands: the bottom centre of the box."""
        x1, _, x2, y2 = self.box
        return (x1 + x2) / 2, y2
