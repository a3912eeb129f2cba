"""Security settings: changing the password and the authenticator app (TOTP) with its recovery codes.

Turning the app on or off and making new recovery codes change the account's second factors: each needs a fresh
login of two factors (idp.account.blueprint.fresh_login), is recorded in the security events and is texted to
the mobile."""

from __future__ import annotations

from flask import Response, flash, g, redirect, render_template, session, url_for
from flask_babel import gettext

from .. import totp
from ..auth.flow import captcha_due, send_notice, shown_with_captcha_if_due
from ..auth.password_login import check_password_attempt
from ..passwords import hash_password
from ..store import audit, commit
from ..web.forms import ButtonForm, ChangePasswordForm, TotpDisableForm, TotpEnableForm, password_refusal
from ..web.login_state import end_other_sessions, notify_sessions_ended
from .blueprint import bp, confirm_first, confirm_url, fresh_login, login_required

ENROLMENT = "totp_enrolment"


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password() -> Response | str:
    user = g.login.user
    form = ChangePasswordForm(show_captcha=captcha_due(national_code=user.national_code))
    if form.validate_on_submit():
        person, error = check_password_attempt(user.national_code, form.current_password.data, form.shows_captcha)
        if person is None or person.id != user.id:
            form.current_password.errors = [error or gettext("The password is not correct.")]
            form = shown_with_captcha_if_due(form, national_code=user.national_code)
        else:
            refusal = password_refusal(
                form.password.data, national_code=user.national_code, mobile=user.mobile, birthdate=user.birthdate
            )
            if refusal is not None:
                form.password.errors = [refusal]
            else:
                user.password_hash = hash_password(form.password.data)
                ended = end_other_sessions(user, keep=g.login, reason="password_changed")
                audit.record("password.changed", user_id=user.id, other_sessions_ended=len(ended))
                commit()
                notify_sessions_ended(ended)
                flash(gettext("Your password is changed. Other devices were logged out."), "info")
                return redirect(url_for("account.home"), 303)
    return render_template("account/password.html", form=form)


NEXT_PAGE = "two-factor"


@bp.route("/account/two-factor", methods=["GET", "POST"])
@login_required
def two_factor() -> Response | str:
    user = g.login.user
    fresh = fresh_login()
    if user.has_totp:
        return render_template(
            "account/two_factor.html",
            enabled=True,
            fresh=fresh,
            confirm_url=confirm_url(NEXT_PAGE),
            remaining=totp.remaining_recovery_codes(user),
            disable_form=TotpDisableForm(show_captcha=captcha_due(national_code=user.national_code)),
            regenerate_form=ButtonForm(),
        )
    if not fresh:
        # The key is not even shown: it would be the one a stranger with the password or SIM enrols.
        return render_template(
            "account/two_factor.html", enabled=False, fresh=False, confirm_url=confirm_url(NEXT_PAGE)
        )
    secret = session.get(ENROLMENT) or totp.new_secret()
    session[ENROLMENT] = secret
    form = TotpEnableForm()
    if form.validate_on_submit():
        codes = totp.enable(user, secret, form.code.data)
        if codes is not None:
            audit.record("totp.enabled", user_id=user.id)
            commit()
            session.pop(ENROLMENT, None)
            _notify(user.mobile, gettext("Hoviyat: an authenticator app was turned on for your account."))
            return render_template("account/recovery_codes.html", codes=codes)
        form.code.errors = [gettext("The code is not correct. Check the time on your phone and type the new code.")]
    uri = totp.provisioning_uri(secret, f"{user.given_name} {user.family_name}")
    return render_template(
        "account/two_factor.html", enabled=False, fresh=True, form=form, qr=totp.qr_data_uri(uri), secret=secret
    )


def _notify(mobile: str, what: str) -> None:
    """Tell the owner by SMS, so a change they did not make does not go unnoticed."""
    send_notice(
        mobile, what + " " + gettext("If you did not do this, contact support at once."), purpose="second_factor"
    )


@bp.post("/account/two-factor/disable")
@login_required
def two_factor_disable() -> Response | str:
    user = g.login.user
    form = TotpDisableForm(show_captcha=captcha_due(national_code=user.national_code))
    if form.is_submitted() and not fresh_login():
        return confirm_first(NEXT_PAGE, gettext("To turn off the authenticator app, first confirm it is you."))
    if form.validate_on_submit():
        person, error = check_password_attempt(user.national_code, form.password.data, form.shows_captcha)
        if person is not None and person.id == user.id:
            totp.disable(user)
            audit.record("totp.disabled", user_id=user.id)
            commit()
            _notify(user.mobile, gettext("Hoviyat: the authenticator app of your account was turned off."))
            flash(gettext("The authenticator app is turned off."), "info")
            return redirect(url_for("account.two_factor"), 303)
        flash(error or gettext("The password is not correct."), "error")
    elif form.is_submitted():
        # This form is drawn on another page: say what was missing (a CAPTCHA asked for since, say).
        for errors in form.errors.values():
            flash(str(errors[0]), "error")
    return redirect(url_for("account.two_factor"), 303)


@bp.post("/account/two-factor/recovery-codes")
@login_required
def regenerate_recovery_codes() -> Response | str:
    user = g.login.user
    if not user.has_totp or not ButtonForm().validate_on_submit():
        return redirect(url_for("account.two_factor"))
    if not fresh_login():
        return confirm_first(NEXT_PAGE, gettext("To make new recovery codes, first confirm it is you."))
    codes = totp.replace_recovery_codes(user)
    audit.record("totp.recovery_codes_replaced", user_id=user.id)
    commit()
    _notify(user.mobile, gettext("Hoviyat: new recovery codes were made for your account."))
    return render_template("account/recovery_codes.html", codes=codes)
