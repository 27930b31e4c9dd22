"""``dry_run``: the exact request bodies go to a file instead of Klaviyo."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class DryRunWriter:
    """Appends one JSON line per request that would have been sent (method, path, body).

    The file is created readable by its owner only: the bodies hold customers' emails.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        os.chmod(self.path, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self.requests = 0

    def write(self, method: str, path: str, body: bytes | None) -> None:
        line = json.dumps(
            {"method": method, "path": path, "body": None if body is None else json.loads(body)},
            ensure_ascii=False,
        )
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            self.requests += 1

    def close(self) -> None:
        self._file.close()
