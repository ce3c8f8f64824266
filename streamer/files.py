"""Writing a file whole: a reader, or a crash, never sees half of it.

Saved sessions, training checkpoints' cards and pointers, and the metrics log are all
rewritten in place while something may read them; each goes through `write_atomic`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def file_path(path: str | os.PathLike) -> Path:
    """`path` as a file to write, refused (ValueError) when it is empty or an existing folder,
    so a caller can check a destination before the work that fills it."""
    if not str(path).strip():
        raise ValueError("no file name given (an empty path); name the file to write, e.g. run.state")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; name a file to write, e.g. {path / 'run.state'}")
    return path


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` (str as UTF-8) to `path` through a temporary file in the same folder,
    flushed to disk, then renamed over `path`; the folder is made if missing.

    Readers see the old file or the new one. A crash mid-write leaves at most a hidden
    `.NAME.*.tmp` file next to it, never a torn `path`. An empty path or a folder is
    refused with a ValueError (`file_path`).
    """
    path = file_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
