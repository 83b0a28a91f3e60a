"""Channels against real receivers: an HTTP server on loopback, Apprise's json://, Mosquitto."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import paho.mqtt.client as mqtt
import pytest

from sensing.dispatch.channels import AppriseChannel, MqttChannel, SendOutcome, WebhookChannel
from sensing.dispatch.channels.apprise_channel import message_of
from sensing.dispatch.directory import Contact
from sensing.dispatch.notification import Notification, dispatch_payload, make_notification
from sensing.services import Mosquitto
from sensing.testing.webhook_receiver import Reply, Request, WebhookReceiver
from sensing.wire.messages import Alert, AlertState, Grade
from tests.dispatch.support import closed_port, dispatch_link

ALERT = Alert(alert_id="a1", type="smoke.fire", grade=Grade.CRITICAL, state=AlertState.RAISED,
              device="smoke-000123", gateway="gw-17", area="c2-compound-1", ts_event=1_000,
              ts_raised=1_100, value=14.2, reason="obscuration 14.2 %/m over 10 %/m")


def note(contact: Contact, role: str = "grid_worker", alert: Alert = ALERT) -> Notification:
    payload = dispatch_payload(alert, role=role, responder="wang", case_id="case-1",
                               resident="Zhang Lan")
    return make_notification(case_id="case-1", step=0, responder="wang", role=role,
                             contact=contact, payload=payload)


def hook(url: str) -> Contact:
    return Contact(channel="webhook", url=url)


@pytest.fixture
def webhook() -> Iterator[WebhookChannel]:
    channel = WebhookChannel(connect_timeout_s=1.0, read_timeout_s=0.5)
    yield channel
    channel.close()


def test_webhook_posts_the_json_with_its_idempotency_key(webhook: WebhookChannel) -> None:
    with WebhookReceiver() as receiver:
        n = note(hook(receiver.url("/grid")))
        assert webhook.send(n) == SendOutcome.sent()
        (request,) = receiver.requests()
    assert request.method == "POST" and request.path == "/grid"
    assert request.headers["content-type"] == "application/json"
    assert request.key == n.notification_id
    assert request.body == n.payload
    assert orjson.loads(request.body)["responder"] == "wang"


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "sent"), (204, "sent"), (408, "retry"), (429, "retry"), (500, "retry"),
    (502, "retry"), (400, "failed"), (401, "failed"), (404, "failed"), (410, "failed")])
def test_webhook_statuses(webhook: WebhookChannel, status: int, outcome: str) -> None:
    with WebhookReceiver(lambda r, seen: Reply(status, body=b"no such hook")) as receiver:
        result = webhook.send(note(hook(receiver.url())))
    assert result.outcome == outcome
    if outcome != "sent":
        assert result.reason == f"HTTP {status}: no such hook"


def test_webhook_honours_retry_after_in_seconds(webhook: WebhookChannel) -> None:
    with WebhookReceiver(lambda r, seen: Reply(503, headers={"Retry-After": "7"})) as receiver:
        result = webhook.send(note(hook(receiver.url())))
    assert result == SendOutcome.retry("HTTP 503", 7_000)


def test_webhook_times_out_a_receiver_that_does_not_answer(webhook: WebhookChannel) -> None:
    with WebhookReceiver(lambda r, seen: Reply(delay_s=5.0)) as receiver:
        started = time.monotonic()
        result = webhook.send(note(hook(receiver.url())))
        took = time.monotonic() - started
    assert result.outcome == "retry" and "timed out" in result.reason.lower()
    assert took < 1.5  # read timeout 0.5 s


def test_webhook_to_a_closed_port_is_retried_later(webhook: WebhookChannel) -> None:
    result = webhook.send(note(hook(f"http://127.0.0.1:{closed_port()}/hook")))
    assert result.outcome == "retry" and "NewConnectionError" in result.reason


def test_webhook_follows_a_307_on_its_own_origin_only(webhook: WebhookChannel) -> None:
    def respond(request: Request, seen: int) -> Reply:
        if request.path == "/old":
            return Reply(307, headers={"Location": "/new"})
        if request.path == "/away":
            return Reply(308, headers={"Location": "http://127.0.0.2:1/steal"})
        if request.path == "/moved":
            return Reply(302, headers={"Location": "/new"})
        return Reply(200)

    with WebhookReceiver(respond) as receiver:
        assert webhook.send(note(hook(receiver.url("/old")))).outcome == "sent"
        away = webhook.send(note(hook(receiver.url("/away"))))
        moved = webhook.send(note(hook(receiver.url("/moved"))))
        paths = [r.path for r in receiver.requests()]
    assert paths == ["/old", "/new", "/away", "/moved"]
    assert away.outcome == "failed" and "another origin" in away.reason
    assert moved == SendOutcome.failed("HTTP 302")


def test_apprise_json_reaches_the_receiver_with_a_readable_message() -> None:
    with WebhookReceiver() as receiver:
        n = note(Contact(channel="apprise", url=receiver.url("/apprise", scheme="json")))
        assert AppriseChannel().send(n) == SendOutcome.sent()
        (request,) = receiver.requests()
    doc = orjson.loads(request.body)
    assert request.path == "/apprise" and request.key == n.notification_id
    assert doc["title"] == "[critical] smoke.fire in c2-compound-1"
    for text in ("smoke-000123", "Zhang Lan", "wang as grid_worker", "case-1", "obscuration"):
        assert text in doc["message"]
    assert doc["type"] == "failure"  # Apprise's most urgent type for a critical alert
    assert message_of(n) == (doc["title"], doc["message"])


def test_apprise_failures_retry_and_unknown_urls_fail() -> None:
    with WebhookReceiver(lambda r, seen: Reply(500)) as receiver:
        refused = AppriseChannel().send(
            note(Contact(channel="apprise", url=receiver.url("/x", scheme="json"))))
    assert refused.outcome == "retry" and "500" in refused.reason
    unreachable = AppriseChannel(connect_timeout_s=0.5).send(
        note(Contact(channel="apprise", url=f"json://127.0.0.1:{closed_port()}/x")))
    assert unreachable.outcome == "retry"
    unknown = AppriseChannel().send(note(Contact(channel="apprise", url="nosuch://x/y")))
    assert unknown.outcome == "failed" and "Apprise" in unknown.reason


def test_mqtt_publishes_the_payload_on_the_dispatch_topic(broker: Mosquitto) -> None:
    with dispatch_link(broker) as (publish, listener):
        n = note(Contact(channel="mqtt"), role="duty_officer")
        assert MqttChannel(publish).send(n) == SendOutcome.sent()
        assert listener.wait_for(lambda: len(listener.messages) == 1, 10)
        (topic, payload), = listener.messages
    assert topic == "sensing/v1/dispatch/duty_officer/c2-compound-1"
    doc = orjson.loads(payload)
    assert doc["tier"] == "duty_officer" and doc["responder"] == "wang"
    assert doc["notification_id"] == n.notification_id  # a subscriber's key against repeats
    assert doc["alert_id"] == "a1" and doc["state"] == "raised"  # the contract's fields


def test_mqtt_outcomes_of_the_publish_callable() -> None:
    n = note(Contact(channel="mqtt"))
    assert MqttChannel(lambda t, p, q: False).send(n) == \
        SendOutcome.retry("broker did not confirm")

    def broken(topic: str, payload: bytes, qos: int) -> bool:
        raise mqtt.WebsocketConnectionError("link down")

    assert MqttChannel(broken).send(n).outcome == "retry"
    bad_area = note(Contact(channel="mqtt"),
                    alert=ALERT.model_copy(update={"area": "no/such area"}))
    assert MqttChannel(lambda t, p, q: True).send(bad_area).outcome == "failed"
