"""The identity registry: does this mobile belong to this national code (the telecom operators' ownership
check), and who is this national code with this birth date (the civil registry). One small interface, two
backends: a JSON file (development, demo, tests) and an HTTP service."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from ..config import Config


class RegistryUnavailable(RuntimeError):
    """The registry did not answer (down, timed out, or answered nonsense): the user should try again later."""


@dataclass(frozen=True)
class Person:
    national_code: str
    birthdate: dt.date
    given_name: str
    family_name: str


class IdentityRegistry(Protocol):
    #: Named in ``verified_claims.verification.evidence`` as the source of the record.
    source_name: str

    def mobile_belongs_to(self, national_code: str, mobile: str) -> bool:
        """True when the E.164 ``mobile`` is registered to ``national_code``."""

    def find_person(self, national_code: str, birthdate: dt.date) -> Person | None:
        """The person with this national code and birth date, or None when there is no such person."""


def registry_from_config(config: Config) -> IdentityRegistry:
    from .file import FileRegistry
    from .http import HttpRegistry

    settings = config.registry
    if settings.backend == "http":
        return HttpRegistry(settings.url, settings.api_key, timeout=settings.timeout, retries=settings.retries)
    return FileRegistry(config.var_file(settings.path, "registry.json"))
