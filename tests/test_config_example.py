"""config.example.toml documents every configuration key, with its default."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from idp.config import SECTIONS, Config, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def test_example_documents_every_key():
    documented = tomllib.loads(EXAMPLE.read_text())
    expected = {name: {f.name for f in dataclasses.fields(kind)} for name, kind in SECTIONS.items()}
    assert {name: set(values) for name, values in documented.items()} == expected


def test_example_values_are_the_defaults():
    assert load_config(path=EXAMPLE, environ={}) == Config()
