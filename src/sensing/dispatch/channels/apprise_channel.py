"""Apprise URLs: one well-kept library for SMS gateways, e-mail, WeCom / DingTalk / Feishu bots,
Telegram, ntfy and more (tgram://, mailto://, ntfy://, dingtalk://, json://, ...).

A URL Apprise does not accept is a permanent failure; Apprise's own failure (the service
refused or could not be reached) is worth a retry. Its socket timeouts default to the
channel's unless the URL sets `cto` / `rto` itself. HTTP-like targets (json://, form://,
xml://) carry the header `Idempotency-Key` like webhooks do.
"""

from __future__ import annotations

import urllib.parse

import apprise

from sensing.dispatch.channels.base import SendOutcome
from sensing.dispatch.notification import HTTP_LIKE_APPRISE, Notification, PayloadView
from sensing.redact import redact_text, redact_url

MAX_BODY = 2000
"""characters of a message body: an SMS gateway splits, a chat bot truncates"""

_NOTIFY_TYPE = {"critical": apprise.NotifyType.FAILURE, "major": apprise.NotifyType.WARNING,
                "minor": apprise.NotifyType.WARNING}


def message_of(notification: Notification) -> tuple[str, str]:
    """(title, body) a person reads on a phone: what, how bad, where, whom, and the case."""
    view = PayloadView.of(notification.payload)
    what = view.type or "alert"
    title = f"[{view.grade or 'alert'}] {what}" + (f" in {view.area}" if view.area else "")
    lines = [
        f"{what} ({view.grade})" if view.grade else what,
        f"area: {view.area}" if view.area else "",
        f"device: {view.device}" if view.device else "",
        f"resident: {view.resident}" if view.resident else "",
        f"state: {view.state}" if view.state else "",
        view.reason,
        f"for: {notification.responder} as {notification.role}",
        f"case: {view.link or notification.case_id}",
    ]
    body = "\n".join(line for line in lines if line)
    return title[:200], body[:MAX_BODY]


def _with_defaults(url: str, params: dict[str, str]) -> str:
    """`url` with query parameters added where it does not set them already."""
    parts = urllib.parse.urlsplit(url)
    present = {k for k, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)}
    extra = {k: v for k, v in params.items() if k not in present}
    if not extra:
        return url
    query = parts.query + ("&" if parts.query else "") + urllib.parse.urlencode(extra)
    return urllib.parse.urlunsplit(parts._replace(query=query))


class AppriseChannel:
    """Thread-safe: a fresh `apprise.Apprise` per send (parsing a URL costs microseconds), its
    persistent store in memory only (no cache files beside the core)."""

    def __init__(self, connect_timeout_s: float = 2.0, read_timeout_s: float = 5.0) -> None:
        self._timeouts = {"cto": str(connect_timeout_s), "rto": str(read_timeout_s)}
        self._asset = apprise.AppriseAsset(storage_mode="memory")

    @property
    def name(self) -> str:
        return "apprise"

    def send(self, notification: Notification) -> SendOutcome:
        url = notification.contact.url
        params = dict(self._timeouts)
        if urllib.parse.urlsplit(url).scheme.lower() in HTTP_LIKE_APPRISE:
            params["+Idempotency-Key"] = notification.notification_id
        target = apprise.Apprise(asset=self._asset)
        if not target.add(_with_defaults(url, params)):
            return SendOutcome.failed(f"not a URL Apprise accepts: {redact_url(url)}")
        title, body = message_of(notification)
        grade = PayloadView.of(notification.payload).grade
        result = target.notify(body=body, title=title,
                               notify_type=_NOTIFY_TYPE.get(grade, apprise.NotifyType.INFO))
        if result:
            return SendOutcome.sent()
        said = [entry.message for entry in result.logs()
                if entry.level in ("WARNING", "ERROR", "CRITICAL")]
        return SendOutcome.retry(redact_text("; ".join(said)[:400]) or "Apprise did not send")
