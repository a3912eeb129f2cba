"""Revocations announced to every worker once they commit, so none keeps answering from what it remembers.

A worker may remember what it read from the database about an access token (its grant active, the token not
revoked) under a key of the store (idp.store.access_tokens); a revocation announces that key on Redis after its
transaction commits, and every worker forgets it (idp.store.absences).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flask import has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from ..extensions import db
from ..provider import current_provider
from .kv import StoreUnavailable

log = logging.getLogger(__name__)

_ANNOUNCED_AT_COMMIT = "idp.announced_at_commit"


def announce_at_commit(keys: Iterable[str]) -> None:
    """Announce ``keys`` once the session's transaction commits (and not if it rolls back): an announcement made
    earlier could be read, and the row read again unchanged, before the commit."""
    db.session.info.setdefault(_ANNOUNCED_AT_COMMIT, set()).update(keys)


@event.listens_for(Session, "after_commit")
def _announce(session: Session) -> None:
    keys = session.info.pop(_ANNOUNCED_AT_COMMIT, None)
    if not keys or not has_app_context():
        return
    try:
        current_provider().store.announce(sorted(keys))
    except StoreUnavailable:
        # Committed all the same; a worker that remembers one of these keys forgets it within the time it may
        # remember anything (idp.store.access_tokens.MEMORY_SECONDS), and one that lost Redis remembers nothing.
        log.warning("could not announce %d revocation(s): Redis is unavailable", len(keys))


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_ANNOUNCED_AT_COMMIT, None)
