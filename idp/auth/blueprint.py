"""The ``auth`` blueprint itself, which each of the package's page modules adds its views to."""

from flask import Blueprint

bp = Blueprint("auth", __name__)
