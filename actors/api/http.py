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
- ``GET /frames/{token}.jpg``: a frame being inferred by a remote service in mode ``url``, only while in flight;
- route groups (``Routes``) under their prefixes: the task-management API (``tasks_api``, ``/api/v1/frame_extractor/``)
  and the alert history (``alerts_api``, ``/api/v1/alerts``);
- ``GET /``: the web console (``console/index.html``), ``GET /console/<name>``: its other files, read once at start;
  a name that is not one of them is a 404 (no request path ever reaches the filesystem).

With a token configured (compared in constant time), every write needs ``Authorization: Bearer <token>`` (401
otherwise): register/heartbeat/unregister and every request other than GET to a route group; with
``token_for_reads`` every GET too, but for the console's files and ``/frames/``.
Bodies larger than ``max_body_bytes`` get 413 without being read. Each body has one typed decoder, built once; a body
that is not JSON, not UTF-8 or not the right shape is a 400 naming why, from every endpoint (``JsonHandler.answer``).

Registration limits (422 with the reason unless said otherwise): the endpoint's port must be 1-65535, it may not
carry ``user:password@``, may not be link-local or a cloud metadata service (``allow_link_local``), and with
``service_networks`` its addresses must be in them (``check_endpoint_address``); at ``max_services`` a new service
gets 429.

Server: ``HttpServer`` (``api.server``), on the standard library's request parser, no framework. Threads:
``http`` runs a selector loop that accepts connections and reads every request head itself (a slow or idle client
holds a socket, never a thread); ``http:worker-N`` (``[http] workers``) answer complete requests. Connections are
capped (``max_connections``), heads, bodies, answers and idle keep-alive connections timed out; a client that goes
away is a debug line. ``HttpServer.stop`` closes the listener and every connection and joins every thread; the
supervisor owns it, starts it after the pipeline and stops it after inference has drained (remote services fetch
in-flight frames until then).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ..api.prometheus import exposition
from ..api.server import HttpError, HttpServer, JsonHandler, ServerStats, decode_body
from ..core.config import HttpConf, check_service_endpoint
from ..core.metrics import Snapshot
from ..core.supervision import Ready, StartError
from ..inference.registry import HeartbeatStats, Registry, RegistryFull, ServiceInfo
from ..inference.remote import ALGO_CONFIG_PATH, InflightImages

log = logging.getLogger(__name__)

__all__ = ["HttpApi", "HttpError", "HttpServer", "JsonHandler", "Routes", "decode_body"]  # the server's, re-exported

API = "/api/v1/ai_analysis/"
#: The built-in detector's slots are ``local-<k>``; a service's are ``<service_id>-<k>``: this id is not a service's.
LOCAL_SLOTS = "local"
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


# --- the framewatch API -------------------------------------------------------------------------------------------


Reply = tuple[int, bytes, str]  # status, body, content type


class Routes(Protocol):
    """A group of endpoints under one path prefix (``TasksApi``, ``AlertsApi``): ``handle`` answers or raises
    ``HttpError``. Every request other than GET is a write: the token is checked before ``handle`` runs."""

    prefix: str

    def handle(self, method: str, path: str, query: str, body: bytes) -> Reply | None:
        """The answer, or None when no endpoint of this group has that path (the next group is asked)."""
        ...


#: The console's static files (``console/``, shipped in the package): served at ``/`` and ``/console/<name>``.
CONSOLE_DIR = Path(__file__).with_name("console")
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
                  ".txt": "text/plain; charset=utf-8"}


def console_files(directory: Path = CONSOLE_DIR) -> dict[str, tuple[bytes, str]]:
    """The console's files by name, read once: a request names one of these or gets a 404, so no path from a
    request ever reaches the filesystem."""
    files: dict[str, tuple[bytes, str]] = {}
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            kind = _CONTENT_TYPES.get(path.suffix)
            if path.is_file() and kind is not None:
                files[path.name] = (path.read_bytes(), kind)
    return files


