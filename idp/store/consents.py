"""Consents: what a user has allowed each client to receive, remembered per client and scope set."""

from __future__ import annotations

from sqlalchemy import select

from .. import clock
from ..extensions import db
from .models import Consent


def find_consent(user_id: str, client_id: str) -> Consent | None:
    return db.session.scalar(select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id))


def consent_covers(consent: Consent | None, scopes: list[str], claims: list[str]) -> bool:
    """True when everything asked for now was allowed before."""
    if consent is None:
        return False
    return set(scopes) <= set(consent.scope.split()) and set(claims) <= set(consent.claims)


def record_consent(user_id: str, client_id: str, scopes: list[str], claims: list[str]) -> Consent:
    """Remember the allowed scopes and claims, adding to what was allowed before (not committed)."""
    consent = find_consent(user_id, client_id)
    now = clock.now()
    if consent is None:
        consent = Consent(user_id=user_id, client_id=client_id, scope="", claims=[], created_at=now)
        db.session.add(consent)
    consent.scope = " ".join(sorted(set(consent.scope.split()) | set(scopes)))
    consent.claims = sorted(set(consent.claims or []) | set(claims))
    consent.updated_at = now
    return consent


def consents_of(user_id: str) -> list[Consent]:
    """The user's consents, the most recently changed first."""
    return list(
        db.session.scalars(select(Consent).where(Consent.user_id == user_id).order_by(Consent.updated_at.desc()))
    )
