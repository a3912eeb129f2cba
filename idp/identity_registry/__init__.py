"""The identity registry: does this mobile belong to this national code (the telecom operators' ownership
check), and who is this national code with this birth date (the civil registry). One small interface, two
backends: a JSON file (development, demo, tests) and an HTTP service."""

from __future__ import annotations

from ..config import Config
from .base import IdentityRegistry, Person, RegistryUnavailable
from .file import FileRegistry
from .http import HttpRegistry

__all__ = ["IdentityRegistry", "Person", "RegistryUnavailable", "registry_from_config"]


def registry_from_config(config: Config) -> IdentityRegistry:
    settings = config.registry
    if settings.backend == "http":
        return HttpRegistry(settings.url, settings.api_key, timeout=settings.timeout, retries=settings.retries)
    return FileRegistry(config.var_file(settings.path, "registry.json"))
