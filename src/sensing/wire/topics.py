"""Topic names of wire contract v1 (see docs/contract.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "sensing/v1"
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

READINGS_FILTER = f"{PREFIX}/+/+/readings"
STATUS_FILTER = f"{PREFIX}/+/+/status"
ALERTS_FILTER = f"{PREFIX}/alerts/#"
DISPATCH_FILTER = f"{PREFIX}/dispatch/#"
DEADLETTER_FILTER = f"{PREFIX}/deadletter/#"
ACK_TOPIC = f"{PREFIX}/ack"
ACK_IDENTITY_FILTER = f"{PREFIX}/ack/+"
"""acks carrying their responder: `sensing/v1/ack/{responder}` (an addition to contract v1)"""
CASES_FILTER = f"{PREFIX}/cases/#"
"""every change of a case, `sensing/v1/cases/{area}` (an addition to contract v1)"""
SILENCES_FILTER = f"{PREFIX}/silences/+"
"""silences from operators, `sensing/v1/silences/{responder}` (an addition to contract v1)"""
CORE_STATS_TOPIC = f"{PREFIX}/core/stats"
CORE_STORED_PREFIX = f"{PREFIX}/core/stored"

RESERVED_AREAS = frozenset({"alerts", "dispatch", "deadletter", "ack", "core", "cases",
                            "silences"})


def is_valid_name(name: str) -> bool:
    return NAME_PATTERN.fullmatch(name) is not None


def readings_topic(area: str, gateway: str) -> str:
    return f"{PREFIX}/{area}/{gateway}/readings"


def status_topic(area: str, gateway: str) -> str:
    return f"{PREFIX}/{area}/{gateway}/status"


def alerts_topic(area: str) -> str:
    return f"{PREFIX}/alerts/{area}"


def dispatch_topic(tier: str, area: str) -> str:
    return f"{PREFIX}/dispatch/{tier}/{area}"


def cases_topic(area: str) -> str:
    return f"{PREFIX}/cases/{area}"


def deadletter_topic(area: str, gateway: str) -> str:
    return f"{PREFIX}/deadletter/{area}/{gateway}"


def stored_topic(area: str, gateway: str) -> str:
    """Where the core confirms to a gateway what it stored (`sensing.wire.confirm`)."""
    return f"{CORE_STORED_PREFIX}/{area}/{gateway}"


@dataclass(frozen=True, slots=True)
class GatewayTopic:
    """A parsed `sensing/v1/{area}/{gateway}/{leaf}` topic."""

    area: str
    gateway: str
    leaf: str

    @property
    def valid_names(self) -> bool:
        return is_valid_name(self.area) and is_valid_name(self.gateway)


def parse_gateway_topic(topic: str) -> GatewayTopic | None:
    """Split a readings or status topic; None if it is not of that shape."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "sensing" or parts[1] != "v1":
        return None
    if parts[2] in RESERVED_AREAS:
        return None
    return GatewayTopic(area=parts[2], gateway=parts[3], leaf=parts[4])


def ack_topic(responder: str) -> str:
    """The ack topic of one responder, which the secure broker's ACL lets only that user write."""
    return f"{ACK_TOPIC}/{responder}"


def ack_responder(topic: str) -> str | None:
    """The responder of a `sensing/v1/ack/{responder}` topic; None for any other topic."""
    prefix = ACK_TOPIC + "/"
    if not topic.startswith(prefix):
        return None
    responder = topic[len(prefix):]
    return responder if responder and "/" not in responder else None


def silence_author(topic: str) -> str | None:
    """The author of a `sensing/v1/silences/{responder}` topic; None for any other topic."""
    prefix = f"{PREFIX}/silences/"
    if not topic.startswith(prefix):
        return None
    author = topic[len(prefix):]
    return author if is_valid_name(author) else None
