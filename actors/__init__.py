"""framewatch's actors and the pieces they share. Public names are re-exported here; the modules hold the rest.

One module per concept: ``config`` (TOML -> Structs), ``messages`` (every message), ``sources`` + ``extractor``
(cameras), ``backpressure`` (who may send a frame), ``pool`` + ``inference`` + ``detectors`` + ``rules`` (inference),
``frame_writer`` + ``storage`` + ``retention`` (frames on disk or MinIO), ``alerts`` + ``sinks`` (alerts out),
``metrics`` (counters, snapshot), ``supervision`` + ``timers`` (restarts, backoff, periodic messages).
"""

from .core.config import Config, ConfigError, Loaded, decode_config, load_config
from .core.messages import Alert, Detection, Frame
from .core.metrics import Snapshot

__all__ = [
    "Alert",
    "Config",
    "ConfigError",
    "Detection",
    "Frame",
    "Loaded",
    "Snapshot",
    "decode_config",
    "load_config",
]
