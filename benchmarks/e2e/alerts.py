"""An operator's subscriber on sensing/v1/alerts/#: when each alert arrived, and latency per
alarm (arrival - the moment the alarm reading was published, matched by device)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sensing.services import LOOPBACK

ALERTS_TOPIC = "sensing/v1/alerts/#"
MAX_KEPT = 1_000_000
"""arrivals kept at most; beyond, only counted (a pipeline gone wild must not eat memory)"""


@dataclass(frozen=True, slots=True)
class Latency:
    alarms_sent: int
    alerts_matched: int
    """alarms with an alert for their device"""
    alerts_other: int
    """alerts for devices that raised no alarm in the phase"""
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    raised_p99_ms: float | None = None
    """p99 of the alert's ts_raised - the alarm's publish: the part before the pipeline's step
    raised it (publisher, broker, the pipeline's own queue and step); the rest is the way out
    through the broker. None when the alerts carry no ts_raised (the peers' do not)"""


class AlertListener:
    def __init__(self, broker_port: int, client_id: str = "bench-operator") -> None:
        self._lock = threading.Lock()
        self._arrivals: list[tuple[float, bytes]] = []
        self.dropped = 0
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect(LOOPBACK, broker_port)
        self._client.loop_start()
        if not self._subscribed.wait(15):
            self.stop()
            raise RuntimeError("the alert listener did not subscribe in 15 s")

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: object, props: object) -> None:
        client.subscribe(ALERTS_TOPIC, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reasons: object,
                      props: object) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object,
                    msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        with self._lock:
            if len(self._arrivals) < MAX_KEPT:
                self._arrivals.append((now, bytes(msg.payload[:4096])))
            else:
                self.dropped += 1

    def mark(self) -> int:
        """A bookmark: latency() counts only alerts that arrive after it."""
        with self._lock:
            return len(self._arrivals)

    def count(self) -> int:
        with self._lock:
            return len(self._arrivals) + self.dropped

    def latency(self, alarms: dict[str, int], since: int = 0) -> Latency:
        """Per alarm device, the first alert for it after `since`: its arrival - publish."""
        with self._lock:
            arrivals = self._arrivals[since:]
        first: dict[str, tuple[float, object]] = {}
        other = 0
        for at, payload in arrivals:
            try:
                doc = orjson.loads(payload)
                device, raised = doc.get("device"), doc.get("ts_raised")
            except (orjson.JSONDecodeError, AttributeError):
                device = raised = None
            if isinstance(device, str) and device in alarms:
                first.setdefault(device, (at, raised))
            else:
                other += 1
        lat = np.array([at * 1000 - alarms[d] for d, (at, _) in first.items()], dtype=np.float64)
        if not lat.size:
            return Latency(len(alarms), 0, other, None, None, None)
        p50, p99 = np.percentile(lat, [50, 99])
        raised = [r - alarms[d] for d, (_, r) in first.items() if isinstance(r, int)]
        raised_p99 = float(np.percentile(raised, 99)) if len(raised) == len(first) else None
        return Latency(len(alarms), int(lat.size), other, float(p50), float(p99),
                       float(lat.max()), raised_p99)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
