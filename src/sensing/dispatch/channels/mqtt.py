"""The contract's dispatch topic, `sensing/v1/dispatch/{tier}/{area}`, with the role as the tier.

The core supplies `publish(topic, payload, qos) -> bool`: True once the broker has the message
(its PUBACK, for QoS 1), False if it did not confirm in time (then: retry). The payload is the
contract's alert object with `role`, `responder` and `notification_id` added (see
`dispatch_payload`).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from sensing.dispatch.channels.base import SendOutcome
from sensing.dispatch.notification import Notification, PayloadView
from sensing.wire import topics

Publish = Callable[[str, bytes, int], bool]


def _with_id(notification: Notification) -> bytes:
    """The payload with `notification_id` added: what a subscriber drops repeats by (QoS 1
    and a resend after a restart may both deliver a message twice), like a webhook's
    Idempotency-Key."""
    try:
        doc = orjson.loads(notification.payload)
    except orjson.JSONDecodeError:
        return notification.payload
    if not isinstance(doc, dict):
        return notification.payload
    doc["notification_id"] = notification.notification_id
    return orjson.dumps(doc)


class MqttChannel:
    def __init__(self, publish: Publish, qos: int = 1) -> None:
        self._publish = publish
        self._qos = qos

    @property
    def name(self) -> str:
        return "mqtt"

    def send(self, notification: Notification) -> SendOutcome:
        tier = notification.role
        area = PayloadView.of(notification.payload).area
        if not (topics.is_valid_name(tier) and topics.is_valid_name(area)):
            return SendOutcome.failed(
                f"no dispatch topic for tier {tier[:64]!r} and area {area[:64]!r}")
        try:
            confirmed = self._publish(topics.dispatch_topic(tier, area), _with_id(notification),
                                      self._qos)
        except ValueError as e:  # the session refuses a topic MQTT does not allow
            return SendOutcome.failed(f"publish refused: {e}")
        except Exception as e:  # the broker link is the core's: whatever it raises, retry
            return SendOutcome.retry(f"publish raised {type(e).__name__}: {e}")
        return SendOutcome.sent() if confirmed else SendOutcome.retry("broker did not confirm")
