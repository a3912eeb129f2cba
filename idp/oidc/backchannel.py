"""OpenID Connect Back-Channel Logout 1.0: when a login session at the provider ends, every relying party
that got tokens in it and registered a ``backchannel_logout_uri`` is told, server to server, so it can end
its own session for that user. This is what makes "log out from one website" log you out of the others.

A logout token is a signed JWT (section 2.4) with ``iss``, ``aud``, ``iat``, ``exp``, ``jti``, ``sub``,
``sid`` and the back-channel logout event; it is POSTed as ``logout_token`` (section 2.5). Failures are
logged (never with the token) and do not stop the logout at the provider.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from sqlalchemy import select

from .. import clock
from ..extensions import db
from ..provider import current_provider
from ..security import new_token
from ..store.clients import get_client
from ..store.models import Client, Grant
from ..store.users import get_user
from .claims import subject_for
from .tokens import sign_jwt

log = logging.getLogger(__name__)

EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYPE = "logout+jwt"
TIMEOUT_SECONDS = 3
LIFETIME_SECONDS = 120


def _recipients(session_ids: list[str]) -> list[tuple[Client, str, str]]:
    """(client, user id, session id) for each client that received tokens in one of these sessions."""
    if not session_ids:
        return []
    rows = db.session.execute(
        select(Grant.client_id, Grant.user_id, Grant.session_id)
        .where(Grant.session_id.in_(session_ids), Grant.user_id.is_not(None))
        .distinct()
    ).all()
    recipients = []
    for client_id, user_id, session_id in rows:
        client = get_client(client_id)
        if client is not None and client.backchannel_logout_uri:
            recipients.append((client, user_id, session_id))
    return recipients


def logout_token(client: Client, subject: str, session_id: str) -> str:
    now = clock.timestamp()
    claims: dict[str, Any] = {
        "iss": current_provider().issuer,
        "aud": client.client_id,
        "iat": now,
        "exp": now + LIFETIME_SECONDS,
        "jti": new_token(16),
        "sub": subject,
        "sid": session_id,
        "events": {EVENT: {}},
    }
    return sign_jwt({"typ": LOGOUT_TOKEN_TYPE}, claims, client.id_token_signed_response_alg)


def notify_sessions_ended(session_ids: list[str]) -> int:
    """Send logout tokens for these ended sessions; returns how many relying parties acknowledged."""
    acknowledged = 0
    for client, user_id, session_id in _recipients(session_ids):
        user = get_user(user_id)
        if user is None:
            continue
        token = logout_token(client, subject_for(user, client), session_id)
        try:
            response = requests.post(
                client.backchannel_logout_uri,  # type: ignore[arg-type]
                data={"logout_token": token},
                timeout=TIMEOUT_SECONDS,
                headers={"Cache-Control": "no-store"},
            )
        except requests.RequestException as error:
            log.warning("back-channel logout to client %s failed: %s", client.client_id, error.__class__.__name__)
            continue
        if response.status_code == 200:
            acknowledged += 1
        else:
            log.warning("back-channel logout to client %s answered HTTP %s", client.client_id, response.status_code)
    return acknowledged
