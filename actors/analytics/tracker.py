"""Multi-object tracking for samples that arrive at irregular rates: ids that survive gaps, motion measured in seconds.

Backpressure grants each camera what inference can take, anywhere from 0.5 to 10 samples/s and with gaps, so nothing
here counts frames: every quantity is per second of capture time (``Frame.captured_mono``). One ``Tracker`` serves one
camera; it is plain state, not an actor, owned and called by that camera's analytics actor on the actor's thread (it
is not thread-safe and does no I/O).

One ``update`` does, in order:

1. drop the tracks not matched for longer than ``max_age_sec`` (their label's ``label_max_age_sec``, if it has one);
   the ids of those ever reported are returned as
   ``lost``, so a rule can end the events it holds for them;
2. predict every live track to the sample's time: the box centre moves at the track's velocity, the size stays;
3. associate detections to tracks, one label at a time (a person never becomes a bag), by the Hungarian algorithm
   (``scipy.optimize.linear_sum_assignment``) on a cost that mixes ``1 - IoU`` with the centre distance in box sizes.
   IoU alone fails at low rates: a person walking 1.5 m/s sampled every 2 s moves several times its width, and boxes
   of successive samples do not overlap. A pair farther apart than the motion gate is never matched. The gate widens
   while a track is unseen, up to ``max_gate_sizes``. The solver minimises the total cost, where leaving a track
   unmatched costs as much as the worst admissible pair of any track (one at the widest gate, without overlap): it
   takes every pair that is worth it on its own, but never pairs more at the price of much worse pairs, so a track
   whose person was missed does not take a passer-by's detection and push that person's own track onto someone else
   (an id swap). That cost is the same for every track: were it a track's own gate edge, leaving a track unseen for
   a while unmatched would cost more than leaving one matched just now, and a coasting track (someone who left the
   view) would take a person's detection from that person's own track; both then live on, taking the detection in
   turn (the staler one's miss always costs more), and a zone rule sees the person twice;
4. a matched track takes the detection's box and score, and its velocity moves toward the measured one; a
   detection left over starts a track.

Sizes are the box's longer side (a standing person's height, ~1.7 m): distances, the gate and the speed cap are in
these units, so one configuration suits near and far objects alike.

Deliberately left out: a second, looser pass for low-score detections (ByteTrack). Detections reach the analytics
after the detector's and ``algorithm_params``' confidence thresholds, so there is no low-score band to recover tracks
from; the single gated pass keeps ids in every case the tests pose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

import msgspec
import numpy as np
from msgspec import Meta
from scipy.optimize import linear_sum_assignment

from ..core.messages import Detection
from .track import Box, Track

__all__ = ["TrackUpdate", "Tracker", "TrackerConf"]

# Capture times are floats: a track matched every 0.2 s must not be dropped by max_age_sec = 0.2 because
# (1000.1 + 0.2) - 1000.1 comes out as 0.20000000000004547.
_TIME_EPS_SEC = 1e-9


class TrackerConf(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How a camera's tracker associates and ages tracks. Bounds are checked when the conf is decoded."""

    max_age_sec: Annotated[float, Meta(gt=0, le=3600)] = 2.0
    """A track not matched for longer than this (capture time) is dropped and reported lost. Keep it at least the
    longest interval between two samples the camera gets, or every gap ends every track."""
    label_max_age_sec: dict[str, Annotated[float, Meta(gt=0, le=3600)]] = {}
    """``max_age_sec`` of particular labels, seconds: the tracks of a label listed here live this long instead. Things
    that stand still (a bag) are missed by a detector more often than people and can safely coast longer: a
    prediction of something at rest stays right, while a person's drifts away and would take someone else's
    detection."""
    min_hits: Annotated[int, Meta(ge=1, le=100)] = 1
    """Matches before a track is reported (1: at once). A track not yet reported is dropped at its first miss, and
    silently: no rule ever saw it. Rules add their own inertia."""
    iou_weight: Annotated[float, Meta(ge=0, le=1)] = 0.5
    """Share of ``1 - IoU`` in the cost; the rest is the centre distance in box sizes. 0: distance only."""
    gate_sizes: Annotated[float, Meta(gt=0, le=100)] = 1.0
    """How far (box sizes) from its prediction a detection may lie for a track matched just now: covers jitter and
    the box changing shape. The gate widens by ``max_speed_sizes_per_sec`` for each second since the last match,
    up to ``max_gate_sizes``."""
    max_gate_sizes: Annotated[float, Meta(gt=0, le=100)] = 3.0
    """The widest the gate gets (box sizes), however long a track is unseen; at least ``gate_sizes``. Without a cap
    a track unseen for 4 s would accept a detection 13 sizes away, i.e. anyone in the frame: the prediction follows
    the motion measured before, so what the gate has to cover is the error of that prediction (a change of pace or
    direction), not every place the person could have run to."""
    max_speed_sizes_per_sec: Annotated[float, Meta(gt=0, le=100)] = 3.0
    """The fastest plausible motion, in box sizes per second (3: a person running ~5 m/s). Caps each velocity
    measurement, so one bad match cannot fling a track, and widens the gate while a track is unseen."""
    velocity_tau_sec: Annotated[float, Meta(gt=0, le=60)] = 0.5
    """Time constant of the velocity's smoothing: a match ``dt`` seconds after the last one moves the estimate
    ``1 - exp(-dt / tau)`` of the way to the measured velocity. A measurement over a long interval is precise (a
    pixel of jitter over 2 s is 0.5 px/s) and counts almost fully; one over 0.1 s (10 px/s per pixel) counts a fifth."""

    def __post_init__(self) -> None:
        if self.max_gate_sizes < self.gate_sizes:
            raise ValueError(f"max_gate_sizes ({self.max_gate_sizes:g}) is below gate_sizes ({self.gate_sizes:g}): "
                             "the gate only widens - at `$.max_gate_sizes`")


