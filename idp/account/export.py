"""Download my data (README, "Your account"): the account's profile, sessions, consents, passkeys, security events
and disclosure ledger as one JSON file.

Never a secret: no password hash, no authenticator-app seed, no recovery code, no passkey's credential id or public
key, no session's or token's value. Security events carry what the audit log keeps, which holds none either
(idp.store.audit).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, g

from .. import clock
from ..audit_events import describe_event
from ..provider import current_provider
from ..store import audit, commit
from ..store import disclosures as ledger
from ..store.audit import events_about
from ..store.clients import client_names
from ..store.consents import consents_of
from ..store.login_sessions import sessions_of
from ..store.models import Consent, User
from ..store.passkeys import passkeys_of
from .blueprint import bp, login_required
from .devices import device_of

EXPORT_FORMAT = "hoviyat-account-export/1"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _profile(user: User) -> dict[str, Any]:
    return {
        "national_code": user.national_code,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "birthdate": user.birthdate.isoformat(),
        "mobile": user.mobile,
        "email": user.email,
        "email_verified": bool(user.email_verified) if user.email else None,
        "postal_address": user.postal_address,
        "postal_code": user.postal_code,
        "locale": user.locale,
        "identity_verified_at": _iso(user.identity_verified_at),
        "identity_evidence": user.identity_evidence or [],
        "authenticator_app_since": _iso(user.totp_enabled_at) if user.has_totp else None,
        "created_at": _iso(user.created_at),
        "updated_at": _iso(user.updated_at),
    }


def _consent(consent: Consent, names: dict[str, str]) -> dict[str, Any]:
    return {
        "client_id": consent.client_id,
        "client_name": names.get(consent.client_id),
        "scope": consent.scope.split(),
        "claims": list(consent.claims or []),
        "created_at": _iso(consent.created_at),
        "updated_at": _iso(consent.updated_at),
    }


def account_export(user: User) -> dict[str, Any]:
    """Everything the provider keeps about ``user`` that the user may read, as data."""
    events = events_about(user.id)
    consents = consents_of(user.id)
    rows = ledger.disclosures(ledger.LedgerQuery(user_id=user.id))
    client_ids = {e.client_id for e in events if e.client_id} | {c.client_id for c in consents}
    names = client_names(client_ids | {row.client_id for row in rows})
    return {
        "format": EXPORT_FORMAT,
        "issuer": current_provider().issuer,
        "exported_at": clock.now().isoformat(),
        "profile": _profile(user),
        "sessions": [
            {
                "created_at": _iso(s.created_at),
                "last_seen_at": _iso(s.last_seen_at),
                "expires_at": _iso(s.expires_at),
                "ended_at": _iso(s.ended_at),
                "authentication_methods": list(s.amr),
                "ip_address": s.ip_address,
                "user_agent": s.user_agent,
                "device": vars(device_of(s.user_agent)),
            }
            for s in sessions_of(user.id)
        ],
        "consents": [_consent(consent, names) for consent in consents],
        "passkeys": [
            {"name": p.name, "created_at": _iso(p.created_at), "last_used_at": _iso(p.last_used_at)}
            for p in passkeys_of(user.id)
        ],
        "security_events": [
            {
                "at": _iso(e.at),
                "event": e.event,
                "description": describe_event(e.event, names.get(e.client_id or "")).striptags(),
                "client_id": e.client_id,
                "client_name": names.get(e.client_id) if e.client_id else None,
                "ip_address": e.ip_address,
                "detail": e.detail,
            }
            for e in events
        ],
        "disclosures": [ledger.as_record(row, names.get(row.client_id)) for row in rows],
    }


@bp.get("/account/export")
@login_required
def export() -> Response:
    user = g.login.user
    audit.record("account.exported", user_id=user.id)
    commit()
    document = account_export(user)
    response = Response(json.dumps(document, ensure_ascii=False, indent=2), mimetype="application/json")
    filename = f"hoviyat-account-{clock.now().date().isoformat()}.json"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
