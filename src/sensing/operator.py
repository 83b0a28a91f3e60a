"""The operator's side of the broker (`sensing watch`, `sensing ack`): a client with TLS and
credentials, and an ack that reports what the core made of it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from sensing.wire import topics
from sensing.wire.messages import Ack, Alert, DeadLetter
from sensing_edge.security import BrokerSecurity, apply_security

ACK_DEADLETTERS = topics.deadletter_topic("_", "ack")


class BrokerRefused(ConnectionError):
    """No session: no broker, a TLS failure, or credentials the broker refused."""


class Client:
    """A paho client (MQTT 5, so a refused publish shows as its PUBACK's reason code) that is
    connected once `connect` returns, and subscribes again after a reconnect."""

    def __init__(self, host: str, port: int, security: BrokerSecurity) -> None:
        self.host, self.port = host, port
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        apply_security(self.paho, security)
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_publish = self._on_publish
        self.filters: list[str] = []
        self._connack: ReasonCode | None = None
        self._event = threading.Condition()
        self._subacks: set[int] = set()
        self._pubacks: dict[int, ReasonCode] = {}

    def _on_connect(self, c: mqtt.Client, u: object, f: mqtt.ConnectFlags, rc: ReasonCode,
                    p: Properties | None) -> None:
        if not rc.is_failure and self.filters:
            c.subscribe([(t, 1) for t in self.filters])
        with self._event:
            self._connack = rc
            self._event.notify_all()

    def _on_subscribe(self, c: mqtt.Client, u: object, mid: int, rcs: list[ReasonCode],
                      p: Properties | None) -> None:
        with self._event:
            self._subacks.add(mid)
            self._event.notify_all()

    def _on_publish(self, c: mqtt.Client, u: object, mid: int, rc: ReasonCode,
                    p: Properties | None) -> None:
        with self._event:
            self._pubacks[mid] = rc
            self._event.notify_all()

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        with self._event:
            return self._event.wait_for(done, timeout)

    def connect(self, timeout: float = 10.0) -> Client:
        where = f"{self.host}:{self.port}"
        try:
            self.paho.connect(self.host, self.port, keepalive=30)
        except OSError as exc:  # refused, unreachable, or the TLS handshake (ssl.SSLError)
            raise BrokerRefused(f"no broker at {where}: {exc}") from None
        self.paho.loop_start()
        if not self._wait(lambda: self._connack is not None, timeout):
            self.close()
            raise BrokerRefused(f"no answer from the broker at {where} within {timeout} s")
        assert self._connack is not None
        if self._connack.is_failure:
            self.close()
            raise BrokerRefused(f"the broker at {where} refused the login: {self._connack}")
        return self

    def subscribe(self, *filters: str, timeout: float = 10.0) -> None:
        self.filters += filters
        _, mid = self.paho.subscribe([(t, 1) for t in filters])
        if not self._wait(lambda: mid in self._subacks, timeout):
            raise BrokerRefused("the broker did not confirm the subscription")

    def publish(self, topic: str, payload: bytes, retain: bool = False, timeout: float = 10.0
                ) -> ReasonCode | None:
        """QoS 1; the PUBACK's reason code (None if none came in time). With Mosquitto 2 an
        ACL refusal is `Not authorized`."""
        info = self.paho.publish(topic, payload, qos=1, retain=retain)
        if not self._wait(lambda: info.mid in self._pubacks, timeout):
            return None
        return self._pubacks[info.mid]

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


class Verdict(IntEnum):
    """`sensing ack`'s exit codes."""

    APPLIED = 0
    REFUSED = 1
    UNCONFIRMED = 3


@dataclass(frozen=True)
class AckResult:
    verdict: Verdict
    text: str


def send_ack(client: Client, ack: Ack, wait_s: float) -> AckResult:
    """Publish `ack` on `sensing/v1/ack/{by}`; with `wait_s` > 0, wait for the core's answer:
    the alert's acknowledged or resolved transition (on the alerts or a dispatch topic), or
    the ack's dead letter."""
    topic = topics.ack_topic(ack.by)
    payload = ack.to_json()
    answer: list[AckResult] = []
    heard = threading.Event()

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        result = _verdict(msg.topic, bytes(msg.payload), ack, topic, payload)
        if result is not None and not answer:
            answer.append(result)
            heard.set()

    if wait_s > 0:
        client.paho.on_message = on_message
        # whichever of these the user may read: operators the alerts and dead letters,
        # responders their tier's dispatch messages (which carry acks and resolutions too)
        client.subscribe(topics.ALERTS_FILTER, topics.DISPATCH_FILTER, topics.CASES_FILTER,
                         ACK_DEADLETTERS)
    rc = client.publish(topic, payload)
    if rc is None:
        return AckResult(Verdict.REFUSED, f"the broker did not confirm the ack on {topic}")
    if rc.is_failure:
        return AckResult(Verdict.REFUSED, f"the broker refused the ack on {topic}: {rc} (may "
                         f"this user write {topic}? it may write only its own ack topic)")
    if wait_s <= 0:
        return AckResult(Verdict.APPLIED, f"sent on {topic} (not waiting for the core)")
    if heard.wait(wait_s):
        return answer[0]
    return AckResult(Verdict.UNCONFIRMED, f"sent on {topic}; no word from the core within "
                     f"{wait_s:g} s (is it running? may this user read sensing/v1/alerts?)")


def _verdict(topic: str, raw: bytes, ack: Ack, ack_topic: str, payload: bytes
             ) -> AckResult | None:
    try:
        if topic == ACK_DEADLETTERS:
            dead = DeadLetter.model_validate_json(raw)
            if dead.topic != ack_topic or dead.raw() != payload:
                return None
            return AckResult(Verdict.REFUSED,
                             f"the core refused the ack: {dead.reason} [{dead.code}]")
        if topic.startswith(topics.CASES_FILTER[:-1]):
            return _case_verdict(orjson.loads(raw), ack)
        alert = Alert.model_validate_json(raw)
    except (ValidationError, ValueError, orjson.JSONDecodeError):
        return None
    if ack.action not in ("ack", "resolve"):
        return None
    wanted = "resolved" if ack.action == "resolve" else "acknowledged"
    if alert.alert_id != ack.alert_id or alert.state.value != wanted or alert.by != ack.by:
        return None
    return AckResult(Verdict.APPLIED, f"{wanted}: {alert.type} {alert.grade.value} on "
                     f"{alert.device} ({alert.area}/{alert.gateway}) by {ack.by}, alert "
                     f"{alert.alert_id}")


CASE_EVENT = {"take": "taken", "arrived": "arrived", "dispose": "disposed",
              "reassign": "reassigned"}
"""the case message that answers each action of a case (ack and resolve: the alert's)"""


def _case_verdict(doc: object, ack: Ack) -> AckResult | None:
    if not isinstance(doc, dict) or doc.get("event") != CASE_EVENT.get(ack.action):
        return None
    members = doc.get("members") or ()
    if doc.get("by") != ack.by or ack.alert_id not in (doc.get("case_id"), *members):
        return None
    detail = {"taken": "", "arrived": "", "disposed": f" as {doc.get('outcome')}",
              "reassigned": f" to {doc.get('taken_by')}"}[str(doc["event"])]
    return AckResult(Verdict.APPLIED, f"{doc['event']}{detail}: case {doc.get('case_id')} "
                     f"({doc.get('type')} {doc.get('grade')} on {doc.get('device')}, "
                     f"{doc.get('area')}) by {ack.by}")
