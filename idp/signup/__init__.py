"""The ``signup`` blueprint: the registration wizard, as EMTA has it.

1. mobile number and CAPTCHA: a code is texted to the number;
2. national code, Jalali birth date, password twice and the code: the server checks the code, that the
   registry has the mobile in the name of the national code and a person with that national code and birth
   date, and that the national code has no account yet;
3. the account is created in one transaction, marked identity-verified with the registry as evidence, the
   user is logged in and returned to the relying party that sent them.

When the registry does not answer, the user is told to try later: no account is half made and the code
stays usable until it expires.
"""

from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, render_template
from flask_babel import gettext

from .. import clock
from ..auth.flow import (
    PendingAuthorization,
    captcha_due,
    check_code_attempt,
    client_of,
    code_not_sent_message,
    done,
    for_pending_authorization,
    forget,
    recall,
    registry_unavailable_message,
    remember,
    send_code,
    shown_with_captcha_if_due,
    with_tx,
)
from ..i18n import display_mobile
from ..identity_registry import Person, RegistryUnavailable
from ..otp import CodeNotSent, claim_code
from ..passwords import hash_password
from ..provider import current_provider
from ..rules import InvalidInput
from ..rules.birthdate import jalali_to_gregorian
from ..store import audit, commit, rollback
from ..store.users import DuplicateNationalCode, create_user, find_user_by_national_code
from ..web.forms import ButtonForm, RegisterDetailsForm, RegisterStartForm, password_refusal, rule_message
from ..web.login_state import log_in

bp = Blueprint("signup", __name__)
FLOW = "registration"


@bp.route("/register", methods=["GET", "POST"])
@for_pending_authorization
def start(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    form = RegisterStartForm()
    if form.validate_on_submit():
        mobile = form.mobile.data
        try:
            send_code("register", mobile, captcha_solved=form.shows_captcha)
            remember(FLOW, mobile=mobile)
            return redirect(with_tx("signup.details", pending), 303)
        except CodeNotSent as error:
            form.mobile.errors = [code_not_sent_message(error)]
    form.tx.data = pending.id if pending else ""
    return render_template("signup/start.html", form=form, client=client_of(pending), pending=pending, step=1)


@bp.route("/register/details", methods=["GET", "POST"])
@for_pending_authorization
def details(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    state = recall(FLOW)
    if state is None:
        return redirect(with_tx("signup.start", pending))
    mobile = state["mobile"]
    form = RegisterDetailsForm(show_captcha=captcha_due(code_target=mobile))
    if form.validate_on_submit():
        result = _register(form, mobile)
        if result is not None:
            forget(FLOW)
            log_in(result, amr=["sms"])
            flash(gettext("Your Hoviyat account is ready."), "info")
            return done(pending)
        form = shown_with_captcha_if_due(form, code_target=mobile)
    form.tx.data = pending.id if pending else ""
    return render_template(
        "signup/details.html",
        form=form,
        resend_form=ButtonForm(),
        mobile=mobile,
        client=client_of(pending),
        pending=pending,
        step=2,
    )


def _register(form: RegisterDetailsForm, mobile: str):
    """Check everything in the order that leaks least, then create the account; None with errors set."""
    try:
        birthdate = jalali_to_gregorian(
            form.birth_year.data, form.birth_month.data, form.birth_day.data, clock.now().date()
        )
    except InvalidInput as error:
        form.birth_day.errors = [rule_message(error.reason)]
        return None
    national_code = form.national_code.data
    refusal = password_refusal(form.password.data, national_code=national_code, mobile=mobile, birthdate=birthdate)
    if refusal is not None:
        form.password.errors = [refusal]
        return None
    # The code first: without it nobody learns anything from the registry through this page.
    error = check_code_attempt("register", mobile, form.code.data, form.shows_captcha, use_up=False)
    if error is not None:
        form.code.errors = [error]
        return None
    registry = current_provider().registry
    try:
        if not registry.mobile_belongs_to(national_code, mobile):
            form.national_code.errors = [
                gettext(
                    "The mobile number %(mobile)s is not registered in the name of this national code.",
                    mobile=display_mobile(mobile),
                )
            ]
            return None
        person = registry.find_person(national_code, birthdate)
    except RegistryUnavailable:
        form.national_code.errors = [registry_unavailable_message()]
        return None
    if person is None:
        form.birth_day.errors = [gettext("The national code and the date of birth do not match the civil registry.")]
        return None
    if find_user_by_national_code(national_code) is not None:
        form.national_code.errors = [_already_registered()]
        return None
    if not claim_code("register", mobile):
        form.code.errors = [gettext("The code is not correct or has expired.")]
        return None
    return _create_account(person, mobile, form.password.data, registry.source_name, form)


def _already_registered() -> str:
    # Says nothing about the existing account (not its mobile, not when it was made).
    return gettext(
        "This national code already has a Hoviyat account. Log in, or recover your password if you forgot it."
    )


def _create_account(person: Person, mobile: str, password: str, source: str, form: RegisterDetailsForm):
    verifier = current_provider().config.identity.verifier_name
    now = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    evidence = [
        {
            "type": "electronic_record",
            "check_details": [{"check_method": "data", "organization": verifier, "time": now}],
            "time": now,
            "record": {"type": "population_register", "source": {"name": source, "country_code": "IRN"}},
        }
    ]
    try:
        user = create_user(
            national_code=person.national_code,
            mobile=mobile,
            birthdate=person.birthdate,
            given_name=person.given_name,
            family_name=person.family_name,
            password_hash=hash_password(password),
            identity_evidence=evidence,
        )
        audit.record("user.registered", user_id=user.id, mobile_verified=True)
        commit()
    except DuplicateNationalCode:
        rollback()
        form.national_code.errors = [_already_registered()]
        return None
    except Exception:
        rollback()  # e.g. two registrations of one national code at once: the unique index refused the second
        if find_user_by_national_code(person.national_code) is not None:
            form.national_code.errors = [_already_registered()]
            return None
        raise
    return user


@bp.post("/register/resend")
@for_pending_authorization
def resend(pending: PendingAuthorization | None) -> Response | tuple[str, int] | str:
    state = recall(FLOW)
    if state is None or not ButtonForm().validate_on_submit():
        return redirect(with_tx("signup.start", pending))
    try:
        send_code("register", state["mobile"], captcha_solved=False)
        flash(gettext("A new code was sent."), "info")
    except CodeNotSent as error:
        flash(code_not_sent_message(error), "error")
    return redirect(with_tx("signup.details", pending), 303)
