"""The outbox backend: one JSON object per line, appended (README, "Text messages")."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
from pathlib import Path

from ..private_files import open_private_for_append, tighten_if_present
from .base import SmsUnavailable

log = logging.getLogger(__name__)


class OutboxSender:
    """Appends to a file that only the provider's user may read (it holds one-time codes): created 0600, and
    tightened at start-up and at each message if it was made looser."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            tighten_if_present(self.path)
        except OSError as error:
            log.warning("SMS outbox %s cannot be made private (mode 0600): %s", self.path, error.strerror)

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
            with open_private_for_append(self.path) as handle:
                # Several workers may append at once; a lock keeps each line whole.
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.write(line)
        except OSError as error:
            raise SmsUnavailable(f"SMS outbox {self.path} cannot be written: {error.strerror}") from None
