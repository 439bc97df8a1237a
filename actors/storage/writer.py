"""Frame writer actor: encodes inferred frames to JPEG and puts them in storage, off the inference threads.

Messages: ``StoreFrame`` (from inference actors). Every object goes through ``ObjectWriter.put``, the only code that
puts into storage: it stores the object and tells the retention actor (``Stored``), so every object framewatch
stores is in the retention index, whoever stored it. A frame is encoded once: a remote backend that already encoded
(and, for a presigned URL, stored) it hands the JPEG along in ``StoreFrame.jpeg``. The alert (if any) then goes to
the alert actor, with ``image_stored`` telling whether its image made it and, in MinIO, ``image_url`` a presigned
URL of it.

Bounded: when more than ``max_backlog`` frames wait in the mailbox (storage slower than inference), a frame is not
stored but counted (``store_failed``), and its alert still goes out, flagged. A storage error is handled the same
way, so an unreachable MinIO never stops inference or alerts, and storing resumes by itself when it returns.

Thread: ``writer``; the store is shared and thread-safe. A crash (a bug, not a storage error) forwards the alert of
the frame being written, unstored, and hands the unread mailbox to the writer's link: the next incarnation stores it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import cv2
import msgspec
import pykka

from ..core.messages import Alert, Stored, StoreFrame
from ..core.metrics import Metrics
from ..core.logstate import StateLog
from ..core.supervision import ChildActor, Link
from .reserve import DiskReserve
from .store import Store, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from ..inference.slot import TaskRoute

log = logging.getLogger(__name__)

#: Validity of an alert's ``image_url``: the old system's 24 h, since consumers open it long after the record arrived.
ALERT_URL_EXPIRES_SEC = 24 * 3600


class ObjectWriter:
    """Put an object and index it: one call, so nothing stored escapes retention. Thread-safe."""

    def __init__(self, store: Store, retention: Link, metrics: Metrics, reserve: DiskReserve | None = None) -> None:
        """``reserve``: the local volume's free-space reserve (None: storage is not on a local disk)."""
        self.store = store
        self.reserve = reserve
        self._retention = retention
        self._metrics = metrics
        # An unreachable store reports its own outage; what else makes a put fail (a refused write, a full disk) is
        # reported here, once per change.
        self._state = StateLog(log, "writer: storing (frames are counted as not stored until it works)")

    def put(self, task_id: str, prefix: str, key: str, data: bytes) -> bool:
        if self.reserve is not None and not self.reserve.allows():
            self._metrics.store_failed(task_id)
            return False
        try:
            self.store.put(key, data)
        except StoreUnavailable:
            self._metrics.store_failed(task_id)
            return False
        except StoreError as exc:
            self._metrics.store_failed(task_id)
            self._state.down(str(exc))
            return False
        self._state.up()
        self._retention.tell(Stored(task_id=task_id, prefix=prefix, key=key))
        return True


def encode_jpeg(image: Any, quality: int) -> bytes | None:
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return jpeg.tobytes() if ok else None


class FrameWriterActor(ChildActor):
    thread_name = "writer"

    def __init__(
        self,
        *,
        objects: ObjectWriter,
        alerts: Link,
        metrics: Metrics,
        routes: Mapping[str, TaskRoute],
        jpeg_quality: int = 80,
        max_backlog: int = 64,
        **child: Any,
    ) -> None:
        super().__init__(**child)
        self._objects = objects
        self._alerts = alerts
        self._metrics = metrics
        self._routes = routes
        self._quality = jpeg_quality
        self._max_backlog = max_backlog
        self._current: StoreFrame | None = None

    def on_receive(self, message: Any) -> None:
        match message:
            case StoreFrame():
                self._current = message
                self._write(message)
                self._current = None
            case _:
                log.warning("writer: unexpected message %r", type(message).__name__)

    def on_crash(self, exc: BaseException) -> None:
        current, self._current = self._current, None
        if current is not None and current.alert is not None:
            self._forward(self._finished(current.alert, stored=False))
        self.requeue_unread()

    def _finished(self, alert: Alert, *, stored: bool) -> Alert:
        """The alert as it leaves: whether its image is stored, and then, in MinIO, a presigned URL of it."""
        url = ""
        presign = getattr(self._objects.store, "presigned_url", None)  # only stores with URLs have it (MinIO)
        if stored and alert.image_key and presign is not None:
            try:
                url = presign(alert.image_key, ALERT_URL_EXPIRES_SEC)
            except StoreError:
                pass  # stored all the same; the record says so, without a URL
        return msgspec.structs.replace(alert, image_stored=stored, image_url=url)

    def _forward(self, alert: Alert) -> None:
        try:
            self._alerts.tell(alert)
        except pykka.ActorDeadError:  # the alert actor was given up: framewatch is escalating, count what it misses
            self._metrics.alerts_lost(1)
            log.error("writer: alert %s dropped: the alert actor is stopped", alert.id)

    def _write(self, msg: StoreFrame) -> None:
        task_id = msg.frame.task_id
        stored = False
        if self.actor_inbox.qsize() >= self._max_backlog:
            self._metrics.store_failed(task_id)
        else:
            stored = self._put_all(msg)
        if msg.alert is not None:
            self._forward(self._finished(msg.alert, stored=stored))

    def _put_all(self, msg: StoreFrame) -> bool:
        """Put the frame under each of its keys not stored yet; True when the last one (the alert image, if any) was
        stored."""
        task_id = msg.frame.task_id
        route = self._routes[task_id]
        targets = []
        if msg.frame_key is not None and not msg.frame_stored and route.frame_prefix is not None:
            targets.append((route.frame_prefix, msg.frame_key))
        keeps_image = route.save_alert_image  # False: this task's alerts go out without an image
        has_image = msg.alert is not None and msg.alert.image_key is not None and keeps_image
        if has_image and not msg.image_stored:
            targets.append((route.alert_prefix, msg.alert.image_key))  # type: ignore[union-attr]
        if not targets:  # nothing new to store: an event's later record pointing at its stored image, or no image
            return has_image
        data = msg.jpeg or encode_jpeg(msg.frame.image, self._quality)
        if data is None:
            self._metrics.store_failed(task_id)
            return False
        stored = True  # the last target is the alert image when there is an alert
        for prefix, key in targets:
            stored = self._objects.put(task_id, prefix, key, data)
        return stored and (keeps_image or msg.alert is None)
