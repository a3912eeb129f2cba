"""``idp clients``: register and manage relying parties. Secrets are printed once and stored hashed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext

from ..store import audit, commit
from ..store.clients import (
    AUTH_METHODS,
    GRANT_TYPES,
    ID_TOKEN_ALGS,
    PROFILES,
    REQUEST_OBJECT_ALGS,
    SUBJECT_TYPES,
    InvalidRegistration,
    Registration,
    create_client,
    delete_client,
    forget_cached_clients,
    get_client,
    list_clients,
    registration_of,
    rotate_secret,
    update_client,
)
from ..store.models import Client
from .output import emit


def _client_dict(client: Client, secret: str | None = None, include_secret: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "client_id": client.client_id,
        "name": client.name,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "scope": client.scope,
        "grant_types": client.grant_types,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "jwks_uri": client.jwks_uri,
        "has_jwks": client.jwks is not None,
        "subject_type": client.subject_type,
        "sector_identifier": client.sector_identifier,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "trusted": client.trusted,
        "profile": client.profile,
        "require_par": client.require_par,
        "dpop_bound": client.dpop_bound,
        "request_object_signing_alg": client.request_object_signing_alg,
        "resources": list(client.resources or []),
        "created_at": client.created_at.isoformat(),
    }
    if include_secret:
        data["client_secret"] = secret
    return data


def _text(data: dict[str, Any]) -> str:
    lines = []
    for key, value in data.items():
        if isinstance(value, list):
            value = " ".join(value) if value else "-"
        lines.append(f"{key}: {value if value is not None else '-'}")
    return "\n".join(lines)


def _load_jwks(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise click.BadParameter(f"cannot read a JWK set from {path}: {error}", param_hint="--jwks") from None


def registration_options(for_update: bool):
    """The options shared by ``create`` and ``update``; on update every option is optional."""

    def decorate(func):
        options = [
            click.option("--name", required=not for_update, help="Name shown to users on the consent page."),
            click.option("--redirect-uri", "redirect_uris", multiple=True, help="Exact redirect URI (repeatable)."),
            click.option(
                "--post-logout-redirect-uri",
                "post_logout_redirect_uris",
                multiple=True,
                help="Where to return after logout (repeatable).",
            ),
            click.option("--scope", help='Space-separated scopes it may ask for, e.g. "openid profile national_id".'),
            click.option("--auth-method", type=click.Choice(AUTH_METHODS), help="Token endpoint authentication."),
            click.option("--jwks-uri", help="URL of the client's public keys (private_key_jwt)."),
            click.option("--jwks", "jwks_file", type=click.Path(dir_okay=False), help="File with its public JWK set."),
            click.option(
                "--grant-type",
                "grant_types",
                multiple=True,
                type=click.Choice(GRANT_TYPES),
                help="Repeatable.",
            ),
            click.option("--subject-type", type=click.Choice(SUBJECT_TYPES), help="pairwise (default) or public."),
            click.option("--sector-identifier", help="Share pairwise subjects with clients of the same sector."),
            click.option("--id-token-alg", type=click.Choice(ID_TOKEN_ALGS), help="ID token signing algorithm."),
            click.option(
                "--backchannel-logout-uri",
                help="Where to POST a logout token when a user's session ends (Back-Channel Logout 1.0).",
            ),
            click.option(
                "--trusted/--not-trusted",
                default=None,
                help="A trusted (first-party) client skips the consent page.",
            ),
            click.option(
                "--profile",
                type=click.Choice(PROFILES),
                help="fapi2: FAPI 2.0 Security Profile (PAR, private_key_jwt, DPoP); default: standard.",
            ),
            click.option(
                "--require-par/--no-require-par",
                default=None,
                help="Authorization requests must be pushed first (RFC 9126).",
            ),
            click.option(
                "--dpop-bound/--no-dpop-bound",
                default=None,
                help="Every token request must carry a DPoP proof (RFC 9449).",
            ),
            click.option(
                "--request-object-alg",
                type=click.Choice(REQUEST_OBJECT_ALGS),
                help="The algorithm its signed request objects use (RFC 9101).",
            ),
            click.option(
                "--resource",
                "resources",
                multiple=True,
                help="A resource server it may ask access tokens for (RFC 8707), repeatable.",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _changes(options: dict[str, Any]) -> dict[str, Any]:
    mapping = {
        "name": options.get("name"),
        "redirect_uris": list(options["redirect_uris"]) if options.get("redirect_uris") else None,
        "post_logout_redirect_uris": list(options["post_logout_redirect_uris"])
        if options.get("post_logout_redirect_uris")
        else None,
        "scope": options.get("scope"),
        "token_endpoint_auth_method": options.get("auth_method"),
        "jwks_uri": options.get("jwks_uri"),
        "jwks": _load_jwks(options.get("jwks_file")),
        "grant_types": list(options["grant_types"]) if options.get("grant_types") else None,
        "subject_type": options.get("subject_type"),
        "sector_identifier": options.get("sector_identifier"),
        "id_token_signed_response_alg": options.get("id_token_alg"),
        "backchannel_logout_uri": options.get("backchannel_logout_uri"),
        "trusted": options.get("trusted"),
        "profile": options.get("profile"),
        "require_par": options.get("require_par"),
        "dpop_bound": options.get("dpop_bound"),
        "request_object_signing_alg": options.get("request_object_alg"),
        "resources": list(options["resources"]) if options.get("resources") else None,
    }
    return {key: value for key, value in mapping.items() if value is not None}


def _fail(error: InvalidRegistration) -> click.ClickException:
    return click.BadParameter(str(error).split(": ", 1)[-1], param_hint=f"--{error.field}")


@click.group(help="Relying parties: create, list, show, update, rotate-secret, delete.")
def clients() -> None:
    pass


@clients.command(help="Register a client; its secret is printed once.")
@registration_options(for_update=False)
@with_appcontext
def create(as_json: bool, **options: Any) -> None:
    changes = _changes(options)
    try:
        client, secret = create_client(Registration(**changes))
    except InvalidRegistration as error:
        raise _fail(error) from None
    audit.record("client.created", client_id=client.client_id, name=client.name)
    commit()
    forget_cached_clients()
    data = _client_dict(client, secret, include_secret=True)
    text = _text(data)
    if secret:
        text += "\n\nStore the client secret now: it is shown only once and kept only as a hash."
    emit(data, as_json, text)


@clients.command(name="list", help="All clients.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def list_(as_json: bool) -> None:
    rows = [_client_dict(c) for c in list_clients()]
    lines = [f"{r['client_id']}  {r['token_endpoint_auth_method']:19}  {r['name']}" for r in rows]
    emit(rows, as_json, "\n".join(lines) if lines else "no clients")


def _get(client_id: str) -> Client:
    client = get_client(client_id, fresh=True)
    if client is None:
        raise click.ClickException(f"no client with id {client_id}")
    return client


@clients.command(help="One client's registration.")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def show(client_id: str, as_json: bool) -> None:
    data = _client_dict(_get(client_id))
    emit(data, as_json, _text(data))


@clients.command(help="Change a registration; options not given keep their value (lists are replaced).")
@click.argument("client_id")
@registration_options(for_update=True)
@with_appcontext
def update(client_id: str, as_json: bool, **options: Any) -> None:
    client = _get(client_id)
    changes = _changes(options)
    if "jwks" in changes:
        changes["jwks_uri"] = None
    elif "jwks_uri" in changes:
        changes["jwks"] = None
    if "profile" in changes:
        # What the old profile implied is decided afresh by the new one, unless given now.
        for implied in ("require_par", "dpop_bound", "id_token_signed_response_alg"):
            changes.setdefault(implied, None)
    try:
        secret = update_client(client, dataclasses.replace(registration_of(client), **changes))
    except InvalidRegistration as error:
        raise _fail(error) from None
    audit.record("client.updated", client_id=client.client_id, fields=sorted(changes))
    commit()
    forget_cached_clients()
    data = _client_dict(client, secret, include_secret=secret is not None)
    emit(data, as_json, _text(data))


@clients.command(name="rotate-secret", help="Issue a new secret; the old one stops working at once.")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def rotate_secret_(client_id: str, as_json: bool) -> None:
    client = _get(client_id)
    try:
        secret = rotate_secret(client)
    except InvalidRegistration as error:
        raise _fail(error) from None
    audit.record("client.secret_rotated", client_id=client.client_id)
    commit()
    forget_cached_clients()
    emit(
        {"client_id": client.client_id, "client_secret": secret},
        as_json,
        f"client_id: {client.client_id}\nclient_secret: {secret}\n\nStore it now: it is shown only once.",
    )


@clients.command(help="Delete a client with its consents and grants (every token it holds stops working).")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def delete(client_id: str, yes: bool, as_json: bool) -> None:
    client = _get(client_id)
    if not yes and not as_json:
        click.confirm(f"Delete client {client.name} ({client_id})?", abort=True)
    delete_client(client)
    audit.record("client.deleted", client_id=client_id)
    commit()
    forget_cached_clients()
    emit({"client_id": client_id, "deleted": True}, as_json, f"deleted {client_id}")
