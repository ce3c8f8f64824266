"""Writing a file whole: a reader, or a crash, never sees half of it.

Saved sessions, training checkpoints' cards and pointers, and the metrics log are all
rewritten in place while something may read them; each goes through `write_atomic`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` (str as UTF-8) to `path` through a temporary file in the same folder,
    flushed to disk, then renamed over `path`; the folder is made if missing.

    Readers see the old file or the new one. A crash mid-write leaves at most a hidden
    `.NAME.*.tmp` file next to it, never a torn `path`.
    """
    path = Path(path)
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
