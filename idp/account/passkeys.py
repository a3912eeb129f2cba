"""The account's passkeys: add one (the browser makes it), see each with its name, when it was made and last
used, and whether it is synced between devices or bound to one; remove one.

Adding or removing changes how the account can be entered, so both need a login of two factors made within
``passkeys.fresh_login`` seconds (else the user confirms it is them again), and both are recorded in the
security events and texted to the mobile.
"""

from __future__ import annotations

from flask import Response, flash, g, redirect, render_template, url_for
from flask_babel import gettext

from .. import passkeys
from ..auth.flow import passkey_refused_message, send_notice
from ..provider import current_provider
from ..store import audit, commit
from ..store.passkeys import get_passkey_of, passkeys_of, remove_passkey
from ..web.forms import ButtonForm, PasskeyAddForm
from ..web.login_state import is_fresh
from .blueprint import bp, login_required


def confirm_url() -> str:
    """The page where the user proves it is them again, then comes back here."""
    return url_for("auth.second_factor", next="passkeys")


def _fresh() -> bool:
    return is_fresh(g.login, current_provider().config.passkeys.fresh_login)


@bp.route("/account/passkeys", methods=["GET", "POST"], endpoint="passkeys")
@login_required
def passkeys_page() -> Response | str:
    user = g.login.user
    form = PasskeyAddForm()
    if form.validate_on_submit():
        if not _fresh():
            flash(gettext("To add a passkey, first confirm it is you."), "error")
            return redirect(confirm_url(), 303)
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
        fresh=_fresh(),
        confirm_url=confirm_url(),
    )


@bp.post("/account/passkeys/<int:passkey_id>/remove", endpoint="remove_passkey")
@login_required
def remove_passkey_view(passkey_id: int) -> Response:
    user = g.login.user
    passkey = get_passkey_of(user.id, passkey_id)
    if passkey is None or not ButtonForm().validate_on_submit():
        return redirect(url_for("account.passkeys"), 303)
    if not _fresh():
        flash(gettext("To remove a passkey, first confirm it is you."), "error")
        return redirect(confirm_url(), 303)
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
