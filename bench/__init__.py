"""Benchmarks of Hoviyat against its targets and node-oidc-provider; run `python -m bench`."""
