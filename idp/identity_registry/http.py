"""The HTTP registry: a registry service answering two questions.

``GET {url}/mobile-ownership?national_code=C&mobile=M`` -> ``{"owned": true|false}``
``GET {url}/people/{national_code}?birthdate=YYYY-MM-DD`` -> 200 ``{"given_name", "family_name"}`` or 404

Both with ``Authorization: Bearer <api_key>``. Timeouts, connection errors and 5xx answers are retried a
bounded number of times, then reported as :class:`RegistryUnavailable`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import requests

from .base import Person, RegistryUnavailable

log = logging.getLogger(__name__)


class HttpRegistry:
    source_name = "identity registry service"

    def __init__(self, url: str, api_key: str, *, timeout: float, retries: int) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def _get(self, path: str, params: dict[str, str]) -> requests.Response:
        last_error = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.2 * 2 ** (attempt - 1), 1.0))
            try:
                response = self.session.get(self.url + path, params=params, timeout=self.timeout)
            except requests.RequestException as error:
                last_error = error.__class__.__name__
                continue
            if response.status_code >= 500:
                last_error = f"HTTP {response.status_code}"
                continue
            return response
        log.warning("identity registry unavailable after %d attempt(s): %s", self.retries + 1, last_error)
        raise RegistryUnavailable(f"identity registry unavailable: {last_error}")

    def _json(self, response: requests.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise RegistryUnavailable("identity registry answered something that is not JSON") from None
        if not isinstance(data, dict):
            raise RegistryUnavailable("identity registry answered an unexpected document")
        return data

    def mobile_belongs_to(self, national_code: str, mobile: str) -> bool:
        response = self._get("/mobile-ownership", {"national_code": national_code, "mobile": mobile})
        if response.status_code != 200:
            raise RegistryUnavailable(f"identity registry refused the ownership check: HTTP {response.status_code}")
        owned = self._json(response).get("owned")
        if not isinstance(owned, bool):
            raise RegistryUnavailable("identity registry answered the ownership check without 'owned'")
        return owned

    def find_person(self, national_code: str, birthdate: dt.date) -> Person | None:
        response = self._get(f"/people/{national_code}", {"birthdate": birthdate.isoformat()})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryUnavailable(f"identity registry refused the person query: HTTP {response.status_code}")
        data = self._json(response)
        given, family = data.get("given_name"), data.get("family_name")
        if not isinstance(given, str) or not isinstance(family, str) or not given or not family:
            raise RegistryUnavailable("identity registry answered a person without names")
        return Person(national_code=national_code, birthdate=birthdate, given_name=given, family_name=family)
