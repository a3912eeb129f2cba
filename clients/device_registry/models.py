"""The registry's own records: people as Hoviyat describes them, their login sessions, the devices registered
to national IDs, and support tickets."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, or_, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..rp_kit.login import RpSessionMixin, RpUserMixin
from ..rp_kit.validators import luhn_ok

DEMO_DEVICES = Path(__file__).parent / "data" / "demo_devices.json"


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


def utcnow() -> dt.datetime:
    """Naive UTC, as the rp_kit tables store times."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class User(db.Model, RpUserMixin):
    __tablename__ = "users"


class LoginSession(db.Model, RpSessionMixin):
    pass


#: A device's state in the registry, as the IMEI status page shows it.
DEVICE_STATUSES = {
    "active": "فعال",
    "inactive": "غیرفعال",
    "blocked": "مسدود (گزارش سرقت)",
}


class Device(db.Model):
    """A mobile device registered in the registry to the owner's national ID (not to a site account)."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    national_id: Mapped[str] = mapped_column(String(10), index=True)
    model: Mapped[str] = mapped_column(String(100))
    imei1: Mapped[str] = mapped_column(String(15), unique=True)
    #: The second IMEI of a dual-SIM device; None for a single-SIM one.
    imei2: Mapped[str | None] = mapped_column(String(15), unique=True)
    dual_sim: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def status_label(self) -> str:
        return DEVICE_STATUSES.get(self.status, self.status)

    @property
    def imeis(self) -> set[str]:
        return {imei for imei in (self.imei1, self.imei2) if imei}


class Ticket(db.Model):
    """A support ticket (ثبت و پیگیری مشکلات). ``number`` is what the user and the support staff quote."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str | None] = mapped_column(String(16), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    subject: Mapped[str] = mapped_column(String(32))
    #: The device the ticket is about, as the table shows it (for a mismatch: its first registered IMEI).
    imei: Mapped[str] = mapped_column(String(15))
    device_imei1: Mapped[str | None] = mapped_column(String(15))
    device_imei2: Mapped[str | None] = mapped_column(String(15))
    registered_imei1: Mapped[str | None] = mapped_column(String(15))
    registered_imei2: Mapped[str | None] = mapped_column(String(15))
    description: Mapped[str] = mapped_column(Text)
    #: ``submitted``, ``under_review``, ``resolved`` or ``rejected`` (see tickets.TRANSITIONS).
    status: Mapped[str] = mapped_column(String(16), default="submitted")
    answer: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def devices_of(national_id: str | None) -> list[Device]:
    if not national_id:
        return []
    query = select(Device).where(Device.national_id == national_id).order_by(Device.registered_at.desc())
    return list(db.session.scalars(query))


def find_device_by_imei(imei: str) -> Device | None:
    return db.session.scalar(select(Device).where(or_(Device.imei1 == imei, Device.imei2 == imei)))


def seed_demo_devices(path: Path = DEMO_DEVICES) -> int:
    """Add the demo devices not yet in the registry (by first IMEI); returns how many were added."""
    added = 0
    for entry in json.loads(path.read_text(encoding="utf-8")):
        imeis = [entry["imei1"]] + ([entry["imei2"]] if entry.get("imei2") else [])
        if not all(len(imei) == 15 and imei.isdigit() and luhn_ok(imei) for imei in imeis):
            raise ValueError(f"{path}: invalid IMEI in {entry['model']}")
        if bool(entry.get("imei2")) != bool(entry["dual_sim"]):
            raise ValueError(f"{path}: {entry['model']}: dual_sim and imei2 disagree")
        if db.session.scalar(select(Device.id).where(Device.imei1 == entry["imei1"])) is not None:
            continue
        db.session.add(
            Device(
                national_id=entry["national_id"],
                model=entry["model"],
                imei1=entry["imei1"],
                imei2=entry.get("imei2"),
                dual_sim=bool(entry["dual_sim"]),
                status=entry.get("status", "active"),
                registered_at=dt.datetime.fromisoformat(entry["registered_at"]),
            )
        )
        added += 1
    db.session.commit()
    return added
