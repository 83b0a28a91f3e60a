"""Why the core refuses an input: a reason text for people and a code for machines.

Every dead letter carries both (docs/contract.md, "Dead-letter codes"); the codes are stable,
the texts may change. Imports nothing: the edge agent uses it.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Dead-letter reason codes (snake_case, stable; documented in docs/contract.md)."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    PAYLOAD_EMPTY = "payload_empty"
    PAYLOAD_INVALID = "payload_invalid"
    """none of the more precise codes applies (the default of a WireError without one)"""
    JSON_MALFORMED = "json_malformed"
    FIELD_MISSING = "field_missing"
    FIELD_TYPE = "field_type"
    NAME_INVALID = "name_invalid"
    KIND_UNKNOWN = "kind_unknown"
    TS_OUT_OF_RANGE = "ts_out_of_range"
    SEQ_OUT_OF_RANGE = "seq_out_of_range"
    EPOCH_OUT_OF_RANGE = "epoch_out_of_range"
    SEQ_JUMP = "seq_jump"
    EPOCH_JUMP = "epoch_jump"
    VALUE_INVALID = "value_invalid"
    BATTERY_OUT_OF_RANGE = "battery_out_of_range"
    TOO_MANY_READINGS = "too_many_readings"
    TOO_MANY_VALUES = "too_many_values"
    TOO_MANY_DEVICES = "too_many_devices"
    TOO_MANY_CHANNELS = "too_many_channels"
    TOO_MANY_GATEWAYS = "too_many_gateways"
    LINE_TOO_LONG = "line_too_long"
    BATCH_CORRUPT = "batch_corrupt"
    BATCH_MALFORMED = "batch_malformed"
    BATCH_EMPTY = "batch_empty"
    TOPIC_INVALID = "topic_invalid"
    AREA_RESERVED = "area_reserved"
    STATUS_INVALID = "status_invalid"
    ACK_INVALID = "ack_invalid"
    ACK_UNKNOWN_ALERT = "ack_unknown_alert"
    ACK_FORGED = "ack_forged"
    ACK_UNKNOWN_RESPONDER = "ack_unknown_responder"
    ACK_NOT_AUTHORIZED = "ack_not_authorized"
    ACK_REFUSED = "ack_refused"
    SILENCE_INVALID = "silence_invalid"
    GATEWAY_MISMATCH = "gateway_mismatch"
    STORE_REJECTED = "store_rejected"
    INTERNAL_ERROR = "internal_error"


CODES: frozenset[str] = frozenset(c.value for c in Code)


class WireError(ValueError):
    """A payload that cannot be used: the message is the dead-letter reason, `code` its code."""

    def __init__(self, message: str, code: str = Code.PAYLOAD_INVALID) -> None:
        super().__init__(message)
        self.code = str(code)
