"""Every event the audit log records, with what it means in plain words.

:func:`idp.store.audit.record` refuses a name that is not here, so an event cannot reach the log, nor the
account's activity page, without a description. An event about an app says which one: ``%(app)s`` stands for the
app's registered name.
"""

from __future__ import annotations

from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape

AUDIT_EVENTS = {
    # The account's own doings.
    "user.registered": _l("Account created"),
    "user.created": _l("Account created by an administrator"),
    "login.succeeded": _l("Logged in"),
    "login.failed": _l("A login failed (wrong password or code)"),
    "login.step_up": _l("Confirmed with a second factor"),
    "logout": _l("Logged out"),
    "session.ended": _l("A session was logged out"),
    "session.ended_everywhere": _l("Logged out everywhere"),
    "password.reset": _l("Password recovered with a code"),
    "password.changed": _l("Password changed"),
    "mobile.changed": _l("Mobile number changed"),
    "email.verified": _l("Email address confirmed"),
    "address.changed": _l("Postal address changed"),
    "profile.refreshed_from_registry": _l("Details refreshed from the registry"),
    "totp.enabled": _l("Authenticator app turned on"),
    "totp.disabled": _l("Authenticator app turned off"),
    "totp.recovery_codes_replaced": _l("New recovery codes made"),
    "support.message": _l("You sent a message to support"),
    "passkey.added": _l("A passkey was added"),
    "passkey.removed": _l("A passkey was removed"),
    "passkey.refused": _l("A passkey was refused (it could not be checked)"),
    "passkey.clone_warning": _l("Warning: a passkey's counter went backwards; it may have been copied"),
    "password.reset_held": _l("Password recovery by SMS started; it waits because the account has a passkey"),
    "password.reset_hold_cancelled": _l("A waiting password recovery was cancelled by a passkey login"),
    "account.exported": _l("You downloaded all your data"),
    # Apps and the account.
    "consent.granted": _l("You allowed %(app)s to use your account"),
    "consent.denied": _l("You refused %(app)s access to your account"),
    "consent.revoked": _l("You revoked the access of %(app)s"),
    "token.issued": _l("%(app)s was given access to your account"),
    "grant.revoked": _l("%(app)s ended its own access to your account"),
    "code.replayed": _l("A sign-in code of %(app)s was used twice; its access was revoked"),
    "refresh_token.replayed": _l("A key of %(app)s to your account was used twice; its access was revoked"),
    "code.wrong_client": _l("%(app)s presented a sign-in code made for another app"),
    # The administrators' changes (idp clients, idp keys).
    "client.created": _l("%(app)s was registered"),
    "client.updated": _l("The registration of %(app)s was changed"),
    "client.secret_rotated": _l("%(app)s was given a new secret"),
    "client.deleted": _l("%(app)s was removed"),
    "key.generated": _l("A signing key was made"),
    "key.rotated": _l("The signing key was replaced"),
    "key.retired": _l("A signing key was retired"),
    "disclosures.pruned": _l("Old lines of the disclosure ledger were deleted"),
}

#: Shown for a row whose event has since been renamed or dropped from the table above.
OTHER_EVENT = _l("A security event")


def is_known_event(event: str) -> bool:
    return event in AUDIT_EVENTS


def describe_event(event: str, app_name: str | None = None) -> Markup:
    """The event in the reader's language, the app's name (or "a removed app" where ``app_name`` is None) isolated
    with ``<bdi>`` so that a Latin name reads right in Persian text."""
    template = escape(str(AUDIT_EVENTS.get(event, OTHER_EVENT)))
    if "%(app)s" not in template:
        return template
    if app_name is None:
        app_name = gettext("A removed app") if template.startswith("%(app)s") else gettext("a removed app")
    return template % {"app": Markup('<bdi class="app-name">%s</bdi>') % app_name}
