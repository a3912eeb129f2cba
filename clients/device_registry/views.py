"""The registry's pages, each behind "Log in with Hoviyat" except the landing page."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from ..rp_kit.dates import persian_digits
from ..rp_kit.login import RelyingParty
from .forms import DeviceTicketForm, ImeiMismatchForm, InquiryForm
from .models import Ticket, User, db, devices_of, find_device_by_imei
from .tickets import CLOSING, NOTICE, SUBJECTS, file_ticket, find_subject

PAGE_SIZE = 10

#: Mobile operators by the first digits of the national number (for the SIM cards page).
OPERATORS = (
    (("091", "0990", "0991", "0992", "0993", "0994"), "همراه اول"),
    (("093", "090", "0941"), "ایرانسل"),
    (("0920", "0921", "0922"), "رایتل"),
)


#: ``verified_claims.verification.trust_framework`` values and the registries that run them, as people name them.
TRUST_FRAMEWORKS = {"ir_sabt_ahval": "سازمان ثبت احوال کشور"}


def national_mobile(phone_number: str | None) -> str | None:
    """``+989121234567`` (E.164, as Hoviyat sends it) as Iranians write it: ``09121234567``."""
    if not phone_number:
        return None
    return "0" + phone_number[3:] if phone_number.startswith("+98") else phone_number


def operator_of(mobile: str | None) -> str:
    for prefixes, name in OPERATORS:
        if mobile and mobile.startswith(prefixes):
            return name
    return "—"


def verified_claims_of(claims: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(verification, claims) of ``verified_claims`` (OpenID Connect for Identity Assurance), or empty ones."""
    verified = claims.get("verified_claims")
    if isinstance(verified, list):  # IDA allows several; the first with a national_id is the one we use
        verified = next((v for v in verified if isinstance(v, dict) and "national_id" in (v.get("claims") or {})), None)
    if not isinstance(verified, dict):
        return {}, {}
    return verified.get("verification") or {}, verified.get("claims") or {}


def verified_national_id(rp: RelyingParty) -> str | None:
    """The national ID only when Hoviyat vouches for it (``verified_claims``): devices are registered to
    national IDs, so an unverified one must never show anybody's devices."""
    claims = rp.current_claims()
    _verification, verified = verified_claims_of(claims)
    national_id = claims.get("national_id")
    return national_id if national_id and verified.get("national_id") == national_id else None


def registry_blueprint(rp: RelyingParty) -> Blueprint:
    bp = Blueprint("registry", __name__)

    def me() -> User:
        return rp.current_user()

    @bp.get("/")
    def home() -> str:
        if rp.current_user() is None:
            return render_template("landing.html")
        return render_template("home.html", user=me(), national_id=verified_national_id(rp))

    @bp.get("/devices")
    @rp.login_required
    def devices() -> str:
        national_id = verified_national_id(rp)
        return render_template("devices.html", devices=devices_of(national_id), national_id=national_id)

    @bp.get("/sim-cards")
    @rp.login_required
    def sim_cards() -> str:
        mobile = national_mobile(me().phone_number)
        verified = bool(rp.current_claims().get("phone_number_verified"))
        return render_template("sim_cards.html", mobile=mobile, operator=operator_of(mobile), verified=verified)

    @bp.route("/inquiry", methods=["GET", "POST"])
    @rp.login_required
    def inquiry() -> str:
        form = InquiryForm()
        checked, device = False, None
        if form.validate_on_submit():
            checked, device = True, find_device_by_imei(form.imei.data)
        return render_template("inquiry.html", form=form, checked=checked, device=device, imei=form.imei.data)

    @bp.get("/imei-status")
    @rp.login_required
    def imei_status() -> str:
        national_id = verified_national_id(rp)
        return render_template("imei_status.html", devices=devices_of(national_id), national_id=national_id)

    @bp.get("/transfers")
    @rp.login_required
    def transfers() -> str:
        return render_template("transfers.html")

    @bp.get("/tickets")
    @rp.login_required
    def tickets() -> str:
        user = me()
        total = db.session.scalar(select(func.count(Ticket.id)).where(Ticket.user_id == user.id)) or 0
        pages = max(1, math.ceil(total / PAGE_SIZE))
        page = min(max(request.args.get("page", 1, type=int) or 1, 1), pages)
        rows = list(
            db.session.scalars(
                select(Ticket)
                .where(Ticket.user_id == user.id)
                .order_by(Ticket.id.desc())
                .offset((page - 1) * PAGE_SIZE)
                .limit(PAGE_SIZE)
            )
        )
        return render_template(
            "tickets.html", rows=rows, page=page, pages=pages, first_row=(page - 1) * PAGE_SIZE + 1, total=total
        )

    @bp.get("/tickets/new")
    @rp.login_required
    def new_ticket() -> object:
        chosen = request.args.get("subject")
        if chosen is not None:
            if find_subject(chosen) is not None:
                return redirect(url_for("registry.ticket_form", subject=chosen))
            flash("موضوع درخواست را انتخاب کنید.", "error")
        return render_template("ticket_subjects.html", subjects=SUBJECTS, notice=NOTICE)

    @bp.route("/tickets/new/<subject>", methods=["GET", "POST"])
    @rp.login_required
    def ticket_form(subject: str) -> object:
        chosen = find_subject(subject)
        if chosen is None:
            abort(404)
        user = me()
        national_id = verified_national_id(rp)
        if chosen.mismatch:
            if national_id is None:
                flash("کد ملی شما از «هویت» تأییدشده دریافت نشد؛ این درخواست ممکن نیست.", "error")
                return redirect(url_for("registry.tickets"))
            form: Any = ImeiMismatchForm(devices_of(national_id))
        else:
            form = DeviceTicketForm()
        if form.validate_on_submit():
            if chosen.mismatch:
                ticket = Ticket(
                    subject=chosen.key,
                    imei=form.device.imei1,
                    device_imei1=form.device_imei1.data,
                    device_imei2=form.device_imei2.data,
                    registered_imei1=form.registered_imei1.data,
                    registered_imei2=form.registered_imei2.data,
                )
            else:
                ticket = Ticket(subject=chosen.key, imei=form.imei.data)
            ticket.user_id = user.id
            ticket.description = form.description.data
            file_ticket(ticket)
            # The number is isolated left-to-right, or the bidi algorithm shows its two parts swapped.
            flash(f"درخواست شما با شمارهٔ تیکت \u2066{persian_digits(ticket.number)}\u2069 ثبت شد.", "info")
            return redirect(url_for("registry.tickets"))
        return render_template("ticket_form.html", subject=chosen, form=form, closing=CLOSING)

    @bp.get("/account")
    @rp.login_required
    def account() -> str:
        claims = rp.current_claims()
        verification, verified = verified_claims_of(claims)
        verified_at = None
        if isinstance(verification.get("time"), str):
            try:
                verified_at = dt.datetime.fromisoformat(verification["time"].replace("Z", "+00:00"))
            except ValueError:
                verified_at = None
        return render_template(
            "account.html",
            user=me(),
            mobile=national_mobile(me().phone_number),
            national_id=verified_national_id(rp),
            verification=verification,
            verified_by=TRUST_FRAMEWORKS.get(verification.get("trust_framework", ""), "مرجع ثبت هویت اشخاص"),
            verified_at=verified_at,
            verified_names=sorted(verified),
        )

    return bp