class HttpApi:
    """Owns the server; ``start`` returns once it listens, ``stop`` joins its threads. A supervised child's handle
    (``ready``, ``is_alive``, ``stop``): a port in use fails its start with a ``StartError`` naming ``http.port``."""

    def __init__(self, conf: HttpConf, *, registry: Registry, images: InflightImages,
                 snapshot: Callable[[], Snapshot], task_types: Sequence[str], routes: Sequence[Routes] = ()) -> None:
        self.conf = conf
        self.registry = registry
        self.images = images
        self.snapshot = snapshot
        self.task_types = frozenset(task_types)
        self.networks = conf.networks()
        self.routes = list(routes)
        self.console = console_files()
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
        if self.conf.token_for_reads and not self.conf.token:
            error = StartError("http.token_for_reads", "token_for_reads = true needs a token: set [http] token or "
                               "FRAMEWATCH_API_TOKEN (or token_for_reads = false)")
            self.ready.set(error)
            raise error
        conf = self.conf
        try:
            self._server = HttpServer((conf.host, conf.port), Handler, "http", workers=conf.workers,
                                      max_connections=conf.max_connections, head_timeout_sec=conf.head_timeout_sec,
                                      request_timeout_sec=conf.request_timeout_sec,
                                      keepalive_timeout_sec=conf.keepalive_timeout_sec,
                                      large_body_workers=conf.workers // 2)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)  # create_server appends the address
            error = StartError("http.port", f"cannot listen on {self.conf.host}:{self.conf.port}: {reason} "
                               "(choose another [http] port, or set enable = false)")
            self.ready.set(error)
            raise error from None
        self._server.start()
        self.ready.set()
        self.images.base_url = (self.conf.public_url or self.url).rstrip("/")
        guarded = " (token required for reads and writes)" if conf.token_for_reads else " (token required for writes)"
        log.info("http: listening on %s%s, %d workers, at most %d connections", self.url,
                 guarded if conf.token else "", conf.workers, conf.max_connections)
        return self.url

    def is_alive(self) -> bool:
        return self._server is not None and self._server.serving()

    def statistics(self) -> ServerStats | None:
        return self._server.statistics() if self._server is not None else None

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
        req = decode_body(_REGISTER, body)
        unknown = [t for t in req.task_types if t not in self.task_types]
        if unknown:
            raise HttpError(422, f"unknown task types {unknown}: not in frame_extractor.task_types - at `$.task_types`")
        parts = urlsplit(req.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(422, "endpoint must be an http:// or https:// URL with a host - at `$.endpoint`")
        try:
            check_service_endpoint(req.endpoint)
            check_endpoint_address(req.endpoint, self.networks, allow_link_local=self.conf.allow_link_local)
        except ValueError as exc:
            raise HttpError(422, f"{exc} - at `$.endpoint`") from None
        sid = "" if req.service_id is UNSET else req.service_id  # "": the registry generates one
        if sid == LOCAL_SLOTS:  # its slots would be named like the built-in detector's ("local-0")
            raise HttpError(422, f"service_id {sid!r} is reserved for the built-in detector - at `$.service_id`")
        info = ServiceInfo(service_id=sid, name=req.name, task_types=tuple(dict.fromkeys(req.task_types)),
                           endpoint=req.endpoint, version=req.version, max_concurrency=req.max_concurrency,
                           mode=req.mode)
        try:
            sid = self.registry.register(info, max_services=self.conf.max_services)
        except RegistryFull as exc:
            raise HttpError(429, str(exc)) from None
        return {"ok": True, "service_id": sid, "heartbeat_timeout_sec": self.registry.heartbeat_timeout_sec}

    def heartbeat(self, sid: str, body: bytes) -> dict[str, Any]:
        stats = decode_body(_HEARTBEAT, body) if body.strip() else None
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


def _open_to_read(path: str) -> bool:
    """Paths that stay open with ``token_for_reads``: the console's files (no data in them) and in-flight frames
    (each URL holds an unguessable token and lives only while its frame is inferred)."""
    return path in ("/", "/index.html", "/console") or path.startswith(("/console/", "/frames/"))


#: Cloud metadata services, by name and by the addresses that are not link-local (AWS IPv6, Alibaba Cloud).
_METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                             "instance-data.ec2.internal"})
_METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200"))
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_endpoint_address(url: str, networks: Sequence[Network], *, allow_link_local: bool) -> None:
    """A service endpoint's host must not be link-local or a cloud metadata service (unless ``allow_link_local``) and,
    with ``networks``, each of its addresses must be in one of them. A name is resolved (the one network call of a
    registration); one that does not resolve passes only when ``networks`` is empty. Raises ValueError."""
    host = (urlsplit(url).hostname or "").rstrip(".")
    if not allow_link_local and host in _METADATA_NAMES:
        raise ValueError(f"{host!r} is a cloud metadata service: refused (set [http] allow_link_local = true to "
                         "allow it)")
    addresses = _addresses(host)
    if addresses is None:
        if networks:
            raise ValueError(f"cannot resolve {host!r}, so its address cannot be checked against [http] "
                             "service_networks: register with an address, or fix the name")
        return
    for address in addresses:
        address = getattr(address, "ipv4_mapped", None) or address
        if not allow_link_local and (address.is_link_local or address in _METADATA_ADDRESSES):
            what = f"{address} is" if host == str(address) else f"{host!r} is at {address},"
            raise ValueError(f"{what} a link-local or metadata address: refused (set [http] allow_link_local = true "
                             "to allow it)")
        if networks and not any(address in network for network in networks):
            raise ValueError(f"{host!r} ({address}) is not in [http] service_networks "
                             f"({', '.join(str(n) for n in networks)})")


