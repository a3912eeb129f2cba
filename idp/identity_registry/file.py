"""The file registry: a JSON array of people (README, "The identity registry"), re-read when the file changes."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any

from .base import Person, RegistryUnavailable


class FileRegistry:
    source_name = "identity registry file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._people: dict[str, dict[str, Any]] = {}

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            stat = self.path.stat()
        except OSError as error:
            raise RegistryUnavailable(f"registry file {self.path} cannot be read: {error.strerror}") from None
        stamp = (stat.st_mtime, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    entries = json.loads(self.path.read_text(encoding="utf-8"))
                    self._people = {str(entry["national_code"]): entry for entry in entries}
                except (OSError, ValueError, TypeError, KeyError) as error:
                    raise RegistryUnavailable(f"registry file {self.path} is not valid: {error}") from None
                self._stamp = stamp
            return self._people

    def mobile_belongs_to(self, national_code: str, mobile: str) -> bool:
        entry = self._load().get(national_code)
        return entry is not None and mobile in entry.get("mobiles", [])

    def find_person(self, national_code: str, birthdate: dt.date) -> Person | None:
        entry = self._load().get(national_code)
        if entry is None or entry.get("birthdate") != birthdate.isoformat():
            return None
        return Person(
            national_code=national_code,
            birthdate=birthdate,
            given_name=entry["given_name"],
            family_name=entry["family_name"],
        )
