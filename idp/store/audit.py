"""The audit log: security-relevant events, for admins (``idp audit list``) and later for the user."""

from __future__ import annotations

import logging
from typing import Any

from flask import has_request_context, request
from sqlalchemy import insert, select

from .. import clock
from ..audit_events import is_known_event
from ..extensions import db
from ..ops.metrics import count_audit_event
from .models import AuditEvent

log = logging.getLogger("idp.audit")
_INSERT_EVENT = insert(AuditEvent.__table__)  # built once: building it cost about as much as running it


def record(event: str, *, user_id: str | None = None, client_id: str | None = None, **detail: Any) -> None:
    """Add an event to the current transaction; it is written with the caller's commit.

    ``detail`` must never carry a password, code, secret or token: callers pass ids and outcomes only.
    """
    write(event_row(event, user_id=user_id, client_id=client_id, **detail))


def write(row: dict[str, Any]) -> None:
    """Add an :func:`event_row` to the current transaction, and log and count it."""
    # A plain INSERT on the table in the caller's transaction (rolled back with it): cheaper than an object to
    # flush or an ORM statement.
    db.session.connection().execute(_INSERT_EVENT, row)
    announce(row)


def event_row(event: str, *, user_id: str | None = None, client_id: str | None = None, **detail: Any) -> dict[str, Any]:
    """The audit row of an event, for a caller that writes it inside a statement of its own (then :func:`announce`
    it once written). ``event`` must be one of :data:`idp.audit_events.AUDIT_EVENTS`, which says what it means."""
    if not is_known_event(event):
        raise ValueError(f"audit event {event!r} has no description in idp.audit_events.AUDIT_EVENTS")
    return {
        "at": clock.now(),
        "event": event,
        "user_id": user_id,
        "client_id": client_id,
        "ip_address": request.remote_addr if has_request_context() else None,
        "detail": detail,
    }


def announce(row: dict[str, Any]) -> None:
    """The event's log line and metrics."""
    log.info("%s user=%s client=%s %s", row["event"], row["user_id"], row["client_id"], row["detail"])
    count_audit_event(row["event"], row["detail"])


def recent_events(
    limit: int = 50, event: str | None = None, user_id: str | None = None, client_id: str | None = None
) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if event:
        query = query.where(AuditEvent.event == event)
    if user_id:
        query = query.where(AuditEvent.user_id == user_id)
    if client_id:
        query = query.where(AuditEvent.client_id == client_id)
    return list(db.session.scalars(query))


def events_about(user_id: str) -> list[AuditEvent]:
    """Every event of the user's, the most recent first (for the account's data export)."""
    query = select(AuditEvent).where(AuditEvent.user_id == user_id).order_by(AuditEvent.id.desc())
    return list(db.session.scalars(query))
