"""Frame writer actor: encodes inferred frames to JPEG and puts them in storage, off the inference threads.

Messages: ``StoreFrame`` (from inference actors). Emits ``Stored`` to the retention actor for every object written,
and the alert (if any) to the alert actor, with ``image_stored`` telling whether its image made it.

Bounded: when more than ``max_backlog`` frames wait in the mailbox (storage slower than inference), a frame is not
stored but counted (``store_failed``), and its alert still goes out, flagged. A storage error is handled the same
way, so an unreachable MinIO never stops inference or alerts, and storing resumes by itself when it returns.

Thread: ``writer``; the store is shared, thread-safe and owned by the supervisor.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import cv2
import msgspec
import pykka

from ..core.messages import StoreFrame, Stored
from ..core.metrics import Metrics
from ..storage.store import Store, StoreError

log = logging.getLogger(__name__)


class FrameWriterActor(pykka.ThreadingActor):
    def __init__(
        self,
        *,
        store: Store,
        retention: pykka.ActorRef[Any],
        alerts: pykka.ActorRef[Any],
        metrics: Metrics,
        frame_prefixes: dict[str, str | None],
        alert_prefixes: dict[str, str],
        jpeg_quality: int = 80,
        max_backlog: int = 64,
    ) -> None:
        super().__init__()
        self._store = store
        self._retention = retention
        self._alerts = alerts
        self._metrics = metrics
        self._frame_prefixes = frame_prefixes
        self._alert_prefixes = alert_prefixes
        self._params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        self._max_backlog = max_backlog
        self._failing = False

    def on_start(self) -> None:
        threading.current_thread().name = "writer"

    def on_receive(self, message: Any) -> None:
        match message:
            case StoreFrame():
                self._write(message)
            case _:
                log.warning("writer: unexpected message %r", type(message).__name__)

    def _write(self, msg: StoreFrame) -> None:
        task_id = msg.frame.task_id
        stored = False
        if self.actor_inbox.qsize() >= self._max_backlog:
            self._metrics.store_failed(task_id)
        else:
            stored = self._put_all(msg)
        if msg.alert is not None:
            self._alerts.tell(msgspec.structs.replace(msg.alert, image_stored=stored))

    def _put_all(self, msg: StoreFrame) -> bool:
        """Put the frame under each of its keys; True when the last one (the alert image, if any) was stored."""
        ok, jpeg = cv2.imencode(".jpg", msg.frame.image, self._params)
        if not ok:
            self._metrics.store_failed(msg.frame.task_id)
            return False
        data = jpeg.tobytes()
        targets = []
        if msg.frame_key is not None:
            targets.append((self._frame_prefixes[msg.frame.task_id], msg.frame_key))
        if msg.alert is not None and msg.alert.image_key is not None:
            targets.append((self._alert_prefixes[msg.frame.task_id], msg.alert.image_key))
        stored = True  # the last target is the alert image when there is an alert
        for prefix, key in targets:
            try:
                self._store.put(key, data)
                stored = True
            except StoreError as exc:
                stored = False
                self._metrics.store_failed(msg.frame.task_id)
                if not self._failing:
                    log.error("writer: storing failed, frames are counted as not stored until it recovers: %s", exc)
                self._failing = True
                continue
            if self._failing:
                log.info("writer: storing works again")
                self._failing = False
            self._retention.tell(Stored(task_id=msg.frame.task_id, prefix=prefix, key=key))  # type: ignore[arg-type]
        return stored
