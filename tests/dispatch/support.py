"""Helpers for the notification tests: a closed port, and a broker link like the core's."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from sensing.dispatch.channels import Publish
from sensing.services import Mosquitto
from tests.helpers import Listener, publisher


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dispatch_link(broker: Mosquitto) -> Iterator[tuple[Publish, Listener]]:
    """A publish callable as the core supplies one (True once the broker's PUBACK came) and
    a listener on the dispatch topics."""
    listener = Listener(broker, "sensing/v1/dispatch/#")
    client = publisher(broker)

    def publish(topic: str, payload: bytes, qos: int) -> bool:
        info = client.publish(topic, payload, qos=qos)
        info.wait_for_publish(5)
        return info.is_published()

    try:
        yield publish, listener
    finally:
        listener.close()
        client.disconnect()
        client.loop_stop()
