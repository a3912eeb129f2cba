"""Who is logged in in this browser, and logging in and out.

The browser session carries ``sid``, the id of a :class:`UserSession` row; that row, not the cookie, decides
whether the login is still valid, so ending it anywhere logs the browser out.
"""

from __future__ import annotations

import secrets

from flask import g, request, session

from .. import clock
from ..oidc.backchannel import notify_sessions_ended
from ..provider import current_provider
from ..scopes import ACR_TWO_FACTORS, acr_for, acr_meets
from ..store import audit, commit
from ..store import grants as grant_store
from ..store import login_sessions as session_store
from ..store.models import User, UserSession
from .browser_session import regenerate


def current_session() -> UserSession | None:
    if "idp_login" not in g:
        idle = current_provider().config.session.idle_timeout
        g.idp_login = session_store.get_live_session(session.get("sid"), idle)
    return g.idp_login


def current_user() -> User | None:
    login = current_session()
    return login.user if login is not None else None


def browser_binding() -> str:
    """A random value tied to this browser session, to bind pending authorization requests to it."""
    if "binding" not in session:
        session["binding"] = secrets.token_urlsafe(16)
    return session["binding"]


#: The login session whose password was chosen in it through a reset by SMS (kept beside ``sid``).
PASSWORD_SET_BY_RESET = "password_set_by_reset"


def log_in(user: User, *, amr: list[str], password_set_by_reset: bool = False) -> UserSession:
    """Start a login session for ``user`` in this browser, ending any earlier one, and rotate the cookie.

    ``password_set_by_reset``: the user chose the account's password in this login, after proving only what
    they hold (a code by SMS); see :func:`counts_as_factor`."""
    config = current_provider().config
    acr = acr_for(amr)
    previous = current_session()
    if previous is not None:
        session_store.end_session(previous)
        grant_store.revoke_session_grants(previous.id, "replaced_by_new_login")
    login = session_store.start_session(
        user,
        amr=amr,
        acr=acr,
        absolute_timeout=config.session.absolute_timeout,
        ip_address=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
    )
    # Ids read before the commit expires the rows: after it, each read would cost a transaction and a query.
    login_id, previous_id = login.id, previous.id if previous is not None else None
    audit.record("login.succeeded", user_id=user.id, method="+".join(amr), session_id=login_id)
    commit()
    if previous_id is not None:
        notify_sessions_ended([previous_id])
    regenerate()
    session["sid"] = login_id
    if password_set_by_reset:
        session[PASSWORD_SET_BY_RESET] = login_id
    else:
        session.pop(PASSWORD_SET_BY_RESET, None)
    g.idp_login = login
    return login


def counts_as_factor(login: UserSession, method: str) -> bool:
    """Whether proving ``method`` in this session adds a factor. A password chosen in this session through a
    reset by SMS does not: it came from the same SIM as the code, so "sms" and "pwd" would claim two factors
    from one device (ASVS 5.0 section 6.4.3)."""
    return not (method == "pwd" and session.get(PASSWORD_SET_BY_RESET) == login.id)


def add_factor(login: UserSession, *methods: str) -> UserSession:
    """The user just proved one more factor in this session (step-up), named by one ``amr`` method or several (a
    passkey is ``hwk`` or ``swk`` with ``user``): ``amr`` grows, ``acr`` follows, and ``auth_time`` becomes now,
    since the user has just authenticated again. The cookie is rotated."""
    refused = [method for method in methods if not counts_as_factor(login, method)]
    if refused:
        raise ValueError(f"{refused!r} is not a factor of its own in this session")
    login.amr = list(dict.fromkeys([*login.amr, *methods]))
    login.acr = acr_for(login.amr)
    login.auth_time = clock.now()
    method = "+".join(methods)
    audit.record("login.step_up", user_id=login.user_id, method=method, session_id=login.id, acr=login.acr)
    commit()
    regenerate()
    return login


def is_fresh(login: UserSession) -> bool:
    """A login of two factors or more, proved within ``session.fresh_login`` seconds: what changing how the account
    is entered (its second factors) asks for. A stolen password or SIM alone gives one factor, so it can neither add
    a factor of its own (which would lock the owner out of recovery) nor take the owner's away."""
    max_age = current_provider().config.session.fresh_login
    return acr_meets(login.acr, ACR_TWO_FACTORS) and clock.timestamp() - login.auth_time.timestamp() < max_age


def end_other_sessions(user: User, keep: UserSession | None, reason: str) -> list[str]:
    """End every session of ``user`` but ``keep`` and revoke every refresh token not made in ``keep``
    (also those of sessions that already ended, which may still hold live refresh tokens). Not committed:
    the caller commits, then passes the ids returned to :func:`notify_sessions_ended`."""
    ended = []
    for login in session_store.live_sessions_of(user.id):
        if keep is not None and login.id == keep.id:
            continue
        session_store.end_session(login)
        ended.append(login.id)
    grant_store.revoke_user_grants(user.id, reason, keep_session_id=keep.id if keep is not None else None)
    return ended


def log_out(*, reason: str) -> list[str]:
    """End this browser's login and revoke the grants made under it. Returns the ids of the sessions ended."""
    ended = []
    idle = current_provider().config.session.idle_timeout
    login = session_store.get_live_session(session.get("sid"), idle) if session.get("sid") else None
    if login is not None:
        session_store.end_session(login)
        grant_store.revoke_session_grants(login.id, reason)
        audit.record("logout", user_id=login.user_id, session_id=login.id, reason=reason)
        ended.append(login.id)
    commit()
    notify_sessions_ended(ended)
    binding = session.get("binding")
    locale = session.get("locale")
    session.clear()
    regenerate()
    if binding:
        session["binding"] = binding
    if locale:
        session["locale"] = locale
    g.idp_login = None
    return ended
