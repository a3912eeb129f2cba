"""Support tickets (ثبت و پیگیری مشکلات): their subjects with Hamta's guidance, their life cycle, their
numbers, and the staff's command line (``flask tickets list`` / ``flask tickets set-status``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import click
import jdatetime
from flask.cli import AppGroup
from sqlalchemy import select

from ..rp_kit.dates import TEHRAN
from ..rp_kit.validators import ascii_digits
from .models import Ticket, db, utcnow

#: Shown above the list of subjects on «ثبت تیکت» (Hamta's «توجه» box).
NOTICE = (
    "لطفا موضوع مشکل خود را به درستی انتخاب نمایید.",
    "اگر مشکل خود را به درستی نمی دانید، راهنمای ثبت هر موضوع را بخوانید تا موضوع درست را انتخاب کنید.",
    "لطفا پس از انتخاب موضوع، راهنمای ثبت را با دقت مطالعه نمایید.",
)

#: Closes every subject's guidance.
CLOSING = (
    "خواهشمند است تمامی اطلاعات خود را با دقت وارد نمایید. در قسمت شرح درخواست به صورت کامل مشکل خود را شرح دهید."
    " همکاران ما در سامانه همتا در اسرع وقت نسبت به بررسی مشکل اقدام خواهد کرد و نتیجه بررسی از همین قسمت قابل"
    " مشاهده می باشد."
)


@dataclass(frozen=True)
class Subject:
    key: str
    title: str
    guidance: str
    #: The IMEI-mismatch form (two device IMEIs, two registered ones) instead of one IMEI.
    mismatch: bool = False


SUBJECTS = (
    Subject(
        "imei_mismatch",
        "شناسه دستگاه (IMEI) من با شناسه دستگاه ثبت شده در همتا تطابق ندارد",
        "در صورتی که شناسه (IMEI) های دستگاه که با شماره گیری ‎*#06#‎ بر روی دستگاه مشاهده می کنید با آنچه در"
        " سامانه همتا ثبت شده و از استعلام اصالت نمایش داده می شود، مغایرت دارد با استفاده از این موضوع درخواست"
        " می توانید نسبت به اصلاح شناسه دوم اقدام نمایید. این امکان برای دستگاههای دوسیمکارته است که در استعلام"
        " اصالت نیز دو شناسه (IMEI) مشاهده می کنند. ورود هر دو شناسه دستگاه صحیح و هر دو شناسه ثبت شده در سامانه"
        " همتا الزامی است. توجه نمایید سیمکارت کارتابلی که نسبت به ثبت درخواست اقدام می کنید می بایست مالک دستگاه"
        " باشد و با هر دو IMEI صحیح حداقل یکبار روشن شده باشد. برای این منظور چنانچه قبل از ثبت درخواست سیمکارت را"
        " در هر دو شکاف دستگاه قرار دهید، دستگاه را روشن کرده و از دریافت آنتن شبکه اطمینان حاصل کنید.",
        mismatch=True,
    ),
    Subject(
        "not_registered",
        "دستگاه من در سامانه همتا ثبت نشده است",
        "اگر دستگاه را از فروشنده مجاز خریده اید ولی در استعلام اصالت دستگاه، شناسه (IMEI) آن در سامانه همتا یافت"
        " نمی شود، از این موضوع استفاده کنید. شناسه اول دستگاه را که با شماره گیری ‎*#06#‎ مشاهده می کنید وارد"
        " نمایید و در شرح درخواست نام فروشنده، تاریخ خرید و شماره فاکتور را بنویسید.",
    ),
    Subject(
        "sim_not_working",
        "سیم کارت من روی دستگاه ثبت شده آنتن نمی دهد",
        "اگر دستگاه در سامانه همتا به نام شما ثبت و فعال شده است ولی سیم کارت روی آن آنتن نمی دهد یا پیامک غیرمجاز"
        " بودن دستگاه دریافت می کنید، از این موضوع استفاده کنید. پیش از ثبت درخواست، دستگاه را یک بار خاموش و روشن"
        " کنید و شناسه (IMEI) دستگاه را با شماره گیری ‎*#06#‎ بررسی نمایید.",
    ),
)


def find_subject(key: str | None) -> Subject | None:
    return next((subject for subject in SUBJECTS if subject.key == key), None)


STATUSES = {
    "submitted": "ثبت شده",
    "under_review": "در حال بررسی",
    "resolved": "حل شده",
    "rejected": "رد شده",
}

#: Where a ticket may go from each status. Resolved and rejected tickets are closed for good.
TRANSITIONS: dict[str, frozenset[str]] = {
    "submitted": frozenset({"under_review"}),
    "under_review": frozenset({"resolved", "rejected"}),
    "resolved": frozenset(),
    "rejected": frozenset(),
}

#: A closing status needs an answer for the user.
NEEDS_ANSWER = frozenset({"resolved", "rejected"})


class TransitionError(ValueError):
    pass


def set_status(ticket: Ticket, status: str, answer: str | None = None) -> None:
    if status not in TRANSITIONS.get(ticket.status, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(ticket.status, ()))) or "none: the ticket is closed"
        raise TransitionError(
            f"ticket {ticket.number} is {ticket.status}; it cannot become {status} (allowed: {allowed})"
        )
    answer = (answer or "").strip() or None
    if status in NEEDS_ANSWER and answer is None:
        raise TransitionError(f"a ticket becomes {status} only with an answer for the user (--answer)")
    ticket.status = status
    if answer is not None:
        ticket.answer = answer
    ticket.updated_at = utcnow()


def ticket_number(created_at: dt.datetime, sequence: int) -> str:
    """``140409-000123``: the Jalali year and month (Tehran time) and a running number."""
    local = created_at.replace(tzinfo=created_at.tzinfo or dt.UTC).astimezone(TEHRAN)
    jalali = jdatetime.date.fromgregorian(date=local.date())
    return f"{jalali.year:04d}{jalali.month:02d}-{sequence:06d}"


def file_ticket(ticket: Ticket) -> Ticket:
    """Store a new ticket and give it its number (from the row id, so numbers never repeat)."""
    ticket.status = "submitted"
    ticket.created_at = ticket.updated_at = utcnow()
    db.session.add(ticket)
    db.session.flush()
    ticket.number = ticket_number(ticket.created_at, ticket.id)
    db.session.commit()
    return ticket


# -- the staff's command line ----------------------------------------------------------------------------

cli = AppGroup("tickets", help="Support tickets: list them, move them along (submitted, under review, closed).")


@cli.command("list")
@click.option("--status", type=click.Choice(list(STATUSES)), help="Only tickets in this status.")
def list_tickets(status: str | None) -> None:
    """Print the tickets, newest first: number, status, subject, IMEI, created (UTC)."""
    query = select(Ticket).order_by(Ticket.id.desc())
    if status:
        query = query.where(Ticket.status == status)
    for ticket in db.session.scalars(query):
        click.echo(
            f"{ticket.number}\t{ticket.status}\t{ticket.subject}\t{ticket.imei}\t{ticket.created_at:%Y-%m-%d %H:%M}"
        )


@cli.command("set-status")
@click.argument("number")
@click.argument("status", type=click.Choice(list(STATUSES)))
@click.option("--answer", help="The answer the user sees (required for resolved and rejected).")
def set_status_command(number: str, status: str, answer: str | None) -> None:
    """Move ticket NUMBER (like 140409-000123) to STATUS; refused unless the move is allowed."""
    ticket = db.session.scalar(select(Ticket).where(Ticket.number == ascii_digits(number).strip()))
    if ticket is None:
        raise click.ClickException(f"no ticket {number}")
    try:
        set_status(ticket, status, answer)
    except TransitionError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    db.session.commit()
    click.echo(f"ticket {ticket.number}: {status}")
