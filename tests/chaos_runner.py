"""A framewatch process for the chaos tests: ``python -m tests.chaos_runner CONF``.

The conf's whole pipeline, in its own process so a test can kill -9 it, with the walking ``Spotter`` as the detector
(an alert per line crossing, two a second per camera: a storm with a handful of synthetic cameras and no model to
load). SIGTERM stops it in order, exit code 0, as ``framewatch run`` does.
"""

from __future__ import annotations

import signal
import sys
import threading

from framewatch.actors.core.config import load_config
from framewatch.actors.system import Running
from tests.servers import Spotter


def main(conf: str) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    seeing = threading.Event()
    seeing.set()
    with Running(load_config(conf), detector_factory=lambda: Spotter(seeing)):
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
