"""``idp keys``: signing keys."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..keys import ALGORITHMS, KeyManagementError
from ..provider import current_provider
from ..store import audit, commit
from ..store.models import SigningKey
from .output import emit

ALG_OPTION = click.option(
    "--alg",
    "algs",
    multiple=True,
    type=click.Choice(list(ALGORITHMS)),
    help="Algorithm (repeatable). Default: every algorithm the provider signs with (RS256, PS256, ES256).",
)


def _default_algs(algs: tuple[str, ...]) -> list[str]:
    # Each client picks its ID tokens' algorithm (a FAPI 2.0 client PS256 or ES256), so each needs a key.
    return list(dict.fromkeys(algs)) if algs else list(ALGORITHMS)


def _row(row: SigningKey) -> dict[str, str | None]:
    return {
        "kid": row.kid,
        "alg": row.alg,
        "status": row.status,
        "created_at": row.created_at.isoformat(),
        "signs_from": row.activated_at.isoformat() if row.activated_at and row.status in ("active", "next") else None,
        "retired_at": row.retired_at.isoformat() if row.retired_at else None,
    }


@click.group(help="Signing keys: generate, list, rotate, retire.")
def keys() -> None:
    pass


@keys.command(help="Create an active key for each algorithm that has none.")
@ALG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def generate(algs: tuple[str, ...], as_json: bool) -> None:
    ring = current_provider().keys
    made = []
    for alg in _default_algs(algs):
        row = ring.generate(alg)
        if row is None:
            if not as_json:
                click.echo(f"{alg}: an active key exists already (use `idp keys rotate` for a new one)")
            continue
        audit.record("key.generated", kid=row.kid, alg=alg)
        commit()
        made.append(_row(row))
        if not as_json:
            click.echo(f"{alg}: generated key {row.kid}")
    if as_json:
        emit(made, True, "")


@keys.command(
    name="list",
    help="List keys with their status (active signs; next is published and signs from its time; published only "
    "verifies).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def list_keys(as_json: bool) -> None:
    rows = [_row(r) for r in current_provider().keys.rows()]
    lines = [
        f"{r['kid']}  {r['alg']:5}  {r['status']:9}  {r['created_at']}"
        + (f"  signs from {r['signs_from']}" if r["status"] == "next" else "")
        for r in rows
    ]
    emit(rows, as_json, "\n".join(lines) if lines else "no keys; run `idp keys generate`")


@keys.command(
    help="Make a new key: published in the JWKS now, signing after keys.publish_before_use seconds; the old one "
    "stays in the JWKS until retired."
)
@ALG_OPTION
@click.option(
    "--now",
    "at_once",
    is_flag=True,
    help="Sign with the new key at once (the old key leaked): relying parties meet an unknown kid and refetch.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def rotate(algs: tuple[str, ...], at_once: bool, as_json: bool) -> None:
    ring = current_provider().keys
    made = []
    for alg in _default_algs(algs):
        row = ring.rotate(alg, at_once=at_once)
        audit.record("key.rotated", kid=row.kid, alg=alg, at_once=at_once)
        commit()
        made.append(_row(row))
        if as_json:
            continue
        if row.status == "active":
            click.echo(f"{alg}: new active key {row.kid}; the previous one is still published for verification")
        else:
            click.echo(
                f"{alg}: new key {row.kid} is published now and signs from {row.activated_at.isoformat()}; "
                "the current key signs until then"
            )
    if as_json:
        emit(made, True, "")


# A kid is base64url and may start with "-": let such a value through as the argument, not as an option.
@keys.command(
    help="Remove a rotated-out key from the JWKS and delete its private key file.",
    context_settings={"ignore_unknown_options": True},
)
@click.argument("kid")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def retire(kid: str, as_json: bool) -> None:
    try:
        row = current_provider().keys.retire(kid)
    except KeyManagementError as error:
        raise click.ClickException(str(error)) from None
    audit.record("key.retired", kid=kid, alg=row.alg)
    commit()
    emit(_row(row), as_json, f"retired {kid}: tokens it signed no longer verify")
