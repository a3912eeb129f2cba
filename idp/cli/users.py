"""``idp users``: seed or migrate identity-verified accounts."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import clock
from ..passwords import hash_password
from ..provider import current_provider
from ..rules import InvalidInput
from ..rules.birthdate import parse_iso_birthdate
from ..rules.mobile import normalize_mobile
from ..rules.national_code import normalize_national_code
from ..rules.password import check_password
from ..store import audit, commit
from ..store.models import User
from ..store.users import DuplicateNationalCode, create_user, find_user_by_national_code
from .output import emit

MESSAGES = {
    "national_code.required": ("--national-code", "is required"),
    "national_code.format": ("--national-code", "must be 10 digits"),
    "national_code.invalid": ("--national-code", "fails the check digit"),
    "mobile.required": ("--mobile", "is required"),
    "mobile.format": ("--mobile", "must be an Iranian mobile number such as 09121234567"),
    "birthdate.format": ("--birthdate", "must be a Gregorian date YYYY-MM-DD"),
    "birthdate.future": ("--birthdate", "must be in the past"),
    "birthdate.too_old": ("--birthdate", "is more than 130 years ago"),
    "password.too_short": ("--password", "must be at least 8 characters"),
    "password.too_long": ("--password", "must be at most 256 characters"),
    "password.personal": ("--password", "must not be the national code, mobile or birth date"),
}


def admin_import_evidence(verifier: str) -> list[dict[str, object]]:
    """Evidence reported in ``verified_claims`` for an account an admin imported from a verified source."""
    return [
        {
            "type": "electronic_record",
            "check_details": [{"check_method": "data", "organization": verifier}],
            "time": clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "record": {
                "type": "population_register",
                "source": {"name": "admin import", "country_code": "IRN"},
            },
        }
    ]


def _user_dict(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "national_code": user.national_code,
        "mobile": user.mobile,
        "birthdate": user.birthdate.isoformat(),
        "given_name": user.given_name,
        "family_name": user.family_name,
        "identity_verified_at": user.identity_verified_at.isoformat() if user.identity_verified_at else None,
        "created_at": user.created_at.isoformat(),
    }


@click.group(help="User accounts.")
def users() -> None:
    pass


@users.command(help="Create an identity-verified account (for seeding and migration).")
@click.option("--national-code", required=True)
@click.option("--mobile", required=True)
@click.option("--birthdate", required=True, help="Gregorian, YYYY-MM-DD.")
@click.option("--given-name", required=True)
@click.option("--family-name", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="Asked for when omitted.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def create(
    national_code: str,
    mobile: str,
    birthdate: str,
    given_name: str,
    family_name: str,
    password: str,
    as_json: bool,
) -> None:
    try:
        code = normalize_national_code(national_code)
        phone = normalize_mobile(mobile)
        born = parse_iso_birthdate(birthdate, clock.now().date())
        check_password(password, national_code=code, mobile=phone, birthdate=born)
    except InvalidInput as error:
        option, message = MESSAGES[error.reason]
        raise click.BadParameter(message, param_hint=option) from None
    names = {"--given-name": given_name.strip(), "--family-name": family_name.strip()}
    for option, value in names.items():
        if not value or len(value) > 100:
            raise click.BadParameter("must be 1 to 100 characters", param_hint=option)
    try:
        user = create_user(
            national_code=code,
            mobile=phone,
            birthdate=born,
            given_name=names["--given-name"],
            family_name=names["--family-name"],
            password_hash=hash_password(password),
            identity_evidence=admin_import_evidence(current_provider().config.identity.verifier_name),
        )
    except DuplicateNationalCode:
        raise click.ClickException(f"an account with national code {code} exists already") from None
    audit.record("user.created", user_id=user.id, by="cli")
    commit()
    emit(_user_dict(user), as_json, f"created user {user.id} ({user.given_name} {user.family_name}, {code})")


@users.command(help="Show an account by national code.")
@click.argument("national_code")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def show(national_code: str, as_json: bool) -> None:
    try:
        code = normalize_national_code(national_code)
    except InvalidInput:
        raise click.BadParameter("not a valid national code", param_hint="NATIONAL_CODE") from None
    user = find_user_by_national_code(code)
    if user is None:
        raise click.ClickException(f"no account with national code {code}")
    data = _user_dict(user)
    emit(data, as_json, "\n".join(f"{k}: {v}" for k, v in data.items()))