def _addresses(host: str) -> list[Address] | None:
    """The addresses of an endpoint's host: a literal (also the short IPv4 forms, ``2852039166``, ``0xa9fea9fe``,
    that connecting would accept) or the resolved name; None when the name does not resolve."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        return [ipaddress.ip_address(socket.inet_aton(host))]
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None
    return [ipaddress.ip_address(info[4][0].partition("%")[0]) for info in infos]


class _ApiHandler(JsonHandler):
    api: HttpApi

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.answer(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self.answer(lambda: self._call("POST"))

    def do_DELETE(self) -> None:  # noqa: N802
        self.answer(lambda: self._call("DELETE"))

    def do_PUT(self) -> None:  # noqa: N802
        self.answer(lambda: self._call("PUT"))

    def _routed(self, method: str, body: bytes) -> bool:
        """Answer from the route group whose prefix the path has; False when none has it."""
        parts = urlsplit(self.path)
        for routes in self.api.routes:
            if parts.path.startswith(routes.prefix) or parts.path == routes.prefix.rstrip("/"):
                if method != "GET":
                    self.api.check_token(self.headers.get("Authorization", ""))
                reply = routes.handle(method, parts.path, parts.query, body)
                if reply is not None:
                    self.send_body(*reply)
                    return True
        return False

    def _get(self) -> None:
        path = urlsplit(self.path).path
        if self.api.conf.token_for_reads and not _open_to_read(path):
            self.api.check_token(self.headers.get("Authorization", ""))
        if self._routed("GET", b""):
            return
        console = self.api.console
        if path in ("/", "/index.html", "/console", "/console/") and "index.html" in console:
            self.send_body(200, *console["index.html"])
        elif path.startswith("/console/"):
            found = console.get(path[len("/console/"):])
            if found is None:
                raise HttpError(404, f"no such console file: {path}")
            self.send_body(200, *found)
        elif path.startswith("/frames/"):
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
        if self._routed(method, body):
            return
        path = urlsplit(self.path).path
        if not path.startswith(API):
            raise HttpError(405 if path.startswith(_GET_ONLY) else 404, f"no such endpoint: {method} {path}")
        action, sid = _service_call(method, path)
        self.api.check_token(self.headers.get("Authorization", ""))
        self.send_json(200, self.api.call(action, sid, body))
