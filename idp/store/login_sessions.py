"""Login sessions at the provider. The browser holds an opaque cookie; this table says who logged in, when
and how, so one session can be ended from anywhere (logout, "log out everywhere")."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from .. import clock
from ..extensions import db
from ..security import new_token
from .models import User, UserSession

# Writing last_seen_at on every request would turn each page view into a write; once a minute is enough.
_TOUCH_EVERY = dt.timedelta(seconds=60)


def start_session(
    user: User,
    *,
    amr: list[str],
    acr: str,
    absolute_timeout: int,
    ip_address: str | None,
    user_agent: str | None,
) -> UserSession:
    now = clock.now()
    session = UserSession(
        id=new_token(24),
        user_id=user.id,
        auth_time=now,
        amr=amr,
        acr=acr,
        created_at=now,
        last_seen_at=now,
        expires_at=now + dt.timedelta(seconds=absolute_timeout),
        ip_address=ip_address,
        user_agent=(user_agent or "")[:255] or None,
    )
    db.session.add(session)
    return session


def get_live_session(session_id: str | None, idle_timeout: int) -> UserSession | None:
    """The session if it has not ended, expired or sat idle longer than ``idle_timeout`` seconds."""
    if not session_id:
        return None
    session = db.session.get(UserSession, session_id)
    if session is None or session.ended_at is not None:
        return None
    now = clock.now()
    if session.expires_at <= now or session.last_seen_at + dt.timedelta(seconds=idle_timeout) <= now:
        return None
    if now - session.last_seen_at >= _TOUCH_EVERY:
        session.last_seen_at = now
        db.session.commit()
    return session


def end_session(session: UserSession) -> None:
    if session.ended_at is None:
        session.ended_at = clock.now()


def end_user_sessions(user_id: str) -> int:
    result = db.session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
        .values(ended_at=clock.now())
    )
    return result.rowcount or 0


def live_sessions_of(user_id: str) -> list[UserSession]:
    now = clock.now()
    return list(
        db.session.scalars(
            select(UserSession)
            .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None), UserSession.expires_at > now)
            .order_by(UserSession.last_seen_at.desc())
        )
    )


def sessions_of(user_id: str) -> list[UserSession]:
    """Every session of the user's, ended ones too, the most recent first."""
    return list(
        db.session.scalars(
            select(UserSession).where(UserSession.user_id == user_id).order_by(UserSession.created_at.desc())
        )
    )
