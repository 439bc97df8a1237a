"""Replace a file atomically: a reader (or a crash) sees the old content or the new, never a part.

The data goes to a temp file in the target's directory (a rename is atomic only within one file system), is flushed
and fsynced, then renamed over the target, and the directory is fsynced so the rename itself survives a power cut.
On any failure the temp file is removed: nothing is left beside the target (a zero-byte ``.tmp`` would otherwise
stay there for every failed write on a full disk).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data``; raises ``OSError`` with the target unchanged.

    ``durable=False`` skips both fsyncs: for files rewritten every few seconds whose loss in a power cut costs
    nothing (the stats snapshot), where an fsync per write would only wear the box's flash."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
