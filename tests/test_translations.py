"""Every text of the pages has a Persian translation (Persian is the default language)."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "idp" / "translations" / "fa" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\(\w+\)s")
KEYWORDS = {"_": None, "gettext": None, "lazy_gettext": None, "_l": None}


def _source_messages() -> set[str]:
    found: set[str] = set()
    for directory, method in (("idp", "python"), ("templates", "jinja2")):
        pattern = "**.py" if method == "python" else "**.html"
        for _file, _line, message, _comments, _context in extract_from_dir(
            ROOT / directory, method_map=[(pattern, method)], keywords=KEYWORDS
        ):
            found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_message_is_translated_to_persian():
    with CATALOGUE.open("rb") as handle:
        catalogue = read_po(handle, locale="fa")
    translated = {m.id for m in catalogue if m.id and m.string}
    missing = sorted(_source_messages() - translated)
    assert not missing, f"add these to {CATALOGUE.relative_to(ROOT)} (make messages): {missing}"


def test_persian_translations_keep_their_placeholders():
    with CATALOGUE.open("rb") as handle:
        catalogue = read_po(handle, locale="fa")
    for message in catalogue:
        if message.id and message.string:
            assert sorted(PLACEHOLDER.findall(message.id)) == sorted(PLACEHOLDER.findall(message.string)), message.id
