"""The pages' Jinja templates, installed as the package ``idp.templates`` (setup.py maps this folder)."""
