"""人员跌倒 (fall): a tracked person whose box turns from upright to lying, and stays so.

A geometric heuristic on the box's aspect (width / height), matched samples only. With ``a`` =
``custom_params.aspect_ratio_threshold`` (default 1.2, at least 1): a box is *upright* when ``w / h <= 1 / a``
(taller than wide by that factor), *lying* when ``w / h >= a``. A person seen upright who then shows a lying box
starts a fall; once it has lasted ``custom_params.fall_duration_threshold`` seconds (default 2) and ``min_samples``
lying samples (default 2), it is an event (rule ``fall``, subject = the track), in the first zone (conf order)
holding the foot point; without areas, the whole frame. Boxes in between keep the state (jitter around the
threshold neither starts nor ends a fall). The event ends when the person is upright again or the track is lost.

Known blind spots, inherent to the box shape: a person already lying when first seen never falls (no upright box
before); a camera looking down from above sees a standing person nearly square and a fall along the line of sight
hardly changes the box; a person bending, crouching or sitting wide may pass the threshold for a while (the duration
filters the short ones); partial occlusion changes the box's shape. An algorithm service registered for 人员跌倒 can
serve the type instead, with a pose or action model.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

from msgspec import Meta

from ..events import Condition
from .base import TIME_EPS_SEC, CustomParams, Outcome, Scene, Seconds, TaskParams, condition_about, foot

__all__ = ["FallCustom", "FallParams", "FallState", "watch_falls"]


class FallCustom(CustomParams, kw_only=True):
    aspect_ratio_threshold: Annotated[float, Meta(ge=1.0, le=10.0)] = 1.2
    """Width / height at or above which a box is lying (and at or below whose inverse it is upright)."""
    fall_duration_threshold: Seconds = 2.0
    min_samples: Annotated[int, Meta(ge=1, le=1000)] = 2
    """Lying samples before a fall is an event."""


class FallParams(TaskParams[FallCustom], kw_only=True):
    DEFAULT_MIN_FPS = 2.0


class _Pose(NamedTuple):
    upright_seen: bool
    lying_since: float | None
    """First lying sample since it was last upright (after having been upright); None: not fallen."""
    lying_samples: int


_NEW = _Pose(False, None, 0)


class FallState(NamedTuple):
    poses: dict[int, _Pose]
    """Per person track id."""


def initial_state() -> FallState:
    return FallState({})


def watch_falls(params: FallParams, state: FallState, scene: Scene) -> Outcome[FallState]:
    custom = params.custom
    lying_at = custom.aspect_ratio_threshold
    upright_at = 1.0 / lying_at
    zones = params.zones(scene.width, scene.height)
    poses: dict[int, _Pose] = {}
    conditions: list[Condition] = []
    for track in scene.tracks:
        if track.label != params.label:
            continue
        pose = state.poses.get(track.id, _NEW)
        if track.matched:
            x1, y1, x2, y2 = track.box
            aspect = (x2 - x1) / (y2 - y1) if y2 > y1 else float("inf")
            if aspect <= upright_at:
                pose = _Pose(True, None, 0)
            elif aspect >= lying_at and pose.upright_seen:
                since = scene.t if pose.lying_since is None else pose.lying_since
                pose = _Pose(True, since, pose.lying_samples + 1)
        poses[track.id] = pose
        if (pose.lying_since is None or pose.lying_samples < custom.min_samples
                or scene.t - pose.lying_since < custom.fall_duration_threshold - TIME_EPS_SEC):
            continue
        point = foot(track, scene)
        zone = next((z for z in zones if z.holds(point)), None)
        if zone is not None:
            conditions.append(condition_about("fall", zone, [track], subject=str(track.id)))
    return Outcome(FallState(poses), conditions, [])
