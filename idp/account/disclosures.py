"""The disclosure ledger (README, "Your account"): which app received which of the user's details, when and why,
newest first, filtered by app and period, in pages; and the same rows as JSON and CSV downloads."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any

from flask import Response, g, render_template, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from wtforms import SelectChoice

from .. import clock
from ..oidc.claim_labels import claim_label
from ..provider import current_provider
from ..store import disclosures as ledger
from ..store.clients import client_names
from ..store.models import Disclosure
from ..web.forms import DisclosureFilterForm
from .blueprint import bp, login_required

PAGE_SIZE = 50

#: How far back each period of the filter reaches; None: all the ledger keeps (privacy.ledger_retention).
PERIODS: dict[str, dt.timedelta | None] = {
    "all": None,
    "30d": dt.timedelta(days=30),
    "1y": dt.timedelta(days=365),
}

#: Why the details were released, in plain words.
PURPOSE_LABELS = {
    "login": _l("When you signed in to it"),
    "refresh": _l("When it renewed your sign-in"),
    "userinfo": _l("When it asked for your details"),
    "introspection": _l("When it checked one of its keys to your account"),
}


def purpose_label(purpose: str) -> str:
    return str(PURPOSE_LABELS.get(purpose, purpose))


@dataclass(frozen=True)
class Filters:
    """The ledger's filters as chosen on the page; the same in its links and downloads."""

    client_id: str
    period: str

    def query(self, user_id: str) -> ledger.LedgerQuery:
        reach = PERIODS[self.period]
        since = clock.now() - reach if reach is not None else None
        return ledger.LedgerQuery(user_id=user_id, client_id=self.client_id or None, since=since)

    def arguments(self, **more: Any) -> dict[str, Any]:
        """The address's arguments for these filters (defaults left out)."""
        values = {"client": self.client_id or None, "period": self.period if self.period != "all" else None}
        return {**values, **more}


def _read_filters(user_id: str) -> tuple[DisclosureFilterForm, Filters, int, dict[str, str]]:
    """The filter form from the address, the filters it chose (the defaults where it is wrong), the page asked for
    and the names of the clients the ledger names."""
    client_ids = ledger.clients_disclosed_to(user_id)
    names = client_names(set(client_ids))
    choices = [SelectChoice(client_id, names.get(client_id, gettext("A removed app"))) for client_id in client_ids]
    form = DisclosureFilterForm(formdata=request.args)
    form.client.choices = [SelectChoice("", gettext("All apps")), *sorted(choices, key=lambda choice: choice.label)]
    if not form.validate():
        return form, Filters(client_id="", period="all"), 1, names
    filters = Filters(client_id=form.client.data or "", period=form.period.data or "all")
    return form, filters, form.page.data or 1, names


@bp.get("/account/disclosures")
@login_required
def disclosures() -> tuple[str, int]:
    user_id = g.login.user_id
    form, filters, page, names = _read_filters(user_id)
    query = filters.query(user_id)
    total = ledger.count_disclosures(query)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page, pages)
    rows = ledger.disclosures(query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return render_template(
        "account/disclosures.html",
        form=form,
        rows=[_view(row, names) for row in rows],
        total=total,
        page=page,
        pages=pages,
        page_url=lambda number: url_for("account.disclosures", **filters.arguments(page=number)),
        download_url=lambda kind: url_for(f"account.disclosures_{kind}", **filters.arguments()),
        retention_days=current_provider().config.privacy.ledger_retention // (24 * 3600),
    ), (400 if form.errors else 200)


def _view(row: Disclosure, names: dict[str, str]) -> dict[str, Any]:
    return {
        "row": row,
        "client_name": names.get(row.client_id),
        "claims": [claim_label(name) for name in row.claims.split()],
        "purpose": purpose_label(row.purpose),
    }


class BadFilters(Exception):
    """A download's filters are not ones the page offers (an edited address)."""

    def __init__(self, form: DisclosureFilterForm) -> None:
        super().__init__(" ".join(str(error) for errors in form.errors.values() for error in errors))


def _download_rows(user_id: str) -> tuple[Filters, list[dict[str, Any]]]:
    """All the rows the page's filters choose (every page of them), as data with the claims' labels and the
    purpose in the reader's language. Raises :class:`BadFilters`."""
    form, filters, _page, names = _read_filters(user_id)
    if form.errors:
        raise BadFilters(form)
    records = []
    for row in ledger.disclosures(filters.query(user_id)):
        record = ledger.as_record(row, names.get(row.client_id))
        record["claim_labels"] = [claim_label(name) for name in record["claims"]]
        record["purpose_label"] = purpose_label(row.purpose)
        records.append(record)
    return filters, records


def _attachment(body: str, mimetype: str, extension: str) -> Response:
    filename = f"hoviyat-disclosures-{clock.now().date().isoformat()}.{extension}"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(BadFilters)
def bad_filters(error: BadFilters) -> tuple[str, int]:
    return render_template("error.html", message=str(error)), 400


@bp.get("/account/disclosures.json")
@login_required
def disclosures_json() -> Response:
    filters, records = _download_rows(g.login.user_id)
    document = {
        "filters": {"client_id": filters.client_id or None, "period": filters.period},
        "disclosures": records,
    }
    return _attachment(json.dumps(document, ensure_ascii=False, indent=2), "application/json", "json")


CSV_COLUMNS = (
    "last_at", "first_at", "count", "client_id", "client_name", "purpose", "purpose_label", "national_id",
    "verified_claims", "claims", "claim_labels",
)  # fmt: skip


@bp.get("/account/disclosures.csv")
@login_required
def disclosures_csv() -> Response:
    _filters, records = _download_rows(g.login.user_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for record in records:
        cells = {
            **record,
            "client_name": record["client_name"] or "",
            "claims": " ".join(record["claims"]),
            "claim_labels": "; ".join(record["claim_labels"]),
            "national_id": "yes" if record["national_id"] else "no",
            "verified_claims": "yes" if record["verified_claims"] else "no",
        }
        writer.writerow([_spreadsheet_safe(cells[column]) for column in CSV_COLUMNS])
    # A byte-order mark, so that spreadsheet programs read the Persian text as UTF-8.
    return _attachment("\ufeff" + out.getvalue(), "text/csv", "csv")


def _spreadsheet_safe(value: Any) -> Any:
    """A cell a spreadsheet shows as text: one that begins like a formula (an app's registered name could) is
    quoted (OWASP, CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
