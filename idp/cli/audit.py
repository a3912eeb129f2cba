"""``idp audit``: read the audit log and a person's disclosure ledger; prune the ledger."""

from __future__ import annotations

import datetime as dt
import json

import click
from flask.cli import with_appcontext

from .. import clock
from ..provider import current_provider
from ..rules import InvalidInput
from ..rules.national_code import normalize_national_code
from ..store import audit as audit_log
from ..store import commit, rollback
from ..store import disclosures as ledger
from ..store.audit import recent_events
from ..store.clients import client_names
from ..store.housekeeping import claim_run
from ..store.users import find_user_by_national_code
from .output import emit

#: The housekeeping task (idp.store.housekeeping) of pruning the ledger.
LEDGER_PRUNE = "ledger-prune"


@click.group(help="The audit log (logins, tokens, consents, admin changes) and the disclosure ledger.")
def audit() -> None:
    pass


@audit.command(name="list", help="Most recent events first.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--event", help="Only this event name, e.g. login.failed.")
@click.option("--user", "user_id", help="Only events of this user id.")
@click.option("--client", "client_id", help="Only events of this client id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def list_events(limit: int, event: str | None, user_id: str | None, client_id: str | None, as_json: bool) -> None:
    rows = [
        {
            "at": e.at.isoformat(),
            "event": e.event,
            "user_id": e.user_id,
            "client_id": e.client_id,
            "ip_address": e.ip_address,
            "detail": e.detail,
        }
        for e in recent_events(limit=limit, event=event, user_id=user_id, client_id=client_id)
    ]
    lines = [
        f"{r['at']}  {r['event']:24} user={r['user_id'] or '-'} client={r['client_id'] or '-'} "
        f"ip={r['ip_address'] or '-'} {json.dumps(r['detail'], ensure_ascii=False)}"
        for r in rows
    ]
    emit(rows, as_json, "\n".join(lines) if lines else "no events")


@audit.command(name="disclosures", help="A person's disclosure ledger: which app received which claims, when.")
@click.option("--user", "national_code", required=True, help="The person's national code.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def list_disclosures(national_code: str, as_json: bool) -> None:
    try:
        code = normalize_national_code(national_code)
    except InvalidInput:
        raise click.BadParameter("must be a valid national code of 10 digits", param_hint="--user") from None
    user = find_user_by_national_code(code)
    if user is None:
        raise click.ClickException(f"no account has the national code {code}")
    rows = ledger.disclosures(ledger.LedgerQuery(user_id=user.id))
    names = client_names({row.client_id for row in rows})
    records = [ledger.as_record(row, names.get(row.client_id)) for row in rows]
    lines = [
        f"{r['last_at']}  {r['purpose']:13} x{r['count']:<4} {'NATIONAL-ID ' if r['national_id'] else ''}"
        f"{r['client_name'] or '(removed app)'} [{r['client_id']}]: {' '.join(r['claims'])}"
        for r in records
    ]
    emit(records, as_json, "\n".join(lines) if lines else "no disclosures")


def prune_ledger() -> tuple[int, dt.datetime]:
    """Delete the ledger's rows whose last release is older than ``privacy.ledger_retention``, and record when (in
    the database, idp.store.housekeeping); how many were deleted, and the cut-off."""
    claim_run(LEDGER_PRUNE)
    return _prune_and_commit()


def prune_ledger_if_due() -> tuple[int, dt.datetime] | None:
    """:func:`prune_ledger` if no prune ran in the last day (at start-up: of instances starting together, one
    prunes); None when it was not due."""
    if not claim_run(LEDGER_PRUNE, dt.timedelta(days=1)):
        rollback()
        return None
    return _prune_and_commit()


def _prune_and_commit() -> tuple[int, dt.datetime]:
    before = clock.now() - dt.timedelta(seconds=current_provider().config.privacy.ledger_retention)
    deleted = ledger.prune(before)
    audit_log.record("disclosures.pruned", deleted=deleted, before=before.isoformat())
    commit()
    return deleted, before


@audit.command(name="prune", help="Delete the disclosure ledger's rows older than privacy.ledger_retention.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def prune(as_json: bool) -> None:
    deleted, before = prune_ledger()
    emit(
        {"deleted": deleted, "before": before.isoformat()},
        as_json,
        f"deleted {deleted} disclosure ledger row(s) whose last release was before {before.isoformat()}",
    )
