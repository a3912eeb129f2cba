"""Demo identities for the file registry: written to ``<var_dir>/registry.json`` when the default registry
file is missing, so `make demo` can register people. Their national codes pass the check digit."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..rules.national_code import national_code_check_digit

log = logging.getLogger(__name__)


def _code(first_nine: str) -> str:
    return first_nine + str(national_code_check_digit(first_nine))


#: (national code, Gregorian birth date, given name, family name, mobiles). The first two have accounts
#: after `make demo`; the others can register.
DEMO_PEOPLE: list[tuple[str, str, str, str, list[str]]] = [
    (_code("001234567"), "1990-03-21", "علی", "رضایی", ["+989121234567"]),
    (_code("049937089"), "1985-09-23", "مریم", "احمدی", ["+989351112233"]),
    (_code("123456789"), "1995-06-01", "زهرا", "کریمی", ["+989131234567"]),
    (_code("003456789"), "1979-12-05", "حسین", "موسوی", ["+989191112233", "+989901112233"]),
    (_code("273456781"), "2001-01-30", "نگار", "صادقی", ["+989171234567"]),
    (_code("438765432"), "1968-07-11", "رضا", "نوری", ["+989151234567"]),
]


def demo_registry_document() -> list[dict[str, object]]:
    return [
        {"national_code": code, "birthdate": born, "given_name": given, "family_name": family, "mobiles": mobiles}
        for code, born, given, family, mobiles in DEMO_PEOPLE
    ]


def ensure_demo_registry(path: Path) -> bool:
    """Write the demo registry at ``path`` unless a file is there; True when it was written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(demo_registry_document(), ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(partial, path)
    log.warning("wrote a demo identity registry to %s: these people are not real", path)
    return True
