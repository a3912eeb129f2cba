"""Files and folders only the provider's own user may read: signing keys, the SQLite database, the SMS and mail
outboxes (they hold one-time codes).

Each is created with its private mode (0600 for a file, 0700 for a folder; the umask can only take bits away),
and one that already exists with a looser mode (made by hand, restored from a backup, left by an older version)
is tightened: group and others lose every permission, the owner's stay.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path) -> None:
    """Make ``path`` (with any missing parents) a folder only its owner may list or enter."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != FOLDER_MODE:
        path.chmod(FOLDER_MODE)


def private_file(path: Path) -> None:
    """Create ``path`` empty if missing, and take away what group and others may do with it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        _tighten(descriptor)
    finally:
        os.close(descriptor)


def tighten_if_present(path: Path) -> None:
    """Take away what group and others may do with ``path``, if it exists (it is not created)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        path.chmod(mode & 0o700)


def open_private_for_append(path: Path) -> TextIO:
    """``path`` opened to append text, created 0600 if missing and tightened if looser."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        _tighten(descriptor)
        return os.fdopen(descriptor, "a", encoding="utf-8")
    except BaseException:
        os.close(descriptor)
        raise


def sqlite_database_file(database_url: str) -> Path | None:
    """The file of a SQLite database URL; None for another database or one held in memory."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:") or url.query.get("mode") == "memory":
        return None  # a SQLite URI filename: left as its author wrote it
    return Path(url.database)


def _tighten(descriptor: int) -> None:
    mode = stat.S_IMODE(os.fstat(descriptor).st_mode)
    if mode & 0o077:
        os.fchmod(descriptor, mode & 0o700)
