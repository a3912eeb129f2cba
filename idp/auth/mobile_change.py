"""Changing the mobile number as EMTA does it, for people who may have lost the old SIM:

1. national code, CAPTCHA and the new number; the registry must confirm the new number belongs to that
   national code; a code goes to the new number;
2. that code and the account's current password. The number changes, the old number gets a notice, other
   sessions end and their refresh tokens are revoked, and the user is logged in (password + SMS: loa:2).
"""

from __future__ import annotations

import logging

from flask import Response, redirect, render_template, url_for
from flask_babel import gettext

from .. import clock
from ..identity_registry import RegistryUnavailable
from ..otp import CodeNotSent, consume_code
from ..provider import current_provider
from ..rules.mobile import mask_mobile
from ..sms import SmsUnavailable
from ..store import audit, commit
from ..web.forms import ChangeMobileConfirmForm, ChangeMobileStartForm
from ..web.login_state import end_other_sessions, log_in, notify_sessions_ended
from .blueprint import bp
from .flow import code_not_sent_message, forget, recall, registry_unavailable_message, remember, send_code
from .password_login import check_password_attempt

FLOW = "mobile_change"
log = logging.getLogger(__name__)


@bp.route("/mobile/change", methods=["GET", "POST"])
def change_mobile() -> Response | str:
    form = ChangeMobileStartForm()
    if form.validate_on_submit():
        national_code, mobile = form.national_code.data, form.mobile.data
        try:
            owned = current_provider().registry.mobile_belongs_to(national_code, mobile)
        except RegistryUnavailable:
            owned = None
            form.mobile.errors = [registry_unavailable_message()]
        if owned is False:
            form.mobile.errors = [gettext("This mobile number is not registered in the name of this national code.")]
        elif owned:
            try:
                send_code("change_mobile", mobile)
                remember(FLOW, national_code=national_code, mobile=mobile)
                return redirect(url_for("auth.change_mobile_confirm"), 303)
            except CodeNotSent as error:
                form.mobile.errors = [code_not_sent_message(error)]
    return render_template("change_mobile.html", form=form)


@bp.route("/mobile/change/confirm", methods=["GET", "POST"])
def change_mobile_confirm() -> Response | tuple[str, int] | str:
    state = recall(FLOW)
    if state is None:
        return redirect(url_for("auth.change_mobile"))
    form = ChangeMobileConfirmForm()
    if form.validate_on_submit():
        user, error = check_password_attempt(state["national_code"], form.password.data, captcha_solved=None)
        if user is None:
            form.password.errors = [error]
        elif not consume_code("change_mobile", state["mobile"], form.code.data):
            form.code.errors = [gettext("The code is not correct or has expired.")]
        else:
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
    return render_template("change_mobile_confirm.html", form=form, mobile=state["mobile"])


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
