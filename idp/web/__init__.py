"""The web layer shared by every blueprint: browser sessions, who is logged in, headers, locale."""
