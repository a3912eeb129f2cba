"""Single sign-on between the two example sites: one login at Hoviyat serves both; each site gets its own
pairwise ``sub`` for the person but the same verified national ID; logging out at one ends both."""

from __future__ import annotations

from sqlalchemy import select

import clients.carmaker as carmaker
import clients.device_registry as device_registry
from clients.device_registry.models import User as RegistryUser

from .relying_parties import PersonBrowser, relying_party  # noqa: F401 - the fixture is used by name


def _only_user(site, model):
    with site.app.app_context():
        db = site.app.extensions["sqlalchemy"]
        rows = list(db.session.scalars(select(model)))
    assert len(rows) == 1
    return rows[0]


def test_two_sites_one_login_different_subs_same_national_id(app, live_server, user, relying_party):  # noqa: F811
    sales = relying_party("carmaker", carmaker.create_app)
    registry = relying_party("device_registry", device_registry.create_app)
    browser = PersonBrowser(live_server)

    page = browser.log_in_at_provider(browser.get(sales.base_url + "/auth/login"), user)
    assert page.url == sales.base_url + "/"

    page = browser.get(registry.base_url + "/auth/login")
    assert 'name="password"' not in page.text  # no password the second time, only the registry's consent
    page = browser.allow(page)
    assert page.url.startswith(registry.base_url)

    at_sales = _only_user(sales, carmaker.User)
    at_registry = _only_user(registry, RegistryUser)
    assert at_sales.sub != at_registry.sub  # pairwise: the two sites cannot join their users on sub
    assert at_sales.national_id == at_registry.national_id == user.national_code

    logout_form_page = browser.get(sales.base_url + "/")
    page = browser.submit(logout_form_page, {}, action_contains="/auth/logout")
    assert page.url.startswith(sales.base_url)
    assert 'id="login"' in browser.get(registry.base_url + "/").text  # the registry heard by back channel
    assert 'name="password"' in browser.get(registry.base_url + "/auth/login").text  # and Hoviyat's session ended
