"""Client authentication methods each grant accepts; the client's registration then picks exactly one."""

CONFIDENTIAL_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
ALL_METHODS = [*CONFIDENTIAL_METHODS, "none"]
