"""Reference algorithm services (``framewatch algo serve``) as subprocesses, for benchmarks.

- ``ReferenceServices``: N services registered with one framewatch (``Running.http_url``): start, wait until each is
  registered (a condition read from the caller, not a sleep), stop (SIGTERM so each unregisters, wait, SIGKILL if
  it lingers). Used by the harness's ``remote`` backend and by ``benchmarks/remote_overhead.py``.
- ``one_service_alone``: the capacity probe's backend: one service registered with a bare HTTP API (framewatch's own
  ``HttpApi`` and ``Registry``, no actors), called through framewatch's own client (``RemoteBackend``) from the
  probe's threads, in the service's mode (``url``: the service fetches the JPEG back from that API).
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

from framewatch.actors.core.config import HttpConf
from framewatch.actors.core.messages import Detection, Frame
from framewatch.actors.inference import service as algo_service
from framewatch.actors.inference.registry import Registry, ServiceInfo
from framewatch.actors.inference.remote import InflightImages, RemoteBackend
from framewatch.actors.inference.slot import TaskRoute

from .scenario import Inference, SetupError

ROOT = Path(__file__).resolve().parent.parent


class ReferenceServices:
    """``count`` reference services with the same options, ids ``<prefix>-0``...; a context manager."""

    def __init__(self, register_url: str, *, task_types: list[str], count: int = 1, detector: str = "noop",
                 latency_ms: float = 0.0, max_concurrency: int = 1, mode: str = "url", token: str = "",
                 prefix: str = "ref") -> None:
        self.register_url = register_url
        self.ids = [f"{prefix}-{k}" for k in range(count)]
        self.max_concurrency = max_concurrency
        self._options: dict[str, object] = {"name": prefix, "detector": detector, "latency_ms": latency_ms,
                                            "max_concurrency": max_concurrency, "mode": mode, "log_level": "warning"}
        if token:
            self._options["token"] = token
        self._task_types = task_types
        self._procs: dict[str, tuple[subprocess.Popen[bytes], Any]] = {}

    @classmethod
    def of(cls, inf: Inference, register_url: str, task_types: list[str], token: str = "",
           count: int | None = None) -> ReferenceServices:
        """The services of a scenario's ``[bench.inference]`` with ``backend = "remote"`` (``count`` of them: default
        ``inf.services``)."""
        return cls(register_url, task_types=task_types, count=count or inf.services, detector=inf.detector,
                   latency_ms=inf.latency_ms, max_concurrency=inf.max_concurrency, mode=inf.mode, token=token)

    def start(self) -> ReferenceServices:
        for sid in self.ids:
            argv = algo_service.command(self.register_url, service_id=sid, task_types=self._task_types,
                                        **self._options)
            err = tempfile.TemporaryFile()  # read back if it dies; a pipe nobody drains could block it
            self._procs[sid] = (subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                 stderr=err), err)
        return self

    def wait_registered(self, slots_now: Callable[[], Mapping[str, int]], timeout: float = 60.0) -> None:
        """Until every service holds its slots in ``slots_now()`` (service id -> slots); raises SetupError if one
        exits or the timeout passes (ssdlite services load a model first)."""
        deadline = time.monotonic() + timeout
        while True:
            for sid, (proc, err) in self._procs.items():
                if proc.poll() is not None:
                    err.seek(0)
                    tail = err.read().decode(errors="replace").strip()[-500:]
                    raise SetupError(f"reference service {sid} exited with status {proc.returncode}: {tail}")
            now = slots_now()
            if all(now.get(sid, 0) >= 1 for sid in self.ids):
                return
            if time.monotonic() > deadline:
                missing = [sid for sid in self.ids if now.get(sid, 0) < 1]
                raise SetupError(f"reference services {', '.join(missing)} not registered within {timeout:g} s")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every service (each unregisters and exits), wait, SIGKILL what lingers. Idempotent."""
        procs, self._procs = self._procs, {}
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc, err in procs.values():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
            err.close()

    def __enter__(self) -> ReferenceServices:
        return self.start() if not self._procs else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _RemoteDetector:
    """framewatch's client for one service (``RemoteBackend``), shaped as a Detector for the capacity probe."""

    def __init__(self, info: ServiceInfo, images: InflightImages, task_type: str) -> None:
        self.name = f"remote:{info.name}"
        self._backend = RemoteBackend(info, images, connect_timeout_sec=2, timeout_sec=30)
        self._route = TaskRoute(None, None, "")
        self._task_type = task_type
        self._seq = count()

    def detect(self, image: Any) -> list[Detection]:
        frame = Frame(task_id="probe", task_type=self._task_type, seq=next(self._seq), captured_at=time.time(),
                      captured_mono=time.monotonic(), image=image)
        return self._backend.infer(frame, self._route).detections

    def close(self) -> None:
        self._backend.close()


@contextmanager
def one_service_alone(inf: Inference, task_type: str, token: str = "") -> Iterator[Callable[[], _RemoteDetector]]:
    """One service as configured in ``inf``, registered with a bare HTTP API; yields a detector factory."""
    from framewatch.actors.api.http import HttpApi

    registry = Registry(heartbeat_timeout_sec=60, circuit_open_sec=5)
    images = InflightImages()
    api = HttpApi(HttpConf(enable=True, port=0, token=token), registry=registry, images=images,
                  snapshot=lambda: None, task_types=[task_type])  # type: ignore[arg-type,return-value]
    url = api.start()
    try:
        with ReferenceServices.of(inf, url, [task_type], token, count=1) as svc:
            svc.wait_registered(lambda: {sid: info.max_concurrency for sid, (info, _) in registry.services().items()})
            info = registry.services()[svc.ids[0]][0]
            yield lambda: _RemoteDetector(info, images, task_type)
    finally:
        api.stop()
