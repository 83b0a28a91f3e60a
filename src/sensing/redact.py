"""Secrets out of text meant for logs and error messages.

    redact_url("http://core:hunter2@db:8086/?token=abc")  -> "http://core:***@db:8086/?token=***"
    redact_text("failed: http://u:p@h/write")            -> "failed: http://u:***@h/write"
"""

from __future__ import annotations

import re
import urllib.parse

MASK = "***"
SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pass", "pwd", "token", "secret", "key",
                               "auth", "authorization", "api_key", "apikey", "access_token"})
"""query parameters whose value is a credential (compared in lower case)"""

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """`url` with the password of its user info and the values of credential-like query
    parameters replaced by `***`; the rest (scheme, user, host, port, path) kept, so the log
    still says where. A URL that fails to parse (a stray colon in it may precede a
    password) comes back masked whole."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises on a malformed port, which may be a password after a colon
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}{':' + MASK if colon else ''}@{hostport}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_QUERY_KEYS for k, _ in pairs):
            query = "&".join(
                f"{urllib.parse.quote(k)}={MASK if k.lower() in SECRET_QUERY_KEYS else v}"
                for k, v in pairs)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL inside `text` (an exception's message, say) passed through `redact_url`."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)