class TrackUpdate(msgspec.Struct, frozen=True):
    """What one ``Tracker.update`` gives the rules: the tracks to look at now, and the tracks that ended."""

    tracks: tuple[Track, ...]
    """Every live, reported track (matched in this sample, or coasting within its lifetime), ordered by id."""
    lost: tuple[int, ...]
    """Ids of reported tracks this update dropped (unmatched for longer than their lifetime), ascending. Each id
    appears here once, and in no later ``tracks``."""


class _Live:
    """A track's mutable state, private to the tracker; rules see ``Track`` snapshots of it."""

    __slots__ = ("box", "first_seen", "hits", "id", "label", "last_seen", "reported", "score", "vx", "vy")

    def __init__(self, track_id: int, det: Detection, t: float) -> None:
        self.id = track_id
        self.label = det.label
        self.box: Box = _floats(det.box)
        self.score = det.score
        self.first_seen = t
        self.last_seen = t
        self.hits = 1
        self.vx = 0.0  # a new track starts at rest; each match moves it toward the measured motion
        self.vy = 0.0
        self.reported = False

    def predicted(self, t: float) -> Box:
        """The box at time ``t``: the last matched box moved at constant velocity, its size kept."""
        dt = t - self.last_seen
        dx, dy = self.vx * dt, self.vy * dt
        x1, y1, x2, y2 = self.box
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)

    def match(self, det: Detection, t: float, conf: TrackerConf) -> None:
        """Take the detection's box and score; move the velocity toward the one measured since the last match."""
        box = _floats(det.box)
        dt = t - self.last_seen
        if dt > 0:
            (ox, oy), (nx, ny) = _centre(self.box), _centre(box)
            mvx, mvy = (nx - ox) / dt, (ny - oy) / dt
            # The cap is in sizes of the box the track had: a merged, oversized detection must not raise its own cap.
            cap = conf.max_speed_sizes_per_sec * _size(self.box)
            speed = math.hypot(mvx, mvy)
            if speed > cap:
                mvx, mvy = mvx * cap / speed, mvy * cap / speed
            gain = 1.0 - math.exp(-dt / conf.velocity_tau_sec)
            self.vx += gain * (mvx - self.vx)
            self.vy += gain * (mvy - self.vy)
        self.box = box
        self.score = det.score
        self.last_seen = t
        self.hits += 1

    def snapshot(self, t: float, matched: bool) -> Track:
        return Track(
            id=self.id, label=self.label, box=self.box if matched else self.predicted(t), score=self.score,
            first_seen=self.first_seen, last_seen=self.last_seen, hits=self.hits, matched=matched,
            velocity=(self.vx, self.vy),
        )


