"""The nine task types of the old system, as tracking rules: their parameters, sampling floors, labels and rules.

``TASK_TYPES`` maps each old name to its ``TaskTypeSpec``; ``decode_task_params`` turns a task's ``algo_config``
into the type's parameters (``tasks.base.TaskParams``), once, when the conf is read. The rules themselves live in
``tasks/`` (one module per kind of rule, each documenting its semantics and defaults); ``engine.CameraAnalytics``
runs them per camera.

=================  ==========================  =======  ===============================  ==========================
task type          rule(s)                     min_fps  labels tracked                   persistence (custom_params)
=================  ==========================  =======  ===============================  ==========================
人数统计             people_count, count_report  1        ``label``                        count_interval_sec 60
绊线人数统计          line_crossing (instant)     3        ``label``                        cross_margin_px 15
区域入侵             intrusion                   2        ``label``                        min_inside_sec 0.5
徘徊检测             loitering                   2        ``label``                        min_dwell_time 10
人员离岗             off_post                    0.5      ``label``                        absence_sec 30
物品遗留             abandoned_object            0.5      ``label`` + object_labels        abandon_sec 30
人员跌倒             fall                        2        ``label``                        fall_duration_threshold 2
吸烟检测             smoking                     1        violation_labels (``smoking``)   smoking_duration_threshold 3
安全帽检测           no_helmet                   1        violation_labels (``no_helmet``) alert_delay 2
=================  ==========================  =======  ===============================  ==========================

``label`` (top level, default ``person``) names the people. ``custom_params.min_fps`` overrides the floor.

Two forms of ``algo_config``, as in ``rules``: the old format (any top-level key of ``regions.OLD_FORMAT_KEYS``),
whose unknown keys are accepted anywhere; and, for 人数统计 and 区域入侵 only, framewatch's own form
(``count_threshold`` / ``roi`` / ``label`` at the top level) whose unknown keys are typos and errors. The seven other
types are always open: their ``algo_config`` may hold keys meant for a remote service (``{"sensitivity": 3}``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from .regions import OLD_FORMAT_KEYS
from .tasks import abandoned, counting, fall, offpost, presence, tripwire
from .tasks.base import CustomParams, Outcome, Scene, TaskParams

__all__ = ["TASK_TYPES", "TaskParams", "TaskTypeSpec", "decode_task_params"]


class TaskTypeSpec(NamedTuple):
    """A task type as data: how its conf decodes, its rule and the rule's initial state."""

    name: str
    """The old system's name (the key of ``TASK_TYPES``)."""
    key: str
    """An ASCII name for logs, metrics and file names."""
    params_type: type[TaskParams[Any]]
    rule: Callable[[Any, Any, Scene], Outcome[Any]]
    """``rule(params, state, scene) -> Outcome``: pure (``tasks.base``)."""
    initial_state: Callable[[], Any]
    strict_params_type: type[TaskParams[Any]] | None = None
    """framewatch's own form (unknown keys refused), for the types that had one before the old format came."""

    @property
    def default_min_fps(self) -> float:
        return self.params_type.DEFAULT_MIN_FPS

    def decode(self, algo_config: Any) -> TaskParams[Any]:
        """See ``decode_task_params``."""
        old_format = isinstance(algo_config, dict) and not OLD_FORMAT_KEYS.isdisjoint(algo_config)
        target = self.params_type if old_format or self.strict_params_type is None else self.strict_params_type
        return msgspec.convert(_with_custom_params(algo_config), target)


def _with_custom_params(algo_config: Any) -> Any:
    """``algo_config`` with ``algorithm_params.custom_params`` present (``{}`` where missing), not modified."""
    if not isinstance(algo_config, dict):
        return algo_config  # msgspec says what is wrong with it
    params = algo_config.get("algorithm_params", {})
    if isinstance(params, dict) and "custom_params" not in params:
        return {**algo_config, "algorithm_params": {**params, "custom_params": {}}}
    return algo_config


# framewatch's own forms: the same fields, unknown keys refused (a typo in ``count_threshold`` must not pass).
class _StrictCountingParams(counting.CountingParams, forbid_unknown_fields=True):
    pass


class _StrictIntrusionParams(presence.IntrusionParams, forbid_unknown_fields=True):
    pass


TASK_TYPES: dict[str, TaskTypeSpec] = {spec.name: spec for spec in (
    TaskTypeSpec("人数统计", "people_counting", counting.CountingParams, counting.count_people,
                 counting.initial_state, _StrictCountingParams),
    TaskTypeSpec("绊线人数统计", "tripwire", tripwire.TripwireParams, tripwire.count_crossings,
                 tripwire.initial_state),
    TaskTypeSpec("人员跌倒", "fall", fall.FallParams, fall.watch_falls, fall.initial_state),
    TaskTypeSpec("人员离岗", "off_post", offpost.OffPostParams, offpost.watch_posts, offpost.initial_state),
    TaskTypeSpec("吸烟检测", "smoking", presence.SmokingParams, presence.stay_in_zone, presence.initial_state),
    TaskTypeSpec("区域入侵", "intrusion", presence.IntrusionParams, presence.stay_in_zone, presence.initial_state,
                 _StrictIntrusionParams),
    TaskTypeSpec("徘徊检测", "loitering", presence.LoiteringParams, presence.stay_in_zone, presence.initial_state),
    TaskTypeSpec("物品遗留", "abandoned_object", abandoned.AbandonedParams, abandoned.watch_objects,
                 abandoned.initial_state),
    TaskTypeSpec("安全帽检测", "helmet", presence.HelmetParams, presence.stay_in_zone, presence.initial_state),
)}


def decode_task_params(task_type: str, algo_config: Any) -> TaskParams[CustomParams]:
    """A task's ``algo_config`` decoded for its type's rule (``TASK_TYPES[task_type].params_type``).

    Missing ``algorithm_params`` / ``custom_params`` take their defaults. Raises ``msgspec.ValidationError`` whose
    path is relative to ``algo_config`` (``rules.error_path`` splits it: ``$.algorithm_params.custom_params.
    min_dwell_time``), and ``KeyError`` for a task type that is not one of ``TASK_TYPES`` (no built-in rule: the
    caller checks the old format's shape alone, ``regions.RegionConfig``)."""
    spec = TASK_TYPES.get(task_type)
    if spec is None:
        raise KeyError(f"no built-in rule for task type {task_type!r}; built in: {', '.join(TASK_TYPES)}")
    return spec.decode(algo_config)
