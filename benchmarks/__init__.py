"""framewatch's benchmark harness: scenarios, runs side by side with the old system's behaviour, reports.

Public API: ``load_scenario`` / ``decode_scenario`` (validated ``Scenario``), ``run_scenario`` (runs it, returns a
``Result`` with the report dict, the table and the paths), ``main`` (the CLI; ``framewatch bench`` calls it).
The heavy modules (OpenCV, the actors) load only when a run starts.
"""

from __future__ import annotations

from typing import Any

from .cli import main
from .scenario import Scenario, ScenarioError, SetupError, decode_scenario, load_scenario

__all__ = ["Scenario", "ScenarioError", "SetupError", "decode_scenario", "load_scenario", "main", "run_scenario"]


def run_scenario(*args: Any, **kwargs: Any) -> Any:
    from .harness import run_scenario as run

    return run(*args, **kwargs)
