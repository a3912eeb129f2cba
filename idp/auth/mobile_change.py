"""Changing the mobile number as EMTA does it, for people who may have lost the old SIM:

1. national code, CAPTCHA and the new number. Whatever the registry says, the answer is the same ("if the
   number is registered in your name, we texted a code to it"): a code goes to the new number only when the
   registry confirms it belongs to that national code AND that national code has an account. Counted per
   address, per national code and per number before the registry is asked (``limits.mobile_change_*``);
2. that code and the account's current password: the code first, so the page tests no password for anyone
   without the new SIM; the password under the login throttle, with the CAPTCHA it asks for. The number
   changes, the old number gets a notice, other sessions end and their refresh tokens are revoked, and the
   user is logged in (password + SMS: loa:2).
"""

from __future__ import annotations

import logging

from flask import Response, redirect, render_template, url_for
from flask_babel import gettext

from .. import clock
from ..identity_registry import RegistryUnavailable
from ..otp import CodeNotSent, charge_code_request, claim_code
from ..provider import current_provider
from ..rate_limits import charge_all, client_address, limited
from ..rules.mobile import mask_mobile
from ..security import sha256_hex
from ..sms import SmsUnavailable
from ..store import audit, commit
from ..store.models import User
from ..store.users import find_user_by_national_code
from ..web.forms import ChangeMobileConfirmForm, ChangeMobileStartForm
from ..web.login_state import end_other_sessions, log_in, notify_sessions_ended
from .blueprint import bp
from .flow import (
    asked_by_owner,
    captcha_due,
    check_code_attempt,
    code_not_sent_message,
    forget,
    recall,
    registry_unavailable_message,
    remember,
    send_code,
    shown_with_captcha_if_due,
)
from .password_login import check_password_attempt

FLOW = "mobile_change"
log = logging.getLogger(__name__)


@bp.route("/mobile/change", methods=["GET", "POST"])
@limited(lambda config: config.limits.mobile_change_per_ip, "mobile-change")
def change_mobile() -> Response | str:
    form = ChangeMobileStartForm()
    if form.validate_on_submit():
        national_code, mobile = form.national_code.data, form.mobile.data
        _charge(national_code, mobile)
        try:
            _send_code_if_owner(national_code, mobile, captcha_solved=form.shows_captcha)
            remember(FLOW, national_code=national_code, mobile=mobile)
            return redirect(url_for("auth.change_mobile_confirm"), 303)
        except RegistryUnavailable:
            form.mobile.errors = [registry_unavailable_message()]
        except CodeNotSent as error:
            form.mobile.errors = [code_not_sent_message(error)]
    return render_template("change_mobile.html", form=form)


def _charge(national_code: str, mobile: str) -> None:
    """Count this request per national code and per number (429 when either is used up)."""
    limits = current_provider().config.limits
    charge_all(
        [
            (limits.mobile_change_per_national_code, "mobile-change-national-code", sha256_hex(national_code)),
            (limits.mobile_change_per_mobile, "mobile-change-mobile", sha256_hex(mobile)),
        ]
    )


def _send_code_if_owner(national_code: str, mobile: str, *, captcha_solved: bool) -> None:
    """Text a code to ``mobile`` when it is the national code's and the national code has an account; else
    go through the same limits (of the same number) without texting anything. Raises CodeNotSent and
    RegistryUnavailable, whoever asks."""
    user = find_user_by_national_code(national_code)
    owned = current_provider().registry.mobile_belongs_to(national_code, mobile)
    if owned and user is not None:
        send_code("change_mobile", mobile, captcha_solved=captcha_solved)
    else:
        verified = asked_by_owner(mobile, captcha_solved)
        charge_code_request("change_mobile", mobile, client_address(), verified=verified)


@bp.route("/mobile/change/confirm", methods=["GET", "POST"])
def change_mobile_confirm() -> Response | tuple[str, int] | str:
    state = recall(FLOW)
    if state is None:
        return redirect(url_for("auth.change_mobile"))
    keys = {"national_code": state["national_code"], "code_target": state["mobile"]}
    form = ChangeMobileConfirmForm(show_captcha=captcha_due(**keys))
    if form.validate_on_submit():
        user = _confirmed(form, state["national_code"], state["mobile"])
        if user is not None:
            old_mobile = user.mobile
            user.mobile = state["mobile"]
            user.updated_at = clock.now()
            ended = end_other_sessions(user, keep=None, reason="mobile_changed")
            audit.record("mobile.changed", user_id=user.id, old=mask_mobile(old_mobile), new=mask_mobile(user.mobile))
            commit()
            notify_sessions_ended(ended)
            forget(FLOW)
            _notify_old_number(old_mobile, user.mobile)
            log_in(user, amr=["pwd", "sms"])
            return redirect(url_for("account.home"), 303)
        form = shown_with_captcha_if_due(form, **keys)
    return render_template("change_mobile_confirm.html", form=form, mobile=state["mobile"])


def _confirmed(form: ChangeMobileConfirmForm, national_code: str, mobile: str) -> User | None:
    """The account, when the code sent to the new number and then the account's password are right (the code
    is used up only then); else None with the field's error set."""
    error = check_code_attempt("change_mobile", mobile, form.code.data, form.shows_captcha, use_up=False)
    if error is not None:
        form.code.errors = [error]
        return None
    user, error = check_password_attempt(national_code, form.password.data, form.shows_captcha)
    if user is None:
        form.password.errors = [error or ""]
        return None
    if claim_code("change_mobile", mobile) is None:  # another request used it a moment ago
        form.code.errors = [gettext("The code is not correct or has expired.")]
        return None
    return user


def _notify_old_number(old_mobile: str, new_mobile: str) -> None:
    """Tell the old number, so an owner who did not ask learns of it; a failure here changes nothing."""
    text = gettext(
        "Hoviyat: the mobile number of your account was changed to %(mobile)s. If you did not do this, "
        "contact support at once.",
        mobile=mask_mobile(new_mobile),
    )
    try:
        current_provider().sms.send(old_mobile, text, purpose="change_mobile")
    except SmsUnavailable:
        log.warning("could not send the mobile-change notice to the old number")
