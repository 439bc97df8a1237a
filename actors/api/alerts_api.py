"""The old system's alert query API, answered from the alert history (``alerts.history``).

- ``GET /api/v1/alerts?task_id=&task_type=&min_detections=&max_detections=&start_time=&end_time=&page=&page_size=``
  -> ``{"items": [...], "total": N}``
- ``GET /api/v1/alerts/{id}`` -> ``{"alert": {...}}`` (404 for an unknown id)
- ``DELETE /api/v1/alerts/{id}`` -> ``{"ok": true}`` (404 for an unknown id; needs the token)
- ``GET /api/v1/alerts/task_ids`` -> ``{"task_ids": [...]}`` (sorted)
- ``GET /api/v1/alerts/{id}/image`` -> the alert's image (JPEG, read from storage by its ``image_path``): the
  console's thumbnails and detail view; 404 when the alert has none (``image_stored`` false) or it was deleted

Items are the records exactly as the sink wrote them (the alert schema: the old row, then framewatch's fields), newest
first (``created_at``, then ``id``). Parameters are all optional; an empty one (``task_id=``, as the old console sends
them) is no filter; unknown ones are ignored. ``min_detections``/``max_detections`` are inclusive counts >= 0;
``start_time``/``end_time`` inclusive times (``history.time_ms``: RFC 3339, the old console's local
``2026-11-29 06:25:54`` or ``2026-11-29``, Unix seconds or ms); ``page`` >= 1 (default 1), ``page_size`` 1-1000
(default 20). A bad value is a 400 naming the parameter; the history off or failing is a 503 saying why.

Wiring (the HTTP server does it, on its connection threads): ``handle`` answers a path under ``/api/v1/alerts`` and
returns None for any other; before calling it for a write (``is_write``: the DELETE), the server checks the token
(``HttpApi.check_token``) as for the registry's writes. Errors are raised as ``HttpError`` for the server to answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import parse_qs, unquote

import msgspec

from ..alerts.history import AlertQuery, History, HistoryError, time_ms
from .http import HttpError

PREFIX = "/api/v1/alerts"
TASK_IDS = PREFIX + "/task_ids"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 20
#: Beyond it ``(page - 1) * page_size`` would not be a reasonable SQLite offset (nor a reasonable request).
MAX_PAGE = 1_000_000_000
JSON = "application/json"

_OK = b'{"ok":true}'


class _ImageFields(msgspec.Struct):
    """What ``{id}/image`` reads of a record (the key comes from the history, never from the request)."""

    image_path: str = ""
    image_stored: bool = False

T = TypeVar("T")


class AlertsApi:
    """The alert query API over a ``History`` (None: the history is off, every call answers 503 with ``off_reason``).

    Thread-safe: the history opens a connection per read. ``prefix`` is for the HTTP server's route table
    (``http.Routes``): it routes ``/api/v1/alerts`` and everything under ``/api/v1/alerts/`` here."""

    prefix = PREFIX + "/"

    def __init__(self, history: History | None, off_reason: str = "alerts.history_path is empty", *,
                 images: Callable[[str], bytes | None] | None = None) -> None:
        """``images``: reads a stored image by its key (None when it is not there), for ``{id}/image``."""
        self.history = history
        self.off_reason = off_reason
        self.images = images

    @staticmethod
    def owns(path: str) -> bool:
        """Whether ``path`` (without its query string) is this API's."""
        return path == PREFIX or path.startswith(PREFIX + "/")

    @classmethod
    def is_write(cls, method: str, path: str) -> bool:
        """Whether the call changes the history (the server checks the token first): DELETE of an alert."""
        return method == "DELETE" and cls.owns(path)

    def handle(self, method: str, path: str, query: str, body: bytes) -> tuple[int, bytes, str] | None:
        """Answer ``method path?query`` as (status, body, content type); None when ``path`` is not this API's.
        Raises HttpError (400 bad parameter, 404 unknown alert or path, 405 wrong verb, 503 history off/failing).
        ``body`` is unused (no call of this API takes one); the server has read it already."""
        if not self.owns(path):
            return None
        rest = path[len(PREFIX):].strip("/")
        if not rest:
            _allow(method, path, "GET")
            return 200, self._list(query), JSON
        if path.rstrip("/") == TASK_IDS:
            _allow(method, path, "GET")
            return 200, msgspec.json.encode({"task_ids": self._history().task_ids()}), JSON
        if rest.endswith("/image") and rest.count("/") == 1:
            _allow(method, path, "GET")
            return 200, self._image(_alert_id(unquote(rest.split("/")[0]))), "image/jpeg"
        if "/" in rest:
            raise HttpError(404, f"no such endpoint: {method} {path}")
        _allow(method, path, "GET", "DELETE")
        alert_id = _alert_id(unquote(rest))
        if method == "DELETE":
            if not self._call(lambda h: h.delete(alert_id)):
                raise HttpError(404, f"no alert {alert_id}")
            return 200, _OK, JSON
        record = self._call(lambda h: h.get(alert_id))
        if record is None:
            raise HttpError(404, f"no alert {alert_id}")
        return 200, b'{"alert":' + record + b"}", JSON

    def _image(self, alert_id: int) -> bytes:
        record = self._call(lambda h: h.get(alert_id))
        if record is None:
            raise HttpError(404, f"no alert {alert_id}")
        fields = msgspec.json.decode(record, type=_ImageFields)
        if not fields.image_stored or not fields.image_path or self.images is None:
            raise HttpError(404, f"alert {alert_id} has no stored image")
        jpeg = self.images(fields.image_path)
        if jpeg is None:
            raise HttpError(404, f"the image of alert {alert_id} is gone (retention deleted it, or storage is down)")
        return jpeg

    def _list(self, query: str) -> bytes:
        q = parse_query(query)
        page = self._call(lambda h: h.query(q))
        return b'{"items":[' + b",".join(page.records) + b'],"total":' + str(page.total).encode() + b"}"

    def _history(self) -> History:
        if self.history is None:
            raise HttpError(503, f"the alert history is off: {self.off_reason}")
        return self.history

    def _call(self, call: Callable[[History], T]) -> T:
        """``call(history)``, its HistoryError a 503 (the file is disabled, damaged, or locked too long)."""
        history = self._history()
        try:
            return call(history)
        except HistoryError as exc:
            raise HttpError(503, str(exc)) from None


