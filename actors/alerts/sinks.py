"""Where alerts go: the ``Sink`` interface and the embedded JSON Lines sink.

A sink is owned by the alert actor and called only from its thread. ``write`` either delivers the whole batch or
raises ``SinkError``; the alert actor then keeps the batch (spool) and retries, so a sink never has to buffer.

The JSON Lines file is rotated by size (``alerts.jsonl`` -> ``alerts.jsonl.1`` ... ``.N``) so that months of alerts
cannot fill the disk; each line is one ``Alert`` encoded by ``encode_alert``, the same shape as a Kafka record (schema
in the README).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import msgspec

from ..core.messages import Alert

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
    """Appends one JSON object per line; fsyncs each batch so a crash after ``write`` loses nothing."""

    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str], *, rotate_bytes: int = 64 << 20, keep_files: int = 5) -> None:
        self.path = Path(path)
        self._rotate_bytes = rotate_bytes
        self._keep = keep_files
        self._file = None

    def _open(self):  # type: ignore[no-untyped-def]
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - held open across batches, closed in close()
        return self._file

    def write(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        data = b"".join(encode_alert(a) + b"\n" for a in alerts)
        try:
            f = self._open()
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            if f.tell() >= self._rotate_bytes:
                self._rotate()
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror}") from None

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
