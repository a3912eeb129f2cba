"""How the commands print: JSON for scripts, text for people."""

from __future__ import annotations

import json
from typing import Any

import click


def emit(data: Any, as_json: bool, text: str) -> None:
    """Print ``data`` as JSON for scripts, or ``text`` for people."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(text)
