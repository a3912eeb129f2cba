"""The outcome of the interactive part of an authorization request: who logged in, how, and what they
allowed. It is what the authorization endpoint hands to the code grant as Authlib's ``grant_user``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..store.models import User, UserSession


@dataclass(frozen=True)
class EndUserAuthorization:
    user: User
    session: UserSession
    claims_request: dict[str, Any] | None

    @property
    def auth_time(self) -> dt.datetime:
        return self.session.auth_time
