"""The reference algorithm service: ``framewatch algo serve --port P --register URL``.

Wraps the built-in SSDLite person detector (or ``--detector noop``) behind the old system's service protocol, so a
user adds inference capacity on another machine with one command. It serves ``POST /infer`` in both modes (see
``actors.algo_client``): JSON ``{image_url, task_id, task_type, image_path, algo_config}`` (the image fetched with a
pooled keep-alive client), or the JPEG itself as the body (``Content-Type: image/jpeg``, task fields in the query
string). It answers ``{success, result: {total_count, detections: [{label, score, box}]}, confidence,
inference_time_ms, error}``. ``--latency-ms`` sleeps that long per call (in addition to detecting), to emulate a
slow service in tests and benchmarks.

Lifecycle: detectors are built first (one per unit of ``--max-concurrency``; a call borrows one), then the server
listens, then it registers with framewatch (retrying until framewatch answers) and heartbeats every third of the
heartbeat timeout framewatch returned (registering again when framewatch no longer knows it). SIGTERM/SIGINT:
unregister, stop the server, exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import msgspec
import numpy as np
import urllib3

from ..analytics.rules import AREA_INTRUSION, PEOPLE_COUNTING
from ..api.server import HttpError, HttpServer, JsonHandler
from ..core.config import DetectorConf
from ..inference.detectors import Detector, NoopDetector, build_detector
from ..inference.remote import WireRequest

log = logging.getLogger("framewatch.algo")

_REQUEST = msgspec.json.Decoder(WireRequest)


class Service:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.http = urllib3.PoolManager(maxsize=max(args.max_concurrency, 2), retries=False,
                                        timeout=urllib3.Timeout(connect=2, total=10))
        self.detectors: queue.Queue[Detector] = queue.Queue()
        for _ in range(args.max_concurrency):
            self.detectors.put(NoopDetector() if args.detector == "noop" else build_detector(DetectorConf()))
        self.served = self.failed = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.service_id = args.service_id or f"{args.name}-{args.port}"

    # --- inference ---

    def infer(self, image: np.ndarray) -> dict[str, Any]:
        t0 = time.monotonic()
        if self.args.latency_ms:
            time.sleep(self.args.latency_ms / 1000)
        detector = self.detectors.get()
        try:
            found = detector.detect(image)
        finally:
            self.detectors.put(detector)
        with self.lock:
            self.served += 1
        detections = [{"label": d.label, "score": d.score, "box": list(d.box)} for d in found]
        return {"success": True, "result": {"total_count": len(found), "detections": detections},
                "confidence": max((d.score for d in found), default=0.0),
                "inference_time_ms": round((time.monotonic() - t0) * 1000, 2), "error": None}

    def image_of(self, handler: JsonHandler, body: bytes) -> np.ndarray:
        if handler.headers.get("Content-Type", "").startswith("image/jpeg"):
            fields = parse_qs(urlsplit(handler.path).query)
            if "task_type" not in fields:
                raise HttpError(400, "inline mode needs task_type (and task_id) in the query string")
            jpeg = body
        else:
            try:
                req = _REQUEST.decode(body)
            except msgspec.DecodeError as exc:
                raise HttpError(400, str(exc)) from None
            try:
                resp = self.http.request("GET", req.image_url)
            except urllib3.exceptions.HTTPError as exc:
                raise HttpError(502, f"cannot fetch image_url: {type(exc).__name__}") from None
            if resp.status != 200:
                raise HttpError(502, f"cannot fetch image_url: HTTP {resp.status}")
            jpeg = resp.data
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise HttpError(400, "the image is not a JPEG")
        return image

    # --- registration ---

    def _call(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if self.args.token:
            headers["Authorization"] = f"Bearer {self.args.token}"
        try:
            resp = self.http.request("POST", self.args.register.rstrip("/") + path,
                                     body=msgspec.json.encode(body or {}), headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            return 0, {"error": type(exc).__name__}
        try:
            return resp.status, msgspec.json.decode(resp.data)
        except msgspec.DecodeError:
            return resp.status, {}

    def register(self, port: int) -> float:
        """Register (retrying until framewatch answers); returns the heartbeat interval in seconds."""
        host = self.args.advertise_host or self.args.host
        body = {"service_id": self.service_id, "name": self.args.name, "task_types": self.args.task_types,
                "endpoint": f"http://{host}:{port}/infer", "version": "framewatch-ref-1",
                "max_concurrency": self.args.max_concurrency, "mode": self.args.mode}
        while not self.stop.is_set():
            status, answer = self._call("/api/v1/ai_analysis/register", body)
            if status == 200:
                log.info("registered as %s with %s", answer.get("service_id"), self.args.register)
                return max(0.2, float(answer.get("heartbeat_timeout_sec", 60)) / 3)
            log.warning("register: %s %s; retrying", status or "no answer", answer.get("error", ""))
            self.stop.wait(1.0)
        return 1.0

    def run(self, port: int) -> None:
        interval = self.register(port)
        while not self.stop.wait(interval):
            with self.lock:
                stats = {"served": self.served, "failed": self.failed}
            status, _ = self._call(f"/api/v1/ai_analysis/heartbeat/{self.service_id}", stats)
            if status in (400, 404):  # unknown id (evicted): 400 as the old server answered, 404 before
                interval = self.register(port)
        status, _ = self._call(f"/api/v1/ai_analysis/unregister/{self.service_id}")
        log.info("unregistered (%s)", status or "framewatch unreachable")


class _Handler(JsonHandler):
    service: Service

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.answer(self._infer)

    def _infer(self) -> None:
        body = self.read_body()
        if urlsplit(self.path).path != "/infer":
            raise HttpError(404, "POST /infer")
        try:
            image = self.service.image_of(self, body)
        except HttpError:
            with self.service.lock:
                self.service.failed += 1
            raise
        self.send_json(200, self.service.infer(image))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, required=True, help="port to serve /infer on (0: any free port)")
    p.add_argument("--register", required=True, help="framewatch's HTTP API, e.g. http://127.0.0.1:8089")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--advertise-host", default="", help="host framewatch should call (default: --host)")
    p.add_argument("--name", default="ssdlite-ref", help="name shown in framewatch's /services and stats")
    p.add_argument("--service-id", default="", help="default: NAME-PORT")
    p.add_argument("--task-types", nargs="+", default=[PEOPLE_COUNTING, AREA_INTRUSION],
                   help="task types this service infers (default: people counting, area intrusion)")
    p.add_argument("--max-concurrency", type=int, default=1,
                   help="calls it serves at once: framewatch gives it this many inference slots")
    p.add_argument("--mode", choices=("url", "inline"), default="url",
                   help="url: framewatch sends an image URL to fetch; inline: the JPEG is the request body")
    p.add_argument("--token", default=os.environ.get("FRAMEWATCH_API_TOKEN", ""),
                   help="framewatch's API token (default: $FRAMEWATCH_API_TOKEN)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="sleep this long per call (emulate a slow service)")
    p.add_argument("--detector", choices=("ssdlite", "noop"), default="ssdlite",
                   help="ssdlite: the built-in person detector; noop: detects nothing (load tests)")


def serve(args: argparse.Namespace) -> int:
    service = Service(args)

    class Handler(_Handler):
        max_body_bytes = 16 * 1024 * 1024

    Handler.service = service
    server = HttpServer((args.host, args.port), Handler, "algo")
    port = server.server_address[1]
    server.start()
    log.info("serving %s on http://%s:%d/infer (%s mode, max_concurrency %d)", args.detector, args.host, port,
             args.mode, args.max_concurrency)

    def on_signal(signum: int, frame: Any) -> None:
        service.stop.set()

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, on_signal)
    try:
        service.run(port)
    finally:
        server.stop()
        service.http.clear()
    return 0


def command(register: str, *, service_id: str, task_types: list[str], port: int = 0, **options: object) -> list[str]:
    """The command line that starts a reference service as a subprocess (tests, benchmarks): ``options`` are the
    long flags, e.g. ``latency_ms=200, mode="inline"`` -> ``--latency-ms 200 --mode inline``."""
    argv = [sys.executable, "-m", "framewatch.supervisor", "algo", "serve",
            "--port", str(port), "--register", register, "--service-id", service_id, "--task-types", *task_types]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv
