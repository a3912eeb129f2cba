"""The pages' stylesheet, installed as the package ``idp.static`` (setup.py maps this folder)."""