class Tracker:
    """Tracks one camera's detections across samples taken at irregular capture times (see the module docstring)."""

    def __init__(self, conf: TrackerConf = TrackerConf()) -> None:
        self._conf = conf
        self._tracks: list[_Live] = []  # ordered by id: ids only grow and tracks are appended
        self._next_id = 1
        self._last_t: float | None = None

    @property
    def conf(self) -> TrackerConf:
        return self._conf

    def update(self, detections: Sequence[Detection], t: float) -> TrackUpdate:
        """Feed one sample's detections, captured at monotonic time ``t`` (seconds).

        ``t`` must not decrease across calls (equal is fine): the motion model runs forward only. A ``ValueError``
        leaves the tracker as it was.
        """
        if not math.isfinite(t):
            raise ValueError(f"capture time must be a finite number of seconds, got {t!r}")
        if self._last_t is not None and t < self._last_t:
            raise ValueError(
                f"capture time went back from {self._last_t!r} to {t!r} s; feed samples in capture order "
                "(reorder them first), or reset() the tracker after a clock change"
            )
        self._last_t = t
        conf = self._conf

        lost: list[int] = []
        live: list[_Live] = []
        ages = conf.label_max_age_sec
        for track in self._tracks:
            if t - track.last_seen > ages.get(track.label, conf.max_age_sec) + _TIME_EPS_SEC:
                if track.reported:
                    lost.append(track.id)
            else:
                live.append(track)

        matched = self._associate(live, detections, t)

        kept: list[_Live] = []
        seen: set[int] = set()  # ids of the tracks matched or started by this sample
        for track in live:
            index = matched.get(track.id)
            if index is not None:
                track.match(detections[index], t, conf)
                seen.add(track.id)
            elif not track.reported:
                continue  # a tentative track that missed: most likely a false detection, and no rule saw it
            kept.append(track)
        taken = set(matched.values())
        for index, det in enumerate(detections):
            if index not in taken:
                kept.append(_Live(self._next_id, det, t))
                seen.add(self._next_id)
                self._next_id += 1
        self._tracks = kept

        reported: list[Track] = []
        for track in kept:
            if track.hits >= conf.min_hits:
                track.reported = True
            if track.reported:
                reported.append(track.snapshot(t, matched=track.id in seen))
        return TrackUpdate(tracks=tuple(reported), lost=tuple(lost))

    def reset(self) -> None:
        """Forget every track and the last capture time (after a reconnect, whose clock may start anew).

        Ids go on increasing, so a rule never mistakes a new track for an old one. The forgotten tracks are not
        reported lost: whoever resets the tracker ends the events it held for them.
        """
        self._tracks = []
        self._last_t = None

    def _associate(self, live: list[_Live], detections: Sequence[Detection], t: float) -> dict[int, int]:
        """Match detections to live tracks, label by label; returns track id -> index of its detection."""
        tracks_by_label: dict[str, list[_Live]] = {}
        for track in live:
            tracks_by_label.setdefault(track.label, []).append(track)
        indices_by_label: dict[str, list[int]] = {}
        for index, det in enumerate(detections):
            if det.label in tracks_by_label:
                indices_by_label.setdefault(det.label, []).append(index)

        matched: dict[int, int] = {}
        for label, indices in indices_by_label.items():
            tracks = tracks_by_label[label]
            cost, admissible = self._costs(tracks, [detections[i] for i in indices], t)
            if not admissible.any():
                continue
            # One column per detection, then one per track meaning "this track stays unmatched" (its own only); a
            # detection no track takes starts a track, at no cost. Every assignment using a forbidden entry costs
            # more than leaving every track unmatched, so the solver never picks one.
            n, m = cost.shape
            forbidden = n * self._unmatched_cost + 1.0
            table = np.full((n, m + n), forbidden)
            table[:, :m] = np.where(admissible, cost, forbidden)
            table[np.arange(n), m + np.arange(n)] = self._unmatched_cost
            rows, cols = linear_sum_assignment(table)
            for r, c in zip(rows.tolist(), cols.tolist()):
                if c < m and admissible[r, c]:
                    matched[tracks[r].id] = indices[c]
        return matched

    @property
    def _unmatched_cost(self) -> float:
        """What leaving a track unmatched costs the assignment, any track: a pair at the widest gate without overlap,
        the worst any admissible pair can cost (see the module docstring for why it is not the track's own gate)."""
        conf = self._conf
        return conf.iou_weight + (1.0 - conf.iou_weight) * conf.max_gate_sizes

    def _costs(self, tracks: list[_Live], dets: list[Detection], t: float) -> tuple[np.ndarray, np.ndarray]:
        """The (tracks x detections) cost matrix and which pairs pass the motion gate."""
        conf = self._conf
        pred = np.array([track.predicted(t) for track in tracks], dtype=np.float64)
        box = np.array([det.box for det in dets], dtype=np.float64)
        elapsed = np.array([t - track.last_seen for track in tracks], dtype=np.float64)

        px1, py1, px2, py2 = (pred[:, i, None] for i in range(4))
        dx1, dy1, dx2, dy2 = (box[None, :, i] for i in range(4))
        inter = (np.clip(np.minimum(px2, dx2) - np.maximum(px1, dx1), 0, None)
                 * np.clip(np.minimum(py2, dy2) - np.maximum(py1, dy1), 0, None))
        union = (px2 - px1) * (py2 - py1) + (dx2 - dx1) * (dy2 - dy1) - inter
        iou = inter / np.maximum(union, 1e-9)

        size = np.maximum(np.maximum(px2 - px1, py2 - py1), 1.0)
        dist = np.hypot((dx1 + dx2 - px1 - px2) / 2, (dy1 + dy2 - py1 - py2) / 2) / size
        gate = np.minimum(conf.gate_sizes + conf.max_speed_sizes_per_sec * elapsed, conf.max_gate_sizes)
        cost = conf.iou_weight * (1.0 - iou) + (1.0 - conf.iou_weight) * dist
        return cost, dist <= gate[:, None]


def _floats(box: tuple[int, int, int, int]) -> Box:
    x1, y1, x2, y2 = box
    return (float(x1), float(y1), float(x2), float(y2))


def _centre(box: Box) -> tuple[float, float]:
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2, (y1 + y2) / 2


def _size(box: Box) -> float:
    """The box's longer side, at least a pixel: the unit of distances, gates and speeds."""
    x1, y1, x2, y2 = box
    return max(x2 - x1, y2 - y1, 1.0)
