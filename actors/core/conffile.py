"""Writing task changes made at run time back into the conf file they came from, and nothing else of it.

The file may be the old server's whole ``config.toml`` (25 media-server tables, comments, the operator's layout), so
it is edited, not regenerated: ``tomlkit`` parses it keeping every byte of formatting, the ``[[frame_extractor.tasks]]``
entries are changed in place (a changed key is set, a key no longer given is removed, an unchanged task's table is
not touched at all, comments inside it included), new tasks are appended, removed ones deleted, and the document is
written back atomically (``core.atomic``: temp file, fsync, rename). Every other table comes out byte-identical.

A task's ``algo_config`` (regions drawn in the console) is written as the old console wrote it: a JSON file, the
task's ``algo_config_path``. A task that had none gets ``algo_configs/<id>.json`` beside the conf (the id made
safe for a file name), and its inline ``algo_config`` table, if any, is removed from the TOML: nested regions are
unreadable as TOML tables, and the JSON file is what algorithm services and the old console read.

Before anything is written the new text is decoded again as a whole conf; if it does not give back exactly the
tasks asked for, nothing is written (``ConfFileError``). ``tomlkit`` is chosen for being the one maintained
style-preserving TOML library (MIT licence); the standard library's ``tomllib`` only reads.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import tomlkit
from tomlkit.items import AoT, Table

from .atomic import write_atomic
from .config import ConfigError, TaskConf, decode_config

__all__ = ["ConfFile", "ConfFileError", "task_fields"]

#: Directory (beside the conf file) of the algo_config files framewatch creates.
ALGO_CONFIG_DIR = "algo_configs"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Written by framewatch as part of the task entry only when they are not the default.
_SKIPPED = ("algo_config", "algo_config_path")


class ConfFileError(Exception):
    """The file could not be read, edited or written; it was left as it was."""


def task_fields(task: TaskConf) -> dict[str, Any]:
    """The task's keys as a conf entry writes them: every field that is not at its default, in field order, without
    its algo_config (written apart: see the module docstring)."""
    fields: dict[str, Any] = {}
    for field in msgspec.structs.fields(TaskConf):
        if field.name in _SKIPPED:
            continue
        value = getattr(task, field.name)
        default = field.default if field.default is not msgspec.NODEFAULT else (
            field.default_factory() if field.default_factory is not msgspec.NODEFAULT else msgspec.NODEFAULT)
        if value is None or (default is not msgspec.NODEFAULT and value == default):
            continue
        fields[field.encode_name] = msgspec.to_builtins(value)
    return fields


def algo_config_file_name(task_id: str) -> str:
    """A file name for the task's algo_config that no id can turn into a path elsewhere: the id itself when it is a
    plain name, else a digest of it."""
    if _SAFE_NAME.match(task_id) and ".." not in task_id:
        return f"{task_id}.json"
    return f"task-{hashlib.sha256(task_id.encode()).hexdigest()[:16]}.json"


class ConfFile:
    """The conf file of a running framewatch (``path`` "" : nothing is persisted; ``persistent`` says which)."""

    def __init__(self, path: str) -> None:
        self.path = path

    @property
    def persistent(self) -> bool:
        return bool(self.path)

    def save(self, old: Sequence[TaskConf], new: Sequence[TaskConf], algo_changed: frozenset[str] = frozenset(),
             ) -> list[TaskConf]:
        """Write ``new`` as the file's task list (``old``: the list the file holds now, in its order).
        ``algo_changed``: ids whose algo_config changed (their JSON file is rewritten). Returns the tasks as they now
        are (a task given an algo_config file has its absolute ``algo_config_path``). Raises ``ConfFileError``."""
        if not self.persistent:
            return list(new)
        conf_path = Path(self.path)
        try:
            text = conf_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfFileError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            document = tomlkit.parse(text)
        except Exception as exc:  # tomlkit's parse errors share no base class worth naming
            raise ConfFileError(f"cannot parse {self.path} to edit it: {exc}") from None
        tables = self._task_tables(document)
        written = {str(_plain(t.get("id"))): t for t in tables}
        if [str(_plain(t.get("id"))) for t in tables] != [t.id for t in old]:
            raise ConfFileError(f"{self.path} was changed by someone else since it was loaded (its tasks differ); "
                                "restart framewatch to load it")

        before = {t.id: t for t in old}
        files: dict[Path, bytes] = {}
        final: list[TaskConf] = []
        keep: list[Table] = []
        for task in new:
            table = written.get(task.id)
            if table is not None and before[task.id] == task and task.id not in algo_changed:
                keep.append(table)  # unchanged: its table is not touched, comments and all
                final.append(task)
                continue
            fresh = table is None
            if table is None:
                table = tomlkit.table()
            _update(table, task)
            if task.id in algo_changed or (table.get("algo_config") is None and task.algo_config
                                           and task.algo_config_path is None):
                task = self._algo_file(task, conf_path, table, files)
            if fresh:
                table.add(tomlkit.nl())  # a blank line before whatever follows, as the tables around it have
            keep.append(table)
            final.append(task)
        self._replace_tables(document, tables, keep)
        rendered = tomlkit.dumps(document)
        self._verify(rendered, conf_path, final)
        try:
            for path, data in files.items():
                write_atomic(path, data)
            write_atomic(conf_path, rendered.encode("utf-8"))
        except OSError as exc:
            raise ConfFileError(f"cannot write {exc.filename or self.path}: {exc.strerror}") from None
        return final

    # --- editing ---

    @staticmethod
    def _task_tables(document: Any) -> list[Table]:
        fe = document.get("frame_extractor")
        if fe is None:
            return []
        tasks = fe.get("tasks")
        if tasks is None:
            return []
        if isinstance(tasks, AoT):
            return list(tasks)
        # ``tasks = [{...}, ...]`` written inline: re-made as an array of tables (this key's layout only changes).
        aot = tomlkit.aot()
        for item in _plain(tasks):
            table = tomlkit.table()
            table.update(item)
            aot.append(table)
        fe["tasks"] = aot
        return list(aot)

    @staticmethod
    def _replace_tables(document: Any, old: list[Table], keep: list[Table]) -> None:
        fe = document.get("frame_extractor")
        if fe is None:
            fe = document["frame_extractor"] = tomlkit.table()
        aot = fe.get("tasks")
        if not isinstance(aot, AoT):
            aot = fe["tasks"] = tomlkit.aot()
        # In place, so the array keeps its position in the file: drop the removed entries, then append the new ones.
        kept = {id(t) for t in keep}
        for index in reversed(range(len(aot))):
            if id(aot[index]) not in kept:
                del aot[index]
        present = {id(t) for t in aot}
        for table in keep:
            if id(table) not in present:
                aot.append(table)

    def _algo_file(self, task: TaskConf, conf_path: Path, table: Table, files: dict[Path, bytes]) -> TaskConf:
        """Give the task's algo_config its JSON file (queued in ``files``); drops an inline one from ``table``."""
        if task.algo_config_path is not None:
            target = Path(task.algo_config_path)
            if not target.is_absolute():
                target = conf_path.parent / target
        else:
            name = f"{ALGO_CONFIG_DIR}/{algo_config_file_name(task.id)}"
            target = conf_path.parent / name
            table["algo_config_path"] = name
        if "algo_config" in table:
            del table["algo_config"]
        files[target] = msgspec.json.format(msgspec.json.encode(task.algo_config), indent=2) + b"\n"
        return msgspec.structs.replace(task, algo_config_path=os.path.abspath(target))

    def _verify(self, rendered: str, conf_path: Path, expected: list[TaskConf]) -> None:
        """Decode the edited text (its algo_config files as they will be) and compare its tasks with ``expected``."""
        try:
            tasks = decode_config(rendered, conf_path.parent, algo_configs={
                t.algo_config_path: t.algo_config for t in expected if t.algo_config_path}).config.frame_extractor.tasks
        except ConfigError as exc:
            raise ConfFileError(f"the edited conf would not load: {exc}") from None
        got = [_comparable(t) for t in tasks]
        if got != [_comparable(t) for t in expected]:
            raise ConfFileError("the edited conf does not give back the tasks asked for; nothing written")


def _comparable(task: TaskConf) -> TaskConf:
    path = os.path.abspath(task.algo_config_path) if task.algo_config_path else None
    return msgspec.structs.replace(task, algo_config_path=path)


def _update(table: Table, task: TaskConf) -> None:
    """Make ``table`` hold ``task`` (its algo_config apart), touching only what differs: a key already holding the
    task's value stays as written, even when that is the default (``enabled = true``); a key whose value went back to
    the default or to unset is removed; the task's other non-default keys are set or appended."""
    fields = task_fields(task)
    names = {f.encode_name: f.name for f in msgspec.structs.fields(TaskConf)}
    for key in list(table.keys()):
        if key in _SKIPPED or key not in names:
            continue
        current = msgspec.to_builtins(getattr(task, names[key]))
        if _plain(table[key]) != current and key not in fields:
            del table[key]
    for key, value in fields.items():
        if key not in table or _plain(table[key]) != value:
            table[key] = value


def _plain(item: Any) -> Any:
    return item.unwrap() if hasattr(item, "unwrap") else item
