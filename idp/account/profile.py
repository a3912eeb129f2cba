"""Profile: the registry-verified fields (read-only, refreshable from the registry), the email address
(verified by a code sent to it) and the postal address."""

from __future__ import annotations

from flask import Response, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext

from .. import clock
from ..auth.flow import (
    captcha_due,
    check_code_attempt,
    code_not_sent_message,
    forget,
    recall,
    registry_unavailable_message,
    remember,
    shown_with_captcha_if_due,
)
from ..identity_registry import RegistryUnavailable
from ..mail import MailUnavailable
from ..oidc.claim_labels import trust_framework_name
from ..ops.metrics import CODES_SENT
from ..otp import CodeNotSent, issue_code, withdraw_code
from ..provider import current_provider
from ..rate_limits import client_address
from ..rules.birthdate import gregorian_to_jalali
from ..store import audit, commit
from ..web.forms import AddressForm, ButtonForm, CodeForm, EmailForm
from .blueprint import bp, login_required

EMAIL_FLOW = "email_change"


@bp.get("/")
@login_required
def home() -> str:
    user = g.login.user
    return render_template(
        "account/home.html",
        user=user,
        login=g.login,
        jalali_birthdate=gregorian_to_jalali(user.birthdate),
        checked_by=trust_framework_name(current_provider().config.identity.trust_framework),
        refresh_form=ButtonForm(),
        logout_form=ButtonForm(),
    )


@bp.post("/account/refresh")
@login_required
def refresh_from_registry() -> Response:
    """Re-read the verified names from the registry (a name corrected at the civil registry, say)."""
    if not ButtonForm().validate_on_submit():
        return redirect(url_for("account.home"))
    user = g.login.user
    try:
        person = current_provider().registry.find_person(user.national_code, user.birthdate)
    except RegistryUnavailable:
        flash(registry_unavailable_message(), "error")
        return redirect(url_for("account.home"), 303)
    if person is None:
        flash(
            gettext("The registry no longer has this national code with this date of birth. Contact support."), "error"
        )
    elif (person.given_name, person.family_name) == (user.given_name, user.family_name):
        flash(gettext("Your details match the registry; nothing changed."), "info")
    else:
        user.given_name, user.family_name = person.given_name, person.family_name
        user.identity_verified_at = clock.now()
        user.updated_at = clock.now()
        audit.record("profile.refreshed_from_registry", user_id=user.id)
        commit()
        flash(gettext("Your name was updated from the registry."), "info")
    return redirect(url_for("account.home"), 303)


@bp.route("/account/email", methods=["GET", "POST"])
@login_required
def email() -> Response | str:
    user = g.login.user
    form = EmailForm()
    if request.method == "GET" and user.email:
        form.email.data = user.email
    if form.validate_on_submit():
        address = form.email.data
        try:
            # The owner, logged in: the owner's budget for the address (idp.otp).
            code, _sent = issue_code("verify_email", address, client_address(), verified=True)
            subject = gettext("Your Hoviyat email code")
            text = gettext("Your code to confirm this email address for Hoviyat: %(code)s", code=code)
            try:
                current_provider().mail.send(address, subject, text, purpose="verify_email", code=code)
            except MailUnavailable:
                withdraw_code("verify_email", address)
                raise CodeNotSent("unavailable") from None
            CODES_SENT.labels(channel="email", purpose="verify_email").inc()
            remember(EMAIL_FLOW, email=address)
            return redirect(url_for("account.email_verify"), 303)
        except CodeNotSent as error:
            form.email.errors = [code_not_sent_message(error, by_email=True)]
    return render_template("account/email.html", form=form, user=user)


@bp.route("/account/email/verify", methods=["GET", "POST"])
@login_required
def email_verify() -> Response | str:
    state = recall(EMAIL_FLOW)
    if state is None:
        return redirect(url_for("account.email"))
    form = CodeForm(show_captcha=captcha_due(code_target=state["email"]))
    if form.validate_on_submit():
        error = check_code_attempt("verify_email", state["email"], form.code.data, form.shows_captcha)
        if error is None:
            user = g.login.user
            user.email, user.email_verified, user.updated_at = state["email"], True, clock.now()
            audit.record("email.verified", user_id=user.id)
            commit()
            forget(EMAIL_FLOW)
            flash(gettext("Your email address is confirmed."), "info")
            return redirect(url_for("account.home"), 303)
        form.code.errors = [error]
        form = shown_with_captcha_if_due(form, code_target=state["email"])
    return render_template("account/email_verify.html", form=form, email=state["email"])


@bp.route("/account/address", methods=["GET", "POST"])
@login_required
def address() -> Response | str:
    user = g.login.user
    form = AddressForm()
    if request.method == "GET":
        form.postal_address.data = user.postal_address
        form.postal_code.data = user.postal_code
    if form.validate_on_submit():
        user.postal_address = form.postal_address.data.strip()
        user.postal_code = form.postal_code.data
        user.updated_at = clock.now()
        audit.record("address.changed", user_id=user.id)
        commit()
        flash(gettext("Your postal address is saved."), "info")
        return redirect(url_for("account.home"), 303)
    return render_template("account/address.html", form=form)
