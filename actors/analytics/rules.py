"""Task types: which ones framewatch analyses itself, how their ``algo_config`` is checked, and what an alert reports.

Every task type of the old system (``OLD_TASK_TYPES``) has a tracking rule (``tasktypes.TASK_TYPES``: people
counting, tripwire counting, intrusion, loitering, off-post, abandoned object, fall, and smoking / helmet on the
detections of an algorithm service). ``decode_algo_config`` validates a task's ``algo_config`` once, when the conf is
read, so a mistake fails at start with its key path:

- the old system's form, version "1.0" (``regions`` in pixels, ``algorithm_params.custom_params``; see ``regions``):
  with any of its top-level keys, unknown keys anywhere are accepted and kept for remote services (the console writes
  keys framewatch does not read);
- framewatch's own form for people counting and intrusion (``count_threshold``, ``roi`` in fractions, ``label``):
  without any key of the old format, an unknown key is a typo and an error.

A task type outside that list (a site's own service type) is checked for the old format's shape only
(``RegionConfig``); its frames get the old system's rule (an event while the service's count is above 0).

``Decision`` is what one alert record reports (the rule, the counts, the objects and their regions), in the shape
the old services' ``result`` had.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..core.messages import Detection
from .regions import RegionConfig
from .tasktypes import TASK_TYPES, decode_task_params

__all__ = [
    "AREA_INTRUSION", "OLD_TASK_TYPES", "PEOPLE_COUNTING", "Decision", "RegionResult", "decode_algo_config",
    "error_path", "has_builtin_rule",
]

PEOPLE_COUNTING = "人数统计"
AREA_INTRUSION = "区域入侵"

#: The old system's task types, accepted by default in ``frame_extractor.task_types``.
OLD_TASK_TYPES = (
    "人数统计",
    "绊线人数统计",
    "人员跌倒",
    "人员离岗",
    "吸烟检测",
    "区域入侵",
    "徘徊检测",
    "物品遗留",
    "安全帽检测",
)

class RegionResult(msgspec.Struct, frozen=True):
    """One enabled area's outcome; encodes as an item of the old services' ``region_results``."""

    region_id: str
    region_name: str
    count: int
    """People whose foot point lies in the area (after ``algorithm_params``' filters)."""
    alert: bool


class Decision(msgspec.Struct, frozen=True):
    """What one alert record reports. ``alert`` False: nothing to alert on."""

    alert: bool
    rule: str
    counts: dict[str, int]
    """The label's count in the frame; intrusion adds ``in_roi``; with regions, one entry per enabled area id."""
    detections: list[Detection]
    """The detections that matter: everyone counted (people counting), the intruders (intrusion)."""
    regions: list[RegionResult] = []
    """With regions: one per enabled polygon/rectangle, in the conf's order. Empty without regions."""
    detection_regions: list[str] = []
    """With regions: for each of ``detections``, the id of the first enabled area (conf order) holding its foot point
    (the old services' per-detection ``region_id``). Empty without regions."""


def has_builtin_rule(task_type: str) -> bool:
    return task_type in TASK_TYPES


def decode_algo_config(task_type: str, algo_config: dict[str, Any]) -> RegionConfig:
    """Validate a task's ``algo_config``; the typed form, for the built-in rules (services get the dict as written).

    Built-in task types decode into their parameters (``tasktypes.decode_task_params``); the other types into
    ``RegionConfig`` (the old format's shape: regions and their points, ``algorithm_params``), everything else passed
    through unchecked. Raises ``msgspec.ValidationError`` whose path is relative to ``algo_config`` (``error_path``
    splits it)."""
    if task_type not in TASK_TYPES:
        return msgspec.convert(algo_config, RegionConfig)
    return decode_task_params(task_type, algo_config)


def error_path(exc: msgspec.ValidationError) -> tuple[str, str]:
    """``(reason, path)`` of a ``decode_algo_config`` error; ``path`` is ``$`` for ``algo_config`` as a whole.

    ``Expected `int`, got `str` - at `$.regions[0].points[1][0]` `` gives the reason and ``$.regions[0].points[1][0]``,
    to be re-rooted where the conf came from (``$.frame_extractor.tasks[2].algo_config...``, a file, the store)."""
    reason, sep, path = str(exc).rpartition(" - at `$")
    if not sep:
        return str(exc), "$"
    return reason, "$" + path.removesuffix("`")
