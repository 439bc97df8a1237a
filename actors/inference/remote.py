"""The client side of remote algorithm services: the old system's wire format, and the backend that calls a service.

Wire format (unchanged from the system being replaced, so its services work as they are):

- request, mode ``url``: ``POST <endpoint>`` with JSON ``{image_url, task_id, task_type, image_path, algo_config,
  algo_config_url}``. ``image_url`` is a presigned URL of the frame stored under its key (MinIO storage), or, with
  local storage (or when the task stores no plain frames), ``<framewatch>/frames/<token>.jpg`` served by framewatch's
  own HTTP API for that frame only while the call is in flight (an in-memory JPEG, removed when the call ends).
  ``image_path`` is the frame's storage key (or ``inflight/<token>.jpg``); ``algo_config`` is the task's conf,
  unchanged; ``algo_config_url`` is where the same object can be fetched as JSON: with MinIO storage, a presigned URL
  (24 h, as the old system's) of the object the old system kept, ``<task_type>/<task_id>/algo_config.json``, put once
  at start; otherwise (or when that put failed, or algo_config is empty)
  ``<framewatch>/api/v1/ai_analysis/algo_config/<task_id>``.
- request, mode ``inline`` (new, chosen per service at registration): ``POST <endpoint>?task_id=..&task_type=..
  &image_path=..&algo_config=<JSON>&algo_config_url=..`` (query string, URL-encoded) with the JPEG as the body,
  ``Content-Type: image/jpeg``. Nothing is stored only to be fetched back.
- response: JSON ``{success, result, confidence, inference_time_ms, error}``; ``inference_time_ms`` and
  ``confidence`` may be integers or floats, ``result`` is free-form (extras such as ``region_results`` or a
  detection's ``region_id``/``region_name`` are ignored). The detection count is read as the old system read it:
  ``result.total_count | count | num | len(detections) | len(objects)``. Items of ``detections`` (or ``objects``)
  may carry ``label``/``class``/``name``, ``score``/``confidence`` and ``box``/``bbox`` as ``[x1, y1, x2, y2]`` in
  pixels, or in fractions of the frame when every coordinate is <= 1.

What then: the detections with boxes go to the camera's analytics like the local detector's (tracked, the task type's
rule and regions applied, events), so a region or a threshold in ``algo_config`` means the same whichever backend
inferred. A service that reports a count without a box for every detection keeps the old system's rule: an event
while its count is above 0 (``analytics.actor``).

A failed call (connection refused or reset, timeout, HTTP status other than 200, a body that is not the response
JSON, ``success: false``) raises ``BackendUnavailable``: the inference actor opens the service's circuit and retries
the frame elsewhere. Connections are kept alive and pooled per slot (urllib3), with bounded connect and total timeouts;
a service that closes the connection after each answer (the old examples: ``http.server.HTTPServer``, HTTP/1.0) gets
a new connection per call, never a failed one (urllib3 drops a connection the answer said would close).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote, urlencode

import msgspec
import urllib3

from ..core.messages import Detection, Frame
from ..inference.registry import ServiceInfo
from ..inference.slot import BackendUnavailable, Inferred, TaskRoute
from ..storage.store import Store, StoreError, StoreUnavailable, join_key
from ..storage.writer import ObjectWriter, encode_jpeg

log = logging.getLogger(__name__)

INFLIGHT_PREFIX = "inflight/"
#: framewatch's HTTP API serves each task's algo_config at this path + the (URL-quoted) task id.
ALGO_CONFIG_PATH = "/api/v1/ai_analysis/algo_config/"
#: The object's name under ``<task_type>/<task_id>/`` in MinIO, as the old system stored it.
ALGO_CONFIG_NAME = "algo_config.json"
#: Validity of the presigned algo_config URL (the old system's); one is signed per request, locally.
ALGO_CONFIG_URL_SEC = 24 * 3600.0


class WireRequest(msgspec.Struct, frozen=True):
    image_url: str
    task_id: str
    task_type: str
    image_path: str
    algo_config: dict[str, Any]
    algo_config_url: str = ""  # a default, so a request of an older framewatch still decodes (reference service)


class WireResponse(msgspec.Struct, frozen=True):
    success: bool = False
    result: Any = None
    confidence: float | None = None
    inference_time_ms: float | None = None
    error: str | None = None


_RESPONSE = msgspec.json.Decoder(WireResponse)
_ENCODER = msgspec.json.Encoder()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_count(result: Any) -> int:
    """The old system's reading: ``total_count | count | num | len(detections) | len(objects)``."""
    if not isinstance(result, Mapping):
        return 0
    for key in ("total_count", "count", "num"):
        n = _number(result.get(key))
        if n is not None:
            return max(int(n), 0)
    for key in ("detections", "objects"):
        items = result.get(key)
        if isinstance(items, list):
            return len(items)
    return 0


