"""Wire contract v1: topics, codecs (JSON and SNB1) and messages. Imports no numba; numpy
only with the batch and decoding names below, on first use (the edge agent encodes without it).
"""

from typing import TYPE_CHECKING, Any

from sensing.wire.errors import WireError
from sensing.wire.kinds import KIND_CHANNELS, KINDS
from sensing.wire.messages import Ack, Alert, AlertState, DeadLetter, GatewayStatus, Grade

if TYPE_CHECKING:
    from sensing.wire.batch import BatchBuilder, ReadingBatch
    from sensing.wire.decode import Decoded, decode_readings

_LAZY = {"BatchBuilder": "batch", "ReadingBatch": "batch", "Decoded": "decode",
         "decode_readings": "decode"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"sensing.wire.{module}"), name)


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
