"""What each answer releases about a user, for the disclosure ledger (idp.store.disclosures): the names of the
claims, never their values.

An ID token's release is written with the token's grant rows, in the token endpoint's transaction (idp.oidc.grants).
Userinfo and introspection write nothing else: their release is written and committed by itself, before the answer
is given, and an answer whose release could not be written is not given (a database failure answers 503). What is
recorded is then at worst an answer that failed after its record (a broken connection), never a release that is
missing from the ledger.

Introspection (RFC 7662) tells the client who the token is about: ``sub``, recorded as such. The rest of its answer
(scope, times, client) describes the token, not the person.
"""

from __future__ import annotations

from typing import Any

from ..scopes import all_claims
from ..store import commit_written, read_outside_a_transaction
from ..store.disclosures import Release, record_under_grant
from ..store.models import Client

#: The order the ledger lists claims in: the identifier first, then those of each scope, scope by scope.
_LEDGER_ORDER = {name: index for index, name in enumerate(all_claims())}

#: What an introspection releases about the person a token is about.
INTROSPECTION_CLAIMS = ("sub",)


def release_of(claims: dict[str, Any], client: Client, purpose: str) -> Release:
    """What ``claims`` (the values idp.oidc.claims.user_claims made, before they are sent to ``client``) release,
    for the disclosure ledger: their names in one fixed order, and whether the national code or the registry's
    verified claims were among them."""
    names = tuple(sorted(claims, key=lambda name: (_LEDGER_ORDER.get(name, len(_LEDGER_ORDER)), name)))
    verified = claims.get("verified_claims")
    inside_verified = isinstance(verified, dict) and "national_id" in (verified.get("claims") or {})
    return Release(
        client_id=client.client_id,
        purpose=purpose,
        claims=names,
        national_id="national_id" in claims or inside_verified,
        verified_claims=verified is not None,
    )


def introspection_release(client: Client) -> Release:
    return Release(
        client_id=client.client_id,
        purpose="introspection",
        claims=INTROSPECTION_CLAIMS,
        national_id=False,
        verified_claims=False,
    )


def record_before_answering(release: Release, grant_id: str) -> bool:
    """Write and commit ``release``, made under grant ``grant_id``, before the answer that makes it: one statement,
    on PostgreSQL outside a transaction (it is whole by itself). False when the grant is gone (its account was
    deleted since it was read): the caller then releases nothing. A database failure raises (the answer is 503)."""
    read_outside_a_transaction()
    recorded = record_under_grant(release, grant_id)
    commit_written()
    return recorded
