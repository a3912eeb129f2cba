"""Recent security events of the account, from the audit log, with times in the reader's calendar."""

from __future__ import annotations

from flask import g, render_template
from flask_babel import lazy_gettext as _l

from ..store.audit import recent_events
from .blueprint import bp, login_required

EVENT_LABELS = {
    "login.succeeded": _l("Logged in"),
    "login.failed": _l("A login failed (wrong password or code)"),
    "login.step_up": _l("Confirmed with a second factor"),
    "logout": _l("Logged out"),
    "user.registered": _l("Account created"),
    "user.created": _l("Account created by an administrator"),
    "password.reset": _l("Password recovered with a code"),
    "password.changed": _l("Password changed"),
    "mobile.changed": _l("Mobile number changed"),
    "email.verified": _l("Email address confirmed"),
    "address.changed": _l("Postal address changed"),
    "profile.refreshed_from_registry": _l("Details refreshed from the registry"),
    "totp.enabled": _l("Authenticator app turned on"),
    "totp.disabled": _l("Authenticator app turned off"),
    "totp.recovery_codes_replaced": _l("New recovery codes made"),
    "passkey.added": _l("A passkey was added"),
    "passkey.removed": _l("A passkey was removed"),
    "passkey.refused": _l("A passkey was refused (it could not be checked)"),
    "passkey.clone_warning": _l("Warning: a passkey's counter went backwards; it may have been copied"),
    "password.reset_held": _l("Password recovery by SMS started; it waits because the account has a passkey"),
    "password.reset_hold_cancelled": _l("A waiting password recovery was cancelled by a passkey login"),
    "consent.granted": _l("An app was allowed"),
    "consent.denied": _l("An app was refused"),
    "consent.revoked": _l("An app's access was revoked"),
    "session.ended": _l("A session was logged out"),
    "session.ended_everywhere": _l("Logged out everywhere"),
    "token.issued": _l("An app received tokens"),
    "grant.revoked": _l("An app ended its own access to your account"),
    "code.replayed": _l("An app's sign-in code was used twice; its access was revoked"),
    "refresh_token.replayed": _l("An app's refresh token was used twice; its access was revoked"),
}


@bp.get("/account/activity")
@login_required
def activity() -> str:
    events = recent_events(limit=50, user_id=g.login.user_id)
    rows = [{"event": e, "label": EVENT_LABELS.get(e.event, e.event)} for e in events]
    return render_template("account/activity.html", rows=rows)
