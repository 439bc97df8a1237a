"""framewatch's actors and the pieces they share. Public names are re-exported here; the subpackages hold the rest.

Grouped by concern, so the folder shows the architecture (data flows top to bottom):

- ``core``: config (TOML -> Structs), messages, metrics (counters, snapshot), supervision (specs, tree, links,
  readiness, backoff), timers, URL checks, state-change logging;
- ``ingest``: sources (file / RTSP / synthetic), the extractor actor, backpressure (valves, the watermark controller);
- ``inference``: the pool, the inference slot actor, the built-in detectors, remote algorithm services (registry,
  client backend, service slots, the reference service);
- ``analytics``: task-type rules;
- ``storage``: stores (local, MinIO), the frame writer, retention (the only deleter);
- ``alerts``: the alert actor, sinks (JSON Lines, Kafka), the on-disk spool;
- ``api``: the HTTP API, Prometheus text, the status line;
- ``system``: the wiring (one ``Camera`` record per task, every child's spec) and ``Running``; ``cli``: the command.
"""

from typing import Any

from .core.config import Config, ConfigError, Loaded, decode_config, load_config
from .core.messages import Alert, Detection, Frame
from .core.metrics import Snapshot, conservation_errors
from .core.supervision import StartError

__all__ = [
    "Alert",
    "Config",
    "ConfigError",
    "Detection",
    "Frame",
    "Loaded",
    "Running",
    "Snapshot",
    "StartError",
    "System",
    "conservation_errors",
    "decode_config",
    "load_config",
]


def __getattr__(name: str) -> Any:
    # ``Running`` and ``System`` import supervisor.py, which imports this package: loaded on first use, not here.
    if name in ("Running", "System"):
        from . import system

        return getattr(system, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
