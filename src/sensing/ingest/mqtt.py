"""The core's MQTT session: persistent, QoS 1, acknowledged only after a message is handled."""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from sensing.ingest.received import Incoming as Incoming
from sensing.wire import topics
from sensing_edge.security import BrokerSecurity, apply_security

if TYPE_CHECKING:
    from sensing.settings import CoreSettings

log = structlog.get_logger("sensing.ingest")

MAX_OUTSTANDING = 20_000
"""QoS 1 publishes handed to paho and not yet acknowledged, at most. paho numbers them with
16-bit ids: past 65,535 outstanding it refuses a publish (MQTT_ERR_QUEUE_SIZE) instead of
queueing it, so an alert storm (50,000 device.offline at once) would lose alerts. A publish
beyond this bound waits for PUBACKs instead."""
_SENT = (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)
"""paho's results for a publish it keeps (and sends, or sends after the reconnect)"""


class CoreSession:
    """Subscribes to readings, gateway status and acks with a persistent session.

    Messages are acknowledged (PUBACK) only by `ack`, after the core has stored them: a crash
    in between makes the broker deliver them again, and the dedup window drops the repeats.
    """

    SUBSCRIPTIONS = ((topics.READINGS_FILTER, 1), (topics.STATUS_FILTER, 1), (topics.ACK_TOPIC, 1),
                     (topics.ACK_IDENTITY_FILTER, 1), (topics.SILENCES_FILTER, 1))

    def __init__(self, host: str, port: int, client_id: str, username: str | None = None,
                 password: str | None = None, security: BrokerSecurity | None = None) -> None:
        """`security` (credentials and TLS) replaces `username`/`password` when given."""
        self.host = host
        self.port = port
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=False, manual_ack=True)
        if security is not None:
            apply_security(self._client, security)
        elif username:
            self._client.username_pw_set(username, password)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(1, 5)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._outstanding = 0
        self._room = threading.Condition()
        self._stopping = False
        self._queue: queue.SimpleQueue[Incoming] = queue.SimpleQueue()
        self._generation = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> CoreSession:
        return cls(settings.mqtt_host, settings.mqtt_port, settings.mqtt_client_id,
                   security=settings.broker_security())

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: object) -> None:
        if reason.is_failure:
            log.error("broker refused connection", reason=str(reason))
            return
        with self._lock:
            self._generation += 1
        client.subscribe(list(self.SUBSCRIPTIONS))
        log.info("connected to broker", host=self.host, port=self.port,
                 session_present=flags.session_present)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reasons: list[ReasonCode], properties: object) -> None:
        if any(r.is_failure for r in reasons):
            log.error("broker refused a subscription", reasons=[str(r) for r in reasons])
            return
        # Only now is every message published from here on routed to this session.
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: ReasonCode, properties: object) -> None:
        self.connected.clear()
        log.warning("disconnected from broker", reason=str(reason))

    @property
    def generation(self) -> int:
        return self._generation

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(Incoming(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation))

    def start(self, timeout_s: float = 30.0) -> None:
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self.connected.wait(timeout_s):
            raise ConnectionError(f"no MQTT broker at {self.host}:{self.port} after {timeout_s} s")

    def receive(self, max_messages: int, max_wait_s: float,
                max_bytes: int = 1 << 62) -> list[Incoming]:
        """Up to `max_messages` (and about `max_bytes` of payload: at least one message),
        waiting at most `max_wait_s` for the first and the rest."""
        out: list[Incoming] = []
        deadline = time.monotonic() + max_wait_s
        size = 0
        while len(out) < max_messages and size < max_bytes:
            remaining = deadline - time.monotonic()
            try:
                m = (self._queue.get(timeout=max(remaining, 0.0)) if remaining > 0
                     else self._queue.get_nowait())
            except queue.Empty:
                break
            out.append(m)
            size += len(m.payload)
        return out

    def ack(self, messages: list[Incoming]) -> None:
        generation = self._generation
        for m in messages:
            if m.qos > 0 and m.generation == generation:
                self._client.ack(m.mid, m.qos)

    def publish(self, topic: str, payload: bytes, retain: bool = False
                ) -> mqtt.MQTTMessageInfo:
        """QoS 1; paho keeps it and sends it again after a reconnect until the PUBACK. Waits
        while MAX_OUTSTANDING publishes are unacknowledged (not once stopping)."""
        with self._room:
            while self._outstanding >= MAX_OUTSTANDING and not self._stopping:
                self._room.wait(0.5)
            self._outstanding += 1
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in _SENT:
            with self._room:
                self._outstanding -= 1
            log.error("the MQTT client refused a publish", topic=topic,
                      error=mqtt.error_string(info.rc))
        return info

    @property
    def outstanding(self) -> int:
        """Publishes not yet acknowledged by the broker."""
        return self._outstanding

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason: ReasonCode, properties: object) -> None:
        with self._room:
            self._outstanding -= 1
            self._room.notify_all()

    def stop(self) -> None:
        with self._room:
            self._stopping = True
            self._room.notify_all()
        self._client.disconnect()
        self._client.loop_stop()