def parse_query(query: str) -> AlertQuery:
    """The list call's query string as an ``AlertQuery``; raises HttpError 400 naming the first bad parameter.
    A parameter given twice counts once, its last value; empty values are no filter."""
    given = {k: v[-1].strip() for k, v in parse_qs(query, keep_blank_values=True).items() if v[-1].strip()}
    low = _count(given, "min_detections")
    high = _count(given, "max_detections")
    if low is not None and high is not None and low > high:
        raise HttpError(400, f"min_detections ({low}) is above max_detections ({high})")
    start = _time(given, "start_time")
    end = _time(given, "end_time")
    if start is not None and end is not None and start > end:
        raise HttpError(400, f"start_time ({given['start_time']}) is after end_time ({given['end_time']})")
    return AlertQuery(task_id=given.get("task_id"), task_type=given.get("task_type"), min_detections=low,
                      max_detections=high, start_ms=start, end_ms=end,
                      page=_int(given, "page", 1, MAX_PAGE) or 1,
                      page_size=_int(given, "page_size", 1, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE)


def _int(given: dict[str, str], name: str, low: int, high: int) -> int | None:
    text = given.get(name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise HttpError(400, f"{name} must be an integer from {low} to {high:,}, got {text!r}")
    return value


def _count(given: dict[str, str], name: str) -> int | None:
    return _int(given, name, 0, 2**31 - 1)


def _time(given: dict[str, str], name: str) -> int | None:
    text = given.get(name)
    if text is None:
        return None
    try:
        return time_ms(text)
    except (ValueError, OverflowError, OSError):
        raise HttpError(400, f"{name} is not a time: {text!r}; send RFC 3339 (2026-11-29T06:25:54Z, "
                             "2026-11-29T14:25:54+08:00), local 2026-11-29 14:25:54 or 2026-11-29, "
                             "or Unix seconds or milliseconds") from None


def _alert_id(text: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 16:
        raise HttpError(400, f"id must be an alert's numeric id, got {text!r}")
    return int(text)


def _allow(method: str, path: str, *methods: str) -> None:
    if method not in methods:
        raise HttpError(405, f"use {' or '.join(methods)} for {path}")
