"""The disclosure ledger, as a person sees it after using both example sites, in a real browser held as a Persian
phone.

The person logs in at the carmaker (a FAPI 2.0 client: PAR, private_key_jwt, DPoP) and then at the device
registry (a plain confidential client), both of which ask for the ``national_id`` scope; then opens
/account/disclosures at Hoviyat: both sites are there by their registered names, the national code marked on their
rows, and the JSON download holds the very rows of the page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

import clients.carmaker
import clients.device_registry
from tests.helpers import create_test_user

from ..relying_parties import relying_party  # noqa: F401
from .page_checks import page_problems

pytestmark = pytest.mark.browser

CARMAKER_NAME = "سامانه فروش خودرو"
REGISTRY_NAME = "سامانه همتا"
PHONE_WIDTH = 360


def shoot(page: Any, folder: Path, name: str) -> None:
    page.wait_for_load_state("load")
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def tap(page: Any, selector: str) -> None:
    target = page.locator(selector)
    assert target.count() == 1, f"{selector}: {target.count()} on {page.url}"
    with page.expect_navigation():
        target.tap()
    page.wait_for_load_state("load")


def test_the_ledger_names_both_example_sites_with_the_national_code_marked(
    app: Flask,
    live_server: str,
    relying_party,  # noqa: F811
    phone_page: Any,
    artifacts_dir: Path,
) -> None:
    issuer = live_server
    person = create_test_user(app)
    carmaker = relying_party("carmaker", clients.carmaker.create_app)
    registry = relying_party("device_registry", clients.device_registry.create_app)
    assert "national_id" in clients.carmaker.SCOPE.split() and "national_id" in clients.device_registry.SCOPE.split()
    page = phone_page

    # The carmaker: "log in with Hoviyat", the password, allow; back at the carmaker with the national code.
    page.goto(carmaker.base_url + "/")
    tap(page, "#login")
    assert urlsplit(page.url).path == "/login", page.url
    page.locator('input[name="national_code"]').fill(person.national_code)
    page.locator('input[name="password"]').fill(person.password)
    tap(page, 'form[action*="/login"] button[type="submit"].primary')
    shoot(page, artifacts_dir, "01-consent-carmaker")
    tap(page, 'button[name="decision"][value="allow"]')
    assert page.url.startswith(carmaker.base_url), page.url
    assert page.locator("#national-id").count() == 1

    # The device registry, same browser: only the consent.
    page.goto(registry.base_url + "/")
    tap(page, "#login")
    shoot(page, artifacts_dir, "02-consent-registry")
    tap(page, 'button[name="decision"][value="allow"]')
    assert page.url.startswith(registry.base_url), page.url

    # The ledger at Hoviyat.
    page.goto(issuer + "/account/disclosures")
    shoot(page, artifacts_dir, "03-ledger")
    assert page_problems(page, "fa", PHONE_WIDTH) == []
    rows = page.locator("tr.disclosure")
    seen = []
    for index in range(rows.count()):
        row = rows.nth(index)
        seen.append(
            {
                "app": row.locator("td.app .app-name").inner_text().strip(),
                "national_id": row.locator(".national-id-mark").count() == 1,
                "last_at": row.locator("time").get_attribute("datetime"),
                "purpose": row.locator("td.purpose").inner_text().strip(),
                "claims": [item.strip() for item in row.locator("td.released li").all_inner_texts()],
            }
        )
    apps = {row["app"] for row in seen}
    assert apps == {CARMAKER_NAME, REGISTRY_NAME}, seen
    for name in (CARMAKER_NAME, REGISTRY_NAME):
        logins = [row for row in seen if row["app"] == name and row["purpose"] == "هنگام ورود شما به آن"]
        assert len(logins) == 1 and logins[0]["national_id"], seen
        assert "کد ملی شما" in logins[0]["claims"], logins[0]
    assert [row["last_at"] for row in seen] == sorted((row["last_at"] for row in seen), reverse=True)
    assert re.match(r"^(شنبه|یکشنبه|دوشنبه|سه‌شنبه|چهارشنبه|پنجشنبه|جمعه) ", rows.first.locator("time").inner_text())

    # The JSON download holds the same rows, in the same order.
    with page.expect_download() as event:
        page.locator("#download-json").tap()
    download = event.value
    assert download.suggested_filename.endswith(".json")
    path = artifacts_dir / "disclosures.json"
    download.save_as(str(path))
    records = json.loads(path.read_text(encoding="utf-8"))["disclosures"]
    assert [
        {
            "app": r["client_name"],
            "national_id": r["national_id"],
            "last_at": r["last_at"],
            "purpose": r["purpose_label"],
            "claims": r["claim_labels"],
        }
        for r in records
    ] == seen
    assert {r["client_id"] for r in records} == {carmaker.client.client_id, registry.client.client_id}
