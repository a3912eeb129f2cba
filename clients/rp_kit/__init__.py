"""What both example relying parties share: logging in with Hoviyat over OpenID Connect (Authlib's Flask
client), server-side login sessions, back-channel logout, input rules and Jalali dates.

This is the part a real relying party would copy: see :mod:`clients.rp_kit.login`.
"""
