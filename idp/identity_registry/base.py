"""The interface every backend implements, and the errors they raise."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


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
