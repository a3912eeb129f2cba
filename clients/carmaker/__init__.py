"""A carmaker's sales portal (like Iran Khodro's or Saipa's), a relying party of Hoviyat.

Customers log in with Hoviyat; the verified national ID, name, birth date and mobile come from the ID token
and are never asked again. The customer completes a purchase file (postal address with postal code, and the
Sheba number, which cannot be changed afterwards), picks a car from a sale plan and orders it; later they can
cancel the order and choose another car, or withdraw from the plan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import jdatetime
from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import FlaskForm
from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from wtforms import BooleanField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from ..rp_kit.dates import TEHRAN, persian_digits
from ..rp_kit.login import ButtonForm, RelyingParty, RpSessionMixin, RpUserMixin
from ..rp_kit.settings import RpSettings, load_settings
from ..rp_kit.site import new_site
from ..rp_kit.validators import Invalid, normalize_postal_code, normalize_sheba

#: Only what a car purchase needs: no device data (README, "What a relying party needs").
SCOPE = "openid profile phone national_id address"


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class User(db.Model, RpUserMixin):
    __tablename__ = "users"


class LoginSession(db.Model, RpSessionMixin):
    pass


class PurchaseFile(db.Model):
    """پرونده خرید: what the carmaker needs beyond the verified identity."""

    __tablename__ = "purchase_files"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    postal_address: Mapped[str] = mapped_column(Text)
    postal_code: Mapped[str] = mapped_column(String(10))
    #: Fixed once saved: refunds go to this account, so it cannot be switched later (as Iran Khodro does).
    sheba: Mapped[str] = mapped_column(String(26))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Order(db.Model):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    plan_id: Mapped[str] = mapped_column(String(32))
    car_id: Mapped[str] = mapped_column(String(32))
    #: ``active``, ``cancelled`` (to choose another car) or ``withdrawn`` (out of the plan for good).
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


@dataclass(frozen=True)
class Car:
    id: str
    name: str
    price_rials: int
    delivery_months: int


@dataclass(frozen=True)
class Plan:
    id: str
    name: str
    cars: tuple[Car, ...]


#: The cars of each kind of plan. A plan is named by its Jalali year (and season, for the immediate sales), so its
#: id says which: ``1405-fall``, ``1405-presale``. The plans on offer are those of today (:func:`current_plans`).
IMMEDIATE_CARS = (
    Car("dena-plus", "دنا پلاس دنده‌ای", 12_450_000_000, 3),
    Car("tara-v4", "تارا اتوماتیک V4", 16_900_000_000, 4),
)
PRESALE_CARS = (
    Car("runna-plus", "رانا پلاس", 9_800_000_000, 12),
    Car("soren-plus", "سورن پلاس", 10_700_000_000, 12),
)
#: The seasons of the Jalali year, three months each, in order.
SEASONS = {"spring": "بهار", "summer": "تابستان", "fall": "پاییز", "winter": "زمستان"}


def find_plan(plan_id: str) -> Plan | None:
    """The plan of this id, of any year (an order keeps the plan it was made in)."""
    year, _, kind = plan_id.partition("-")
    if not (len(year) == 4 and year.isascii() and year.isdigit()):
        return None
    if kind == "presale":
        return Plan(plan_id, f"پیش‌فروش یک‌ساله {persian_digits(year)}", PRESALE_CARS)
    if kind in SEASONS:
        return Plan(plan_id, f"طرح فروش فوری {SEASONS[kind]} {persian_digits(year)}", IMMEDIATE_CARS)
    return None


def current_plans(today: dt.date | None = None) -> tuple[Plan, ...]:
    """The plans on offer on ``today`` (Tehran's date when None): this season's immediate sale and this year's
    pre-sale, named by today's Jalali year, the calendar the orders are dated in."""
    jalali_today = jdatetime.date.fromgregorian(date=today or dt.datetime.now(TEHRAN).date())
    season = list(SEASONS)[(jalali_today.month - 1) // 3]
    plans = (find_plan(f"{jalali_today.year}-{season}"), find_plan(f"{jalali_today.year}-presale"))
    return tuple(plan for plan in plans if plan is not None)


def find_car(plan: Plan, car_id: str) -> Car | None:
    return next((car for car in plan.cars if car.id == car_id), None)


def describe_order(order: Order) -> tuple[Plan | None, Car | None]:
    plan = find_plan(order.plan_id)
    return plan, find_car(plan, order.car_id) if plan else None


class PurchaseFileForm(FlaskForm):
    postal_address = TextAreaField("نشانی پستی", validators=[DataRequired("نشانی را وارد کنید."), Length(max=500)])
    postal_code = StringField("کد پستی", render_kw={"inputmode": "numeric", "autocomplete": "postal-code"})
    sheba = StringField("شماره شبا", render_kw={"autocomplete": "off"})

    def validate_postal_code(self, field: StringField) -> None:
        try:
            field.data = normalize_postal_code(field.data or "")
        except Invalid as error:
            raise ValidationError(str(error)) from None

    def validate_sheba(self, field: StringField) -> None:
        try:
            field.data = normalize_sheba(field.data or "")
        except Invalid as error:
            raise ValidationError(str(error)) from None


class WithdrawForm(FlaskForm):
    understood = BooleanField("می‌دانم که با انصراف از طرح خارج می‌شوم و نمی‌توانم دوباره در این طرح ثبت‌نام کنم.")

    def validate_understood(self, field: BooleanField) -> None:
        if not field.data:
            raise ValidationError("برای انصراف، این گزینه را تأیید کنید.")


def create_app(settings: RpSettings | None = None, overrides: Mapping[str, str] | None = None) -> Flask:
    settings = settings or load_settings("carmaker", dict(overrides or {}))
    app, rp = new_site(__name__, "carmaker", settings, db, User, LoginSession, SCOPE, "sales.home")
    app.jinja_env.filters["rials"] = lambda amount: persian_digits(f"{amount:,}").replace(",", "٬")
    app.jinja_env.globals["describe_order"] = describe_order
    app.register_blueprint(_sales_blueprint(rp))
    with app.app_context():
        db.create_all()
    return app


def _sales_blueprint(rp: RelyingParty) -> Blueprint:
    bp = Blueprint("sales", __name__)

    def purchase_file_of(user: User) -> PurchaseFile | None:
        return db.session.get(PurchaseFile, user.id)

    def orders_of(user: User) -> list[Order]:
        return list(db.session.scalars(select(Order).where(Order.user_id == user.id).order_by(Order.id.desc())))

    @bp.get("/")
    def home() -> str:
        user = rp.current_user()
        if user is None:
            return render_template("landing.html")
        return render_template(
            "home.html", user=user, purchase_file=purchase_file_of(user), orders=orders_of(user), form=ButtonForm()
        )

    @bp.route("/purchase-file", methods=["GET", "POST"])
    @rp.login_required
    def purchase_file() -> object:
        user = rp.current_user()
        existing = purchase_file_of(user)
        form = PurchaseFileForm()
        if request.method == "GET" and existing is None:
            address = (rp.current_session() and _address_claim(rp)) or {}
            form.postal_address.data = address.get("formatted")
            form.postal_code.data = address.get("postal_code")
        if request.method == "GET" and existing is not None:
            form.postal_address.data, form.postal_code.data = existing.postal_address, existing.postal_code
        if existing is not None:
            form.sheba.data = existing.sheba  # fixed: whatever was posted, the saved number stays
            form.sheba.validators = []
        if form.validate_on_submit():
            if existing is None:
                existing = PurchaseFile(user_id=user.id, sheba=form.sheba.data, created_at=dt.datetime.now(dt.UTC))
                db.session.add(existing)
            existing.postal_address = form.postal_address.data.strip()
            existing.postal_code = form.postal_code.data
            db.session.commit()
            flash("پرونده خرید ذخیره شد.", "info")
            return redirect(url_for("sales.plans"))
        return render_template("purchase_file.html", form=form, existing=existing, user=user)

    @bp.get("/plans")
    @rp.login_required
    def plans() -> str:
        user = rp.current_user()
        orders = orders_of(user)
        withdrawn = {o.plan_id for o in orders if o.status == "withdrawn"}
        active = next((o for o in orders if o.status == "active"), None)
        return render_template(
            "plans.html",
            catalogue=current_plans(),
            withdrawn=withdrawn,
            active=active,
            purchase_file=purchase_file_of(user),
            form=ButtonForm(),
        )

    @bp.post("/plans/<plan_id>/cars/<car_id>/order")
    @rp.login_required
    def order(plan_id: str, car_id: str) -> object:
        user = rp.current_user()
        plan = next((plan for plan in current_plans() if plan.id == plan_id), None)  # no order for a past plan
        car = find_car(plan, car_id) if plan else None
        if car is None or not ButtonForm().validate_on_submit():
            abort(404 if car is None else 400)
        orders = orders_of(user)
        if purchase_file_of(user) is None:
            flash("ابتدا پرونده خرید را کامل کنید.", "error")
            return redirect(url_for("sales.purchase_file"))
        if any(o.plan_id == plan_id and o.status == "withdrawn" for o in orders):
            flash("شما از این طرح انصراف داده‌اید و نمی‌توانید دوباره در آن ثبت‌نام کنید.", "error")
            return redirect(url_for("sales.plans"))
        if any(o.status == "active" for o in orders):
            flash("شما یک سفارش فعال دارید؛ برای انتخاب خودروی دیگر ابتدا آن را لغو کنید.", "error")
            return redirect(url_for("sales.home"))
        db.session.add(
            Order(user_id=user.id, plan_id=plan_id, car_id=car_id, status="active", created_at=dt.datetime.now(dt.UTC))
        )
        db.session.commit()
        flash(f"سفارش {car.name} ثبت شد.", "info")
        return redirect(url_for("sales.home"))

    def active_order(user: User, order_id: int) -> Order:
        order = db.session.get(Order, order_id)
        if order is None or order.user_id != user.id or order.status != "active":
            abort(404)
        return order

    @bp.route("/orders/<int:order_id>/cancel", methods=["GET", "POST"])
    @rp.login_required
    def cancel(order_id: int) -> object:
        """Cancelling asks first, on a page of its own (as withdrawing does): the car's place in the plan is lost."""
        order = active_order(rp.current_user(), order_id)
        form = ButtonForm()
        if request.method == "POST":
            if not form.validate_on_submit():
                abort(400)
            order.status, order.closed_at = "cancelled", dt.datetime.now(dt.UTC)
            db.session.commit()
            flash("سفارش لغو شد. اکنون می‌توانید خودروی دیگری از همین طرح انتخاب کنید.", "info")
            return redirect(url_for("sales.plans"))
        plan, car = describe_order(order)
        return render_template("cancel.html", form=form, order=order, plan=plan, car=car)

    @bp.route("/orders/<int:order_id>/withdraw", methods=["GET", "POST"])
    @rp.login_required
    def withdraw(order_id: int) -> object:
        order = active_order(rp.current_user(), order_id)
        form = WithdrawForm()
        if form.validate_on_submit():
            order.status, order.closed_at = "withdrawn", dt.datetime.now(dt.UTC)
            db.session.commit()
            flash("انصراف شما از طرح ثبت شد.", "info")
            return redirect(url_for("sales.home"))
        return render_template("withdraw.html", form=form, order=order, plan=find_plan(order.plan_id))

    return bp


def _address_claim(rp: RelyingParty) -> dict[str, str]:
    """The address Hoviyat released (the ``address`` scope), to fill the form in; the user may change it."""
    try:
        info = rp.userinfo()
    except Exception:
        return {}
    address = info.get("address")
    return address if isinstance(address, dict) else {}
