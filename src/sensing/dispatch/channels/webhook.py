"""HTTP webhooks: the notification's JSON POSTed to the contact's http(s) URL.

2xx is sent; 408, 429, 5xx and network errors are worth a retry (a 429's or 503's
Retry-After in seconds is honoured); any other status is a permanent failure. Every attempt
carries the header `Idempotency-Key: <notification_id>`, the same on each retry and after a
restart, so a receiver can drop repeats. Redirects are followed only for 307/308 (which keep
the method and body) and only to the same origin: a payload about a resident is not handed to
another host because a response said so.
"""

from __future__ import annotations

import urllib.parse

import urllib3

from sensing.dispatch.channels.base import SendOutcome
from sensing.dispatch.notification import Notification
from sensing.redact import redact_text, redact_url

RETRY_STATUSES = frozenset({408, 429})
FOLLOWED_REDIRECTS = frozenset({307, 308})
MAX_REDIRECTS = 2
ERROR_BODY_BYTES = 256
"""bytes of a refusing receiver's body kept as the reason"""
DRAIN_LIMIT = 64 * 1024
"""a response body longer than this is not read to reuse the connection: it is closed"""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _retry_after_ms(value: str | None) -> int | None:
    """Retry-After as delta-seconds; an HTTP date is ignored (clocks differ)."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip()) * 1000


class WebhookChannel:
    """Thread-safe; one connection pool for all webhooks (urllib3, keep-alive)."""

    def __init__(self, connect_timeout_s: float = 2.0, read_timeout_s: float = 5.0,
                 max_pools: int = 64, user_agent: str = "sensing-dispatch/1") -> None:
        self._timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self._pool = urllib3.PoolManager(num_pools=max_pools, maxsize=4, block=False,
                                         retries=False)
        self._user_agent = user_agent

    @property
    def name(self) -> str:
        return "webhook"

    def close(self) -> None:
        self._pool.clear()

    def send(self, notification: Notification) -> SendOutcome:
        url = notification.contact.url
        scheme, host, _ = _origin(url)
        if scheme not in ("http", "https") or not host:
            return SendOutcome.failed(f"not an http(s) URL: {redact_url(url)}")
        headers = {"Content-Type": "application/json",
                   "Idempotency-Key": notification.notification_id,
                   "User-Agent": self._user_agent}
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = self._pool.request(
                    "POST", url, body=notification.payload, headers=headers,
                    timeout=self._timeout, redirect=False, preload_content=False)
            except urllib3.exceptions.LocationValueError as e:
                return SendOutcome.failed(f"bad URL: {redact_text(str(e))}")
            except urllib3.exceptions.HTTPError as e:
                return SendOutcome.retry(f"{type(e).__name__}: {redact_text(str(e))}")
            status = response.status
            location = response.headers.get("Location")
            retry_after = _retry_after_ms(response.headers.get("Retry-After"))
            body = self._finish(response, keep_body=not 200 <= status < 300)
            if 200 <= status < 300:
                return SendOutcome.sent()
            if status in FOLLOWED_REDIRECTS and location:
                target = urllib.parse.urljoin(url, location)
                if _origin(target) == _origin(url):
                    url = target
                    continue
                return SendOutcome.failed(
                    f"HTTP {status} redirect to another origin not followed: "
                    f"{redact_url(target)}")
            reason = f"HTTP {status}" + (f": {body}" if body else "")
            if status in RETRY_STATUSES or status >= 500:
                return SendOutcome.retry(reason, retry_after)
            return SendOutcome.failed(reason)
        return SendOutcome.failed(f"more than {MAX_REDIRECTS} redirects")

    def _finish(self, response: urllib3.BaseHTTPResponse, keep_body: bool) -> str:
        """Read a little of the body for the reason; give the connection back to the pool if
        the rest is short, else close it (a receiver cannot make the sender read forever)."""
        try:
            head = response.read(ERROR_BODY_BYTES, decode_content=False) if keep_body else b""
            remaining = response.length_remaining
            if remaining is not None and remaining <= DRAIN_LIMIT:
                response.drain_conn()
            else:
                response.close()
        except (urllib3.exceptions.HTTPError, OSError):
            response.close()
            head = b""
        finally:
            response.release_conn()
        return redact_text(head.decode("utf-8", "replace").strip())
