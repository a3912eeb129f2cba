"""The ``account`` area: the signed-in user's pages (profile, security, passkeys, sessions, connected apps,
activity, the disclosure ledger, the data export), the support page and the language switcher. One module per page
group, each adding its views to :data:`bp`."""

from __future__ import annotations

from . import active_sessions, activity, apps, disclosures, export, language, passkeys, profile, security, support
from .blueprint import bp, login_required

__all__ = [
    "active_sessions",
    "activity",
    "apps",
    "bp",
    "disclosures",
    "export",
    "language",
    "login_required",
    "passkeys",
    "profile",
    "security",
    "support",
]
