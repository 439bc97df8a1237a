"""Where alerts go: the ``Sink`` interface and the embedded JSON Lines sink.

A sink is owned by the alert actor and called only from its thread. ``write`` either delivers the whole batch or
raises ``SinkError``; the alert actor then keeps the batch (spool) and retries, so a sink never has to buffer.

The JSON Lines file is rotated by size (``alerts.jsonl`` -> ``alerts.jsonl.1`` ... ``.N``) so that months of alerts
cannot fill the disk; each line is one ``Alert`` encoded by ``encode_alert``, the same shape as a Kafka record (schema
in the README).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

import msgspec

from ..core.messages import Alert

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


def encode_alert(alert: Alert) -> bytes:
    """The alert's record: one JSON object, fields in ``Alert``'s order (the old system's row first). Decoding and
    encoding again gives the same bytes, so an alert replayed from the spool is byte-identical to its first try."""
    return _encoder.encode(alert)


class SinkError(Exception):
    """The batch was not delivered; nothing of it may be assumed written."""


class Sink(Protocol):
    name: str

    def write(self, alerts: Sequence[Alert]) -> None:
        """Deliver every alert of the batch, in order, or raise SinkError."""
        ...

    def close(self) -> None: ...


class JsonlSink:
    """Appends one JSON object per line; fsyncs each batch so a crash after ``write`` loses nothing.

    The file only ever holds whole lines. A write that fails part way (a full disk) is cut back to where the batch
    began before ``SinkError`` is raised, so the retry writes it once, never a half record twice; if even the cut
    fails, the file is repaired when it is next opened. At open, a torn last line (a crash in the middle of a write)
    is cut off, kept aside in ``<file>.torn`` and logged once: the next record never merges with it."""

    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str], *, rotate_bytes: int = 64 << 20, keep_files: int = 5) -> None:
        self.path = Path(path)
        self._rotate_bytes = rotate_bytes
        self._keep = keep_files
        self._file: BinaryIO | None = None

    def _open(self) -> BinaryIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a+b")  # noqa: SIM115 - held open across batches, closed in close()
            self._cut_torn_line(self._file)
        return self._file

    def _cut_torn_line(self, f: BinaryIO) -> None:
        """Truncate a last line without its newline, keeping its bytes in ``.torn``."""
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        start = size - 1
        while start > 0:  # back to the end of the last whole line, in blocks
            block = max(0, start - 65536)
            f.seek(block)
            chunk = f.read(start - block)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                start = block + nl + 1
                break
            start = block
        f.seek(start)
        torn = f.read()
        torn_path = self.path.with_name(self.path.name + ".torn")
        with open(torn_path, "ab") as aside:
            aside.write(torn + b"\n")
            aside.flush()
            os.fsync(aside.fileno())
        f.truncate(start)
        f.flush()
        os.fsync(f.fileno())
        log.warning("alerts: %s ended with a torn line (%d bytes, a crash mid-write); cut off and kept in %s",
                    self.path, len(torn), torn_path)

    def write(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        data = b"".join(encode_alert(a) + b"\n" for a in alerts)
        start = None
        try:
            f = self._open()
            start = f.seek(0, os.SEEK_END)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        except OSError as exc:
            self._cut_back(start)
            raise SinkError(f"cannot write {self.path}: {exc.strerror}") from None
        try:
            if f.tell() >= self._rotate_bytes:
                self._rotate()
        except OSError as exc:  # the batch is written; rotation is tried again after the next one
            log.warning("alerts: cannot rotate %s: %s", self.path, exc.strerror)

    def _cut_back(self, start: int | None) -> None:
        """After a failed write: the file back to ``start`` (the batch's first byte), else closed to be repaired."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            if start is not None:
                f.truncate(start)
                os.fsync(f.fileno())
        except OSError:
            pass  # the next open cuts what is left of the batch's last line; whole lines are delivered again
        try:
            f.close()
        except OSError:
            pass  # the buffered part of the batch cannot be flushed: it is the part not wanted

    def _rotate(self) -> None:
        self.close()
        for i in range(self._keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
