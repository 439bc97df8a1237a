"""The old task-management API (``/api/v1/frame_extractor/...``): cameras changed at run time, persisted to the conf.

Endpoints (JSON; errors ``{"error": reason}`` with a 4xx status; writes need the token when one is configured):

- ``GET tasks`` -> ``{"tasks": [Task], "total": N}``; ``GET tasks/{id}`` -> ``{"task": Task}``. A Task is the task's
  conf entry (every key, old and framewatch's), plus ``running`` and ``status`` (its camera's stats, or null);
- ``POST tasks`` (a task entry) -> ``{"ok": true, "task": Task}``; 409 when the id exists;
  ``DELETE tasks/{id}`` -> ``{"ok": true}``;
- ``POST tasks/{id}/start`` | ``stop`` (``enabled`` true/false), ``PUT tasks/{id}/interval`` ``{"interval_ms"}``,
  ``PUT tasks/{id}/save_alert_image`` ``{"save_alert_image"}`` -> ``{"ok": true, "task": Task}``;
- ``GET tasks/{id}/status`` -> ``{"task_id", "running", "status"}``;
- ``GET tasks/{id}/preview`` and ``GET snapshots/{id}``: the camera's latest frame as JPEG (``ingest.preview``: at
  most one conversion per camera per second, whoever asks); 404 before its first frame;
- ``GET tasks/{id}/config`` -> its algo_config (the old format); ``POST tasks/{id}/config`` (an algo_config) ->
  ``{"ok": true}``, ``config_status`` becomes ``configured``; ``POST tasks/{id}/start_with_config``: both at once;
- ``POST tasks/batch/start`` | ``batch/stop`` ``{"task_ids": [...]}`` -> ``{"ok": true, "results": {id: "ok" |
  reason}}`` (one change for all of them);
- ``GET task_types`` -> ``{"task_types": [...]}``; ``GET stats``: the stats snapshot;
- ``GET config`` -> ``{"frame_extractor": {...}}`` (MinIO secrets masked); ``POST config`` with the same shape
  replaces the task list; any other key must keep its value (409 naming it: it changes only at a restart).

A change is checked as a whole conf (``check_config``: 422 with the key path, e.g.
``$.frame_extractor.tasks[4].rtsp_url``), then written to the conf file (``core.conffile``), then applied by the
supervisor (``ApplyTasks``): only the cameras whose task changed stop or start. Nothing is written or applied when
the check fails. Changes are serialized by one lock: the API is the conf's only writer while framewatch runs.
Task ids from the path are only ever looked up among the conf's tasks: they never reach the filesystem.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any
from urllib.parse import unquote

import msgspec
from msgspec import Meta

from ..core.conffile import ConfFile, ConfFileError
from ..core.config import Config, ConfigError, PositiveMs, TaskConf, check_config
from ..core.metrics import Snapshot
from ..ingest.preview import Preview
from .http import HttpError, decode_body

log = logging.getLogger(__name__)

__all__ = ["PREFIX", "TasksApi"]

PREFIX = "/api/v1/frame_extractor/"
Reply = tuple[int, bytes, str]
_JSON = msgspec.json.Encoder()


class IntervalBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    interval_ms: PositiveMs


class SaveAlertImageBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    save_alert_image: bool


class BatchBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    task_ids: Annotated[list[str], Meta(min_length=1, max_length=1000)]


_TASK = msgspec.json.Decoder(TaskConf)
_ALGO = msgspec.json.Decoder(dict[str, Any])
_INTERVAL = msgspec.json.Decoder(IntervalBody)
_SAVE_IMAGE = msgspec.json.Decoder(SaveAlertImageBody)
_BATCH = msgspec.json.Decoder(BatchBody)
_CONFIG = msgspec.json.Decoder(dict[str, Any])


class TasksApi:
    """The task endpoints over the running conf (see the module docstring)."""

    def __init__(self, cfg: Config, *, conf_file: ConfFile, apply: Callable[[Config], Any],
                 snapshot: Callable[[], Snapshot], preview: Callable[[str], Preview | None]) -> None:
        """``apply``: have the supervisor run a new conf's tasks (raises on failure); ``preview``: a camera's
        latest-frame holder by task id (None for a task that never ran)."""
        self._cfg = cfg
        self._conf_file = conf_file
        self._apply = apply
        self._snapshot = snapshot
        self._preview = preview
        self._lock = threading.Lock()

    @property
    def config(self) -> Config:
        return self._cfg

    prefix = PREFIX

    def handle(self, method: str, path: str, query: str, body: bytes) -> Reply:
        """Answer one request under ``PREFIX`` (already authorized when it is a write; no endpoint takes a query);
        raises ``HttpError``."""
        parts = [unquote(p) for p in path[len(PREFIX):].split("/")]
        match method, parts:
            case "GET", ["tasks"]:
                snap = self._try_snapshot()
                tasks = [self._view(t, snap) for t in self._cfg.frame_extractor.tasks]
                return _ok({"tasks": tasks, "total": len(tasks)})
            case "POST", ["tasks"]:
                return self._add(body)
            case "POST", ["tasks", "batch", ("start" | "stop") as action]:
                return self._batch(action == "start", body)
            case "GET", ["tasks", task_id]:
                return _ok({"task": self._view(self._task(task_id), self._try_snapshot())})
            case "DELETE", ["tasks", task_id]:
                self._task(task_id)
                self._change(lambda tasks: [t for t in tasks if t.id != task_id])
                return _ok({"ok": True})
            case "POST", ["tasks", task_id, ("start" | "stop") as action]:
                return self._edit(task_id, enabled=action == "start")
            case "PUT", ["tasks", task_id, "interval"]:
                return self._edit(task_id, interval_ms=decode_body(_INTERVAL, body).interval_ms)
            case "PUT", ["tasks", task_id, "save_alert_image"]:
                return self._edit(task_id, save_alert_image=decode_body(_SAVE_IMAGE, body).save_alert_image)
            case "GET", ["tasks", task_id, "status"]:
                task = self._task(task_id)
                snap = self._try_snapshot()
                return _ok({"task_id": task.id, "running": self._running(task), "status": _status(task, snap)})
            case "GET", ["tasks", task_id, "preview"] | ["snapshots", task_id]:
                return self._preview_jpeg(self._task(task_id))
            case "GET", ["tasks", task_id, "config"]:
                return _ok(self._task(task_id).algo_config)
            case "POST", ["tasks", task_id, "config"]:
                self._edit(task_id, algo_config=decode_body(_ALGO, body), config_status="configured")
                return _ok({"ok": True})
            case "POST", ["tasks", task_id, "start_with_config"]:
                return self._edit(task_id, algo_config=decode_body(_ALGO, body), config_status="configured",
                                  enabled=True)
            case "GET", ["task_types"]:
                return _ok({"task_types": list(self._cfg.frame_extractor.task_types)})
            case "GET", ["stats"]:
                return _ok(self._snapshot())
            case "GET", ["config"]:
                return _ok({"frame_extractor": _masked(self._cfg)})
            case "POST", ["config"]:
                return self._post_config(body)
        raise HttpError(404, f"no such endpoint: {method} {path}")

    # --- reads ---

    def _task(self, task_id: str) -> TaskConf:
        for task in self._cfg.frame_extractor.tasks:
            if task.id == task_id:
                return task
        raise HttpError(404, f"no task {task_id!r}")

    def _running(self, task: TaskConf) -> bool:
        return task.enabled and self._cfg.frame_extractor.enable

    def _try_snapshot(self) -> Snapshot | None:
        try:
            return self._snapshot()
        except Exception as exc:  # the supervisor is busy stopping: tasks are still listed, without numbers
            log.debug("tasks api: no snapshot: %s", exc)
            return None

    def _view(self, task: TaskConf, snap: Snapshot | None) -> dict[str, Any]:
        """The task as the old console read it: the keys a task leaves unset carry the value in effect (the global
        interval, the default frame count...), as the old server answered them."""
        cfg = self._cfg
        view: dict[str, Any] = msgspec.to_builtins(task)
        view["interval_ms"] = cfg.task_interval_ms(task)
        view["max_frame_count"] = cfg.task_max_frame_count(task)
        view["save_alert_image"] = cfg.task_save_alert_image(task)
        if task.config_status is None:
            view["config_status"] = "configured" if task.algo_config.get("regions") else "unconfigured"
        view["running"] = self._running(task)
        view["status"] = _status(task, snap)
        return view

    def _preview_jpeg(self, task: TaskConf) -> Reply:
        holder = self._preview(task.id)
        latest = holder.jpeg() if holder is not None else None
        if latest is None:
            raise HttpError(404, f"no frame of task {task.id!r} yet" + ("" if self._running(task) else
                                                                        " (it is stopped)"))
        return 200, latest[0], "image/jpeg"

    # --- writes ---

    def _add(self, body: bytes) -> Reply:
        task = decode_body(_TASK, body)
        if any(t.id == task.id for t in self._cfg.frame_extractor.tasks):
            raise HttpError(409, f"task {task.id!r} exists: change it, or delete it first - at `$.id`")
        self._change(lambda tasks: [*tasks, task])
        return _ok({"ok": True, "task": self._view(self._task(task.id), None)})

    def _edit(self, task_id: str, **changes: Any) -> Reply:
        self._task(task_id)
        algo = frozenset({task_id}) if "algo_config" in changes else frozenset()
        self._change(lambda tasks: [msgspec.structs.replace(t, **changes) if t.id == task_id else t for t in tasks],
                     algo_changed=algo)
        return _ok({"ok": True, "task": self._view(self._task(task_id), None)})

    def _batch(self, enabled: bool, body: bytes) -> Reply:
        ids = decode_body(_BATCH, body).task_ids
        known = {t.id for t in self._cfg.frame_extractor.tasks}
        results = {i: "ok" if i in known else f"no task {i!r}" for i in ids}
        if not known.intersection(ids):
            raise HttpError(404, f"none of these tasks exists: {ids}")
        wanted = set(ids)
        self._change(lambda tasks: [msgspec.structs.replace(t, enabled=enabled) if t.id in wanted else t
                                    for t in tasks])
        return _ok({"ok": True, "results": results})

    def _post_config(self, body: bytes) -> Reply:
        document = decode_body(_CONFIG, body)
        fe = document.get("frame_extractor", document)
        if not isinstance(fe, dict) or "tasks" not in fe:
            raise HttpError(400, "expected {\"frame_extractor\": {..., \"tasks\": [...]}} - at `$.frame_extractor.tasks`")
        current = _masked(self._cfg)
        for key, value in fe.items():
            if key in ("tasks", "minio"):
                continue
            if key not in current:
                raise HttpError(400, f"unknown key - at `$.frame_extractor.{key}`")
            if value != current[key]:
                raise HttpError(409, f"only the tasks change at run time; this key changes at a restart "
                                     f"(edit the conf file) - at `$.frame_extractor.{key}`")
        try:
            tasks = msgspec.convert(fe["tasks"], list[TaskConf])
        except msgspec.ValidationError as exc:
            raise HttpError(422, f"{exc}".replace("`$", "`$.frame_extractor.tasks", 1)) from None
        old = {t.id: t for t in self._cfg.frame_extractor.tasks}
        algo = frozenset(t.id for t in tasks if t.id in old and t.algo_config != old[t.id].algo_config)
        self._change(lambda _: tasks, algo_changed=algo)
        return _ok({"ok": True})

    def _change(self, edit: Callable[[list[TaskConf]], Sequence[TaskConf]],
                algo_changed: frozenset[str] = frozenset()) -> None:
        """Check, persist, apply one change of the task list; nothing is written or applied if the check fails."""
        with self._lock:
            cfg = self._cfg
            old = list(cfg.frame_extractor.tasks)
            new = list(edit(old))
            candidate = _with_tasks(cfg, new)
            try:
                check_config(candidate)
            except ConfigError as exc:
                raise HttpError(422, str(exc)) from None
            try:
                saved = self._conf_file.save(old, new, algo_changed)
            except ConfFileError as exc:
                raise HttpError(500, f"not changed: {exc}") from None
            self._cfg = candidate = _with_tasks(cfg, saved)
            started = time.monotonic()
            try:
                self._apply(candidate)
            except Exception as exc:
                log.error("tasks: saved but not applied: %s", exc)
                raise HttpError(500, f"saved to the conf, but not applied: {type(exc).__name__}: {exc}") from None
            log.debug("tasks: change applied in %.0f ms", (time.monotonic() - started) * 1000)


def _with_tasks(cfg: Config, tasks: Sequence[TaskConf]) -> Config:
    return msgspec.structs.replace(cfg, frame_extractor=msgspec.structs.replace(cfg.frame_extractor,
                                                                                tasks=list(tasks)))


def _status(task: TaskConf, snap: Snapshot | None) -> Any:
    camera = snap.cameras.get(task.id) if snap is not None else None
    return msgspec.to_builtins(camera) if camera is not None else None


def _masked(cfg: Config) -> dict[str, Any]:
    """The frame_extractor table without its tasks, MinIO's keys masked."""
    fe: dict[str, Any] = msgspec.to_builtins(cfg.frame_extractor)
    fe.pop("tasks", None)
    minio = fe.get("minio")
    if isinstance(minio, dict):
        for key in ("access_key", "secret_key"):
            if minio.get(key):
                minio[key] = "***"
    return fe


def _ok(obj: Any) -> Reply:
    return 200, _JSON.encode(obj), "application/json"
