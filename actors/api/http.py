"""The HTTP API in the framewatch process: algorithm service registration, status, metrics, in-flight frames.

Endpoints (JSON unless said otherwise; errors are ``{"error": reason}`` with a 4xx status and never touch the pipeline).
The service registry speaks the old system's wire format exactly (its clients test ``ok`` and use these verbs and
status codes: 400 for a bad body or an unknown id); framewatch's additions are extra fields and stricter checks:

- ``POST /api/v1/ai_analysis/register`` ``{service_id?, name, task_types[], endpoint, version?, max_concurrency?,
  mode?: "url"|"inline"}`` -> ``{"ok": true, "service_id", "heartbeat_timeout_sec"}``. The same id again, or the
  same endpoint under another id, replaces the entry. ``service_id`` left out: one is generated; given empty: 400
  (the old server refused an empty id). Unknown task types or a non-http endpoint: 422;
- ``POST /api/v1/ai_analysis/heartbeat/{service_id}`` (empty, or the stats object ``HeartbeatStats``) ->
  ``{"ok": true}``; 400 when unknown (evicted: register again);
- ``DELETE /api/v1/ai_analysis/unregister/{service_id}`` (the old verb; POST too) -> ``{"ok": true}``; 400 if unknown;
- ``GET /api/v1/ai_analysis/services`` -> ``{"services": [...], "total": N}`` (``Registry.listing``);
- ``GET /api/v1/ai_analysis/algo_config/{task_id}``: the task's algo_config object (a request's ``algo_config_url``
  without MinIO); 404 for an unknown task;
- ``GET /api/v1/status``: a fresh stats snapshot; ``GET /metrics``: its counters as Prometheus text;
- ``GET /frames/{token}.jpg``: a frame being inferred by a remote service in mode ``url``, only while in flight.

With a token configured, register/heartbeat/unregister need ``Authorization: Bearer <token>`` (401 otherwise).
Bodies larger than ``max_body_bytes`` get 413 without being read. Each body has one typed decoder, built once.

Server: the standard library's ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive): a handful of requests per second needs
no framework, and a dependency here would buy nothing. Threads: ``http`` runs the accept loop, one ``http:conn``
thread per connection. ``HttpServer.stop`` ends the loop, shuts the open connections' sockets (so idle keep-alive
clients cannot hold a thread), and joins every thread; the supervisor owns it, starts it after the pipeline and stops
it after inference has drained (remote services fetch in-flight frames until then).
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ..api.prometheus import exposition
from ..core.config import HttpConf
from ..core.metrics import Snapshot
from ..core.supervision import Ready, StartError
from ..inference.registry import HeartbeatStats, Registry, ServiceInfo
from ..inference.remote import ALGO_CONFIG_PATH, InflightImages

log = logging.getLogger(__name__)

API = "/api/v1/ai_analysis/"
#: The registry's calls under ``API``: the verbs each accepts (the old server's first), and whether it takes an id.
_CALLS: dict[str, tuple[tuple[str, ...], bool]] = {
    "register": (("POST",), False),
    "heartbeat": (("POST",), True),
    "unregister": (("DELETE", "POST"), True),
}
_GET_ONLY = ("/metrics", "/api/v1/status")


class RegisterRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The old system's registration body, plus ``max_concurrency`` and ``mode``. Unknown fields are ignored (old
    services may send more). ``service_id`` absent (UNSET): framewatch generates one; present, it must not be empty."""

    service_id: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] | UnsetType = UNSET
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    task_types: Annotated[list[str], Meta(min_length=1, max_length=64)]
    endpoint: Annotated[str, Meta(min_length=1, max_length=2048)]
    version: Annotated[str, Meta(max_length=64)] = ""
    max_concurrency: Annotated[int, Meta(ge=1, le=64)] = 1
    mode: Literal["url", "inline"] = "url"


_REGISTER = msgspec.json.Decoder(RegisterRequest)
_HEARTBEAT = msgspec.json.Decoder(HeartbeatStats)
_JSON = msgspec.json.Encoder()


class HttpError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


# --- an owned threading server (also used by the reference algorithm service) -------------------------------------


class HttpServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` whose threads are named, tracked and all stopped by ``stop``."""

    daemon_threads = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], name: str) -> None:
        super().__init__(address, handler)
        self.name = name
        self._conns: dict[threading.Thread, socket.socket] = {}
        self._conns_lock = threading.Lock()
        self._loop: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._loop = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, name=self.name)
        self._loop.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self._serve_one, args=(request, client_address), name=f"{self.name}:conn")
        with self._conns_lock:
            self._conns[t] = request
        t.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.pop(threading.current_thread(), None)

    def serving(self) -> bool:
        return self._loop is not None and self._loop.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop accepting, close open connections, join every thread; False if one did not end within ``timeout``."""
        if self._loop is not None:
            self.shutdown()
            self._loop.join(timeout)
        with self._conns_lock:
            conns = list(self._conns.items())
        for _, sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t, _ in conns:
            t.join(timeout)
        self.server_close()
        return not any(t.is_alive() for t, _ in conns)


class JsonHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 handler with JSON answers and a bounded body reader."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: without it, +40 ms per call (delayed ACK)
    timeout = 30  # an idle keep-alive connection is closed after this many seconds
    max_body_bytes = 1024 * 1024

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("%s: " + format, self.server.name, *args)  # type: ignore[attr-defined]

    def send_body(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, obj: Any) -> None:
        self.send_body(status, _JSON.encode(obj))

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise HttpError(411, "chunked bodies are not accepted: send Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise HttpError(400, "Content-Length is not a number") from None
        if length < 0:
            self.close_connection = True
            raise HttpError(400, "Content-Length is negative")
        if length > self.max_body_bytes:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise HttpError(413, f"body of {length} bytes is larger than max_body_bytes ({self.max_body_bytes})")
        return self.rfile.read(length) if length else b""

    def answer(self, route: Callable[[], None]) -> None:
        try:
            route()
        except HttpError as exc:
            self.send_json(exc.status, {"error": str(exc)})
        except Exception:  # a bug here must not take the connection thread (or the pipeline) down silently
            log.exception("%s: error answering %s %s", self.server.name, self.command, self.path)  # type: ignore[attr-defined]
            self.send_json(500, {"error": "internal error (logged)"})


# --- the framewatch API -------------------------------------------------------------------------------------------


class HttpApi:
    """Owns the server; ``start`` returns once it listens, ``stop`` joins its threads. A supervised child's handle
    (``ready``, ``is_alive``, ``stop``): a port in use fails its start with a ``StartError`` naming ``http.port``."""

    def __init__(self, conf: HttpConf, *, registry: Registry, images: InflightImages,
                 snapshot: Callable[[], Snapshot], task_types: Sequence[str]) -> None:
        self.conf = conf
        self.registry = registry
        self.images = images
        self.snapshot = snapshot
        self.task_types = frozenset(task_types)
        self._server: HttpServer | None = None
        self.ready = Ready()

    @property
    def url(self) -> str:
        return self._server.url if self._server is not None else ""

    def start(self) -> str:
        api = self

        class Handler(_ApiHandler):
            max_body_bytes = api.conf.max_body_bytes

        Handler.api = api
        try:
            self._server = HttpServer((self.conf.host, self.conf.port), Handler, "http")
        except OSError as exc:
            error = StartError("http.port", f"cannot listen on {self.conf.host}:{self.conf.port}: {exc.strerror} "
                               "(choose another [http] port, or set enable = false)")
            self.ready.set(error)
            raise error from None
        self._server.start()
        self.ready.set()
        self.images.base_url = (self.conf.public_url or self.url).rstrip("/")
        log.info("http: listening on %s%s", self.url, " (token required to register)" if self.conf.token else "")
        return self.url

    def is_alive(self) -> bool:
        return self._server is not None and self._server.serving()

    def stop(self, timeout: float = 5.0) -> bool:
        if self._server is not None and not self._server.stop(timeout):
            log.error("shutdown: an http connection did not end within %.1f s", timeout)
            return False
        return True

    # --- endpoint bodies (on connection threads) ---

    def check_token(self, header: str) -> None:
        if not self.conf.token:
            return
        given = header[7:] if header.startswith("Bearer ") else ""
        if not hmac.compare_digest(given.encode(), self.conf.token.encode()):
            raise HttpError(401, "missing or wrong token: send Authorization: Bearer <token>")

    def register(self, body: bytes) -> dict[str, Any]:
        req = _decode(_REGISTER, body)
        unknown = [t for t in req.task_types if t not in self.task_types]
        if unknown:
            raise HttpError(422, f"unknown task types {unknown}: not in frame_extractor.task_types - at `$.task_types`")
        parts = urlsplit(req.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(422, "endpoint must be an http:// or https:// URL with a host - at `$.endpoint`")
        sid = "" if req.service_id is UNSET else req.service_id  # "": the registry generates one
        info = ServiceInfo(service_id=sid, name=req.name, task_types=tuple(dict.fromkeys(req.task_types)),
                           endpoint=req.endpoint, version=req.version, max_concurrency=req.max_concurrency,
                           mode=req.mode)
        sid = self.registry.register(info)
        return {"ok": True, "service_id": sid, "heartbeat_timeout_sec": self.registry.heartbeat_timeout_sec}

    def heartbeat(self, sid: str, body: bytes) -> dict[str, Any]:
        stats = _decode(_HEARTBEAT, body) if body.strip() else None
        if not self.registry.heartbeat(sid, stats):
            raise HttpError(400, f"unknown service_id {sid!r} (evicted or never registered): register again")
        return {"ok": True}

    def unregister(self, sid: str) -> dict[str, Any]:
        if not self.registry.unregister(sid):
            raise HttpError(400, f"unknown service_id {sid!r}")
        return {"ok": True}

    def call(self, action: str, sid: str, body: bytes) -> dict[str, Any]:
        """One of the registry's calls (``_CALLS``), already routed and authorized."""
        if action == "register":
            return self.register(body)
        if action == "heartbeat":
            return self.heartbeat(sid, body)
        return self.unregister(sid)

    def algo_config(self, task_id: str) -> bytes:
        document = self.images.config(task_id)
        if document is None:
            raise HttpError(404, f"no task {task_id!r}")
        return document


def _service_call(method: str, path: str) -> tuple[str, str]:
    """``path`` under ``API`` as a registry call: (action, unquoted service id). 405 naming the verbs for a known call
    with another verb, 404 for anything else."""
    action, _, sid = path[len(API):].partition("/")
    known = _CALLS.get(action)
    if known is None or known[1] != bool(sid):
        raise HttpError(404, f"no such endpoint: {method} {path}")
    if method not in known[0]:
        raise HttpError(405, f"use {' or '.join(known[0])} for {path}")
    return action, unquote(sid)


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    if not body:
        raise HttpError(400, "empty body: expected a JSON object")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise HttpError(400, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise HttpError(400, f"not valid JSON: {exc}") from None


class _ApiHandler(JsonHandler):
    api: HttpApi

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.answer(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self.answer(lambda: self._call("POST"))

    def do_DELETE(self) -> None:  # noqa: N802
        self.answer(lambda: self._call("DELETE"))

    def _get(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/frames/"):
            jpeg = self.api.images.get(path[len("/frames/"):].removesuffix(".jpg"))
            if jpeg is None:
                raise HttpError(404, "no such frame in flight")
            self.send_body(200, jpeg, "image/jpeg")
        elif path == API + "services":
            services = self.api.registry.listing()
            self.send_json(200, {"services": services, "total": len(services)})
        elif path.startswith(ALGO_CONFIG_PATH) and len(path) > len(ALGO_CONFIG_PATH):
            self.send_body(200, self.api.algo_config(unquote(path[len(ALGO_CONFIG_PATH):])))
        elif path in ("/api/v1/status", "/metrics"):
            try:
                snap = self.api.snapshot()
            except Exception as exc:  # the supervisor is busy (shutting down) or gone
                raise HttpError(503, f"no snapshot available: {type(exc).__name__}") from None
            if path == "/metrics":
                self.send_body(200, exposition(snap).encode(), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self.send_json(200, snap)
        elif path.startswith(API):
            _service_call("GET", path)  # raises: 405 naming the verbs of a registry call, else 404
        else:
            raise HttpError(404, f"no such endpoint: GET {path}")

    def _call(self, method: str) -> None:
        body = self.read_body()  # first: a keep-alive connection must not keep an unread body
        path = urlsplit(self.path).path
        if not path.startswith(API):
            raise HttpError(405 if path.startswith(_GET_ONLY) else 404, f"no such endpoint: {method} {path}")
        action, sid = _service_call(method, path)
        self.api.check_token(self.headers.get("Authorization", ""))
        self.send_json(200, self.api.call(action, sid, body))