def read_detections(result: Any, width: int, height: int) -> tuple[list[Detection], bool]:
    """Map whatever the items carry to ``Detection``; the flag says whether every item had a usable box."""
    if not isinstance(result, Mapping):
        return [], False
    items = result.get("detections")
    if not isinstance(items, list):
        items = result.get("objects")
    if not isinstance(items, list):
        return [], False
    found: list[Detection] = []
    boxed = True
    for item in items:
        if not isinstance(item, Mapping):
            boxed = False
            continue
        label = item.get("label", item.get("class", item.get("name", "object")))
        score = _number(item.get("score", item.get("confidence"))) or 0.0
        box = _read_box(item.get("box", item.get("bbox")), width, height)
        boxed = boxed and box is not None
        found.append(Detection(label=str(label), score=round(score, 4), box=box or (0, 0, 0, 0)))
    return found, boxed


def _read_box(raw: Any, width: int, height: int) -> tuple[int, int, int, int] | None:
    if not isinstance(raw, list | tuple) or len(raw) != 4:
        return None
    values = [_number(v) for v in raw]
    if any(v is None for v in values):
        return None
    x1, y1, x2, y2 = values  # type: ignore[misc]
    if max(values) <= 1.0:  # type: ignore[type-var]
        x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
    return int(x1), int(y1), int(x2), int(y2)


def decide(response: WireResponse, frame: Frame, route: TaskRoute, jpeg: bytes | None = None,
           frame_stored: bool = False) -> Inferred:
    """What the service found: its boxed detections (all of them, or none when some came without a box: then only
    its count speaks), its count, and its result as it answered."""
    h, w = frame.image.shape[:2]
    count = read_count(response.result)
    detections, boxed = read_detections(response.result, w, h)
    if not boxed:
        detections = []
    return Inferred(detections=detections, detected=count > 0 or bool(detections), count=count, jpeg=jpeg,
                    frame_stored=frame_stored, result=response.result)


# --- where a service fetches the frame from (mode "url") ----------------------------------------------------------


class ImageLink(NamedTuple):
    url: str
    image_path: str
    stored: bool  # put under the frame's storage key and indexed: the writer does not put it again
    token: str = ""  # an in-memory frame to forget when the call ends


class ImageLinks(Protocol):
    def publish(self, frame: Frame, route: TaskRoute, jpeg: bytes) -> ImageLink: ...

    def release(self, link: ImageLink) -> None: ...


