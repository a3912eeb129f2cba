"""The outbox backend: one JSON object per line, appended (README, "Text messages")."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from pathlib import Path

from .base import SmsUnavailable


class OutboxSender:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def send(self, to: str, text: str, *, purpose: str, code: str | None = None) -> None:
        record = {
            "to": to,
            "text": text,
            "code": code,
            "purpose": purpose,
            "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                # Several workers may append at once; a lock keeps each line whole.
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.write(line)
        except OSError as error:
            raise SmsUnavailable(f"SMS outbox {self.path} cannot be written: {error.strerror}") from None
