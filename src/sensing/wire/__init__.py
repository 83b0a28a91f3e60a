"""Wire contract v1: topics, codecs (JSON and SNB1) and messages. Imports no numba."""

from sensing.wire.batch import BatchBuilder, ReadingBatch
from sensing.wire.decode import Decoded, decode_readings
from sensing.wire.errors import WireError
from sensing.wire.kinds import KIND_CHANNELS, KINDS
from sensing.wire.messages import Ack, Alert, AlertState, DeadLetter, GatewayStatus, Grade

__all__ = [
    "KINDS",
    "KIND_CHANNELS",
    "Ack",
    "Alert",
    "AlertState",
    "BatchBuilder",
    "DeadLetter",
    "Decoded",
    "GatewayStatus",
    "Grade",
    "ReadingBatch",
    "WireError",
    "decode_readings",
]
