"""One module per grant type; each subclasses Authlib's grant and only adds storage and our stricter rules."""