class InflightImages:
    """What framewatch's HTTP API serves to remote services: JPEGs of frames being inferred remotely, at
    ``/frames/<token>.jpg`` while in flight, and each task's algo_config at ``ALGO_CONFIG_PATH<task_id>``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._images: dict[str, bytes] = {}
        self._configs: dict[str, bytes] = {}  # task id -> its algo_config as JSON (set at start, then read-only)
        self.base_url = ""  # set once the HTTP API is listening

    def publish(self, frame: Frame, route: TaskRoute, jpeg: bytes) -> ImageLink:
        token = uuid.uuid4().hex
        with self._lock:
            self._images[token] = jpeg
        path = route.frame_key(frame) or f"{INFLIGHT_PREFIX}{token}.jpg"
        return ImageLink(url=f"{self.base_url}/frames/{token}.jpg", image_path=path, stored=False, token=token)

    def release(self, link: ImageLink) -> None:
        with self._lock:
            self._images.pop(link.token, None)

    def get(self, token: str) -> bytes | None:
        with self._lock:
            return self._images.get(token)

    def __len__(self) -> int:
        with self._lock:
            return len(self._images)

    def serve_config(self, task_id: str, document: bytes) -> Callable[[], str]:
        """Serve ``document`` (the task's algo_config as JSON); returns the task's ``algo_config_url`` ("" until the
        HTTP API listens)."""
        with self._lock:
            self._configs[task_id] = document
        path = ALGO_CONFIG_PATH + quote(task_id, safe="")
        return lambda: f"{self.base_url}{path}" if self.base_url else ""

    def config(self, task_id: str) -> bytes | None:
        with self._lock:
            return self._configs.get(task_id)


class PresignedConfig:
    """A task's ``algo_config_url`` with MinIO storage: a presigned URL of its stored object, signed per request (a
    local HMAC: the bucket's region was cached by the put at start, so no request to the server), so a service never
    holds an expired one; framewatch's own URL if signing fails."""

    def __init__(self, store: Store, key: str, fallback: Callable[[], str]) -> None:
        self._store = store  # has presigned_url(key, expires_sec)
        self._key = key
        self._fallback = fallback

    def __call__(self) -> str:
        try:
            url: str = self._store.presigned_url(self._key, ALGO_CONFIG_URL_SEC)  # type: ignore[attr-defined]
        except StoreError:
            return self._fallback()
        return url


def publish_algo_config(store: Store, images: InflightImages, task_type: str, task_id: str,
                        algo_config: Mapping[str, Any]) -> Callable[[], str]:
    """Make a task's algo_config fetchable by remote services; returns its ``algo_config_url`` (see the module
    docstring). The object is put directly, not through the writer: it is not a frame, retention must not index it.
    A failed put (storage down at start) leaves the task on framewatch's own URL for this run. An empty algo_config
    is not put either: an object already there (written by the old system's console) is never overwritten with
    nothing."""
    document = _ENCODER.encode(algo_config)
    served = images.serve_config(task_id, document)
    if not algo_config or not hasattr(store, "presigned_url"):
        return served
    key = join_key(task_type, task_id, ALGO_CONFIG_NAME)
    try:
        store.put(key, document, "application/json")
    except StoreError as exc:
        level = logging.INFO if isinstance(exc, StoreUnavailable) else logging.WARNING  # the store logs its outage
        log.log(level, "task %s: %s not stored (%s); services fetch it from framewatch's HTTP API", task_id, key, exc)
        return served
    return PresignedConfig(store, key, served)


class PresignedImages:
    """MinIO storage: the frame is stored under its own key (it was going to be stored there anyway) through the
    writer's ``ObjectWriter``, so it is indexed by retention like any other, and presigned; the writer does not store
    it again. A task that stores no plain frames (``save_only_with_detection``), or a failed put, falls back to the
    in-memory URL."""

    def __init__(self, objects: ObjectWriter, fallback: InflightImages, expires_sec: float = 300.0) -> None:
        self._objects = objects  # its store has presigned_url(key, expires_sec)
        self._fallback = fallback
        self._expires = expires_sec

    def publish(self, frame: Frame, route: TaskRoute, jpeg: bytes) -> ImageLink:
        key = route.frame_key(frame)
        if key is not None and route.frame_prefix is not None \
                and self._objects.put(frame.task_id, route.frame_prefix, key, jpeg):
            try:
                url = self._objects.store.presigned_url(key, self._expires)  # type: ignore[attr-defined]
                return ImageLink(url=url, image_path=key, stored=True)
            except StoreError:
                pass  # stored and indexed all the same; the service gets the in-memory URL
        return self._fallback.publish(frame, route, jpeg)

    def release(self, link: ImageLink) -> None:
        self._fallback.release(link)


# --- the backend ----------------------------------------------------------------------------------------------------


class RemoteBackend:
    """One inference slot's connection to a registered service; created and used on that slot's actor thread."""

    def __init__(self, info: ServiceInfo, links: ImageLinks, *, connect_timeout_sec: float, timeout_sec: float,
                 jpeg_quality: int = 80) -> None:
        self.name = f"remote:{info.name}"
        self.algorithm_id = info.service_id
        self.algorithm_name = info.name
        self._info = info
        self._links = links
        self._quality = jpeg_quality
        self._http = urllib3.PoolManager(
            num_pools=1, maxsize=1, retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout_sec, total=timeout_sec),
        )

    def infer(self, frame: Frame, route: TaskRoute) -> Inferred:
        jpeg = encode_jpeg(frame.image, self._quality)
        if jpeg is None:
            raise BackendUnavailable("cannot encode the frame as JPEG")
        if self._info.mode == "inline":
            fields = {"task_id": frame.task_id, "task_type": frame.task_type,
                      "image_path": route.frame_key(frame) or "",
                      "algo_config": _ENCODER.encode(route.algo_config).decode(),
                      "algo_config_url": route.algo_config_url()}
            data = self._post(f"{self._info.endpoint}?{urlencode(fields)}", jpeg, "image/jpeg")
            return decide(data, frame, route, jpeg)
        link = self._links.publish(frame, route, jpeg)
        try:
            body = _ENCODER.encode(WireRequest(image_url=link.url, task_id=frame.task_id, task_type=frame.task_type,
                                               image_path=link.image_path, algo_config=route.algo_config,
                                               algo_config_url=route.algo_config_url()))
            data = self._post(self._info.endpoint, body, "application/json")
        finally:
            self._links.release(link)
        return decide(data, frame, route, jpeg, frame_stored=link.stored)

    def _post(self, url: str, body: bytes, content_type: str) -> WireResponse:
        try:
            resp = self._http.request("POST", url, body=body, headers={"Content-Type": content_type},
                                      preload_content=True, redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            raise BackendUnavailable(_reason(exc)) from None
        if resp.status != 200:
            raise BackendUnavailable(f"HTTP {resp.status}")
        try:
            data = _RESPONSE.decode(resp.data)
        except msgspec.DecodeError as exc:
            raise BackendUnavailable(f"bad response: {exc}") from None
        if not data.success:
            raise BackendUnavailable(f"service error: {data.error or 'success is false'}")
        return data

    def close(self) -> None:
        self._http.clear()


def _reason(exc: urllib3.exceptions.HTTPError) -> str:
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason  # type: ignore[assignment]
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "timeout"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "connection refused"
    return type(exc).__name__
