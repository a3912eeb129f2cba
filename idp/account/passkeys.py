"""The account's passkeys: add one (the browser makes it), see each with its name, when it was made and last
used, and whether it is synced between devices or bound to one; remove one.

Adding or removing changes how the account can be entered, so both need a fresh login of two factors
(:func:`idp.account.blueprint.fresh_login`), and both are recorded in the security events and texted to the
mobile.
"""

from __future__ import annotations

from flask import Response, flash, g, redirect, render_template, url_for
from flask_babel import gettext

from .. import passkeys
from ..auth.flow import passkey_refused_message, send_notice
from ..store import audit, commit
from ..store.passkeys import get_passkey_of, passkeys_of, remove_passkey
from ..web.forms import ButtonForm, PasskeyAddForm
from .blueprint import bp, confirm_first, confirm_url, fresh_login, login_required


@bp.route("/account/passkeys", methods=["GET", "POST"], endpoint="passkeys")
@login_required
def passkeys_page() -> Response | str:
    user = g.login.user
    form = PasskeyAddForm()
    if form.validate_on_submit():
        if not fresh_login():
            return confirm_first("passkeys", gettext("To add a passkey, first confirm it is you."))
        try:
            passkey = passkeys.register(user, form.credential.data, form.name.data or "")
        except passkeys.PasskeyRefused as refused:
            form.credential.errors = [passkey_refused_message(refused)]
        else:
            audit.record("passkey.added", user_id=user.id, passkey_id=passkey.id, synced=passkey.backup_eligible)
            commit()
            send_notice(
                user.mobile,
                gettext(
                    "Hoviyat: a passkey was added to your account. If you did not do this, contact support at once."
                ),
                purpose="passkey_changed",
            )
            flash(gettext("The passkey is added. You can now log in with it, with no password or code."), "info")
            return redirect(url_for("account.passkeys"), 303)
    return render_template(
        "account/passkeys.html",
        form=form,
        passkeys=passkeys_of(user.id),
        remove_form=ButtonForm(),
        fresh=fresh_login(),
        confirm_url=confirm_url("passkeys"),
    )


@bp.post("/account/passkeys/<int:passkey_id>/remove", endpoint="remove_passkey")
@login_required
def remove_passkey_view(passkey_id: int) -> Response:
    user = g.login.user
    passkey = get_passkey_of(user.id, passkey_id)
    if passkey is None or not ButtonForm().validate_on_submit():
        return redirect(url_for("account.passkeys"), 303)
    if not fresh_login():
        return confirm_first("passkeys", gettext("To remove a passkey, first confirm it is you."))
    remove_passkey(passkey)
    audit.record("passkey.removed", user_id=user.id, passkey_id=passkey_id)
    commit()
    send_notice(
        user.mobile,
        gettext("Hoviyat: a passkey was removed from your account. If you did not do this, contact support at once."),
        purpose="passkey_changed",
    )
    flash(
        gettext("The passkey is removed. Remove it from your device too, in its password or passkey settings."), "info"
    )
    return redirect(url_for("account.passkeys"), 303)
