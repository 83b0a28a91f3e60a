"""Store confirmations to the edge (end-to-end acknowledgement), core -> gateway.

After the core has durably stored a step's readings (and journaled them), it publishes, per
gateway that sent readings in the step, QoS 1, not retained, on
`sensing/v1/core/stored/{area}/{gateway}`:

    {"ts": <ms>, "readings": [[device, epoch, first_seq, last_seq], ...]}

Every `(device, epoch, seq)` with `first_seq <= seq <= last_seq` is stored (or was a duplicate
of a stored reading) and the gateway's agent may delete it from its buffer. Ranges are
coalesced runs of consecutive seqs; a step's confirmation is split into several messages when
it would exceed `TARGET_PAYLOAD_BYTES`.

`stored_messages` (the core's side) uses numpy, imported on first call; `parse_stored` (the
edge agent's side) does not: the agent never imports numpy.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from sensing.wire.errors import WireError
from sensing.wire.limits import MAX_DEVICE_ID
from sensing.wire.topics import stored_topic

if TYPE_CHECKING:
    import numpy.typing as npt

TARGET_PAYLOAD_BYTES = 256 * 1024
"""a confirmation message is split before it grows past this (one entry may exceed it a bit)"""
MAX_PAYLOAD_BYTES = 1024 * 1024
"""parse_stored refuses larger payloads (the core never sends more than about 256 kB)"""
MAX_ENTRIES = 65_536
"""ranges per message at most (256 kB holds about 7,000 of them)"""
MAX_EPOCH = 2**63 - 1
MAX_SEQ = 2**63 - 1

StoredRange = tuple[str, int, int, int]
"""(device, epoch, first_seq, last_seq), inclusive"""

StoredChunk = tuple[str, str, Sequence[str], "npt.ArrayLike", "npt.ArrayLike", "npt.ArrayLike"]
"""(area, gateway, device_names, dev, epoch, seq): readings of one gateway stored (or dropped as
duplicates of stored ones) in a step; `device_names[dev[i]]` names reading i"""


def stored_messages(
    chunks: Iterable[StoredChunk], ts: int | None = None
) -> list[tuple[str, bytes]]:
    """The (topic, payload) confirmations to publish for a step's stored readings: one message
    per gateway (more if large), ranges coalesced per (device, epoch). Gateways in the order
    first seen; within one, devices by name, then epoch, then seq."""
    import numpy as np

    now = time.time_ns() // 1_000_000 if ts is None else ts
    # per (area, gateway): a name table shared by its chunks, and the readings as name codes
    gateways: dict[tuple[str, str], tuple[dict[str, int], list[Any], list[Any], list[Any]]] = {}
    for area, gateway, names, dev, epoch, seq in chunks:
        dev_a = np.asarray(dev, dtype=np.int64)
        if dev_a.shape[0] == 0:
            continue
        table, codes, epochs, seqs = gateways.setdefault((area, gateway), ({}, [], [], []))
        used, inverse = np.unique(dev_a, return_inverse=True)
        code = np.array([table.setdefault(names[d], len(table)) for d in used.tolist()],
                        dtype=np.int64)
        codes.append(code[inverse.reshape(-1)])
        epochs.append(np.asarray(epoch, dtype=np.int64))
        seqs.append(np.asarray(seq, dtype=np.int64))
    out: list[tuple[str, bytes]] = []
    for (area, gateway), (table, codes, epochs, seqs) in gateways.items():
        by_name = sorted(table, key=table.__getitem__)
        rank = np.empty(len(by_name), dtype=np.int64)  # code -> position of its name in order
        rank[np.argsort(np.array(by_name, dtype=object))] = np.arange(len(by_name))
        entries = _ranges(np, rank[np.concatenate(codes)], np.concatenate(epochs),
                          np.concatenate(seqs))
        ordered = sorted(by_name)
        topic = stored_topic(area, gateway)
        rows = [[ordered[d], e, f, last] for d, e, f, last in entries]
        out.extend((topic, p) for p in _payloads(now, rows))
    return out


def _ranges(np: Any, dev: Any, epoch: Any, seq: Any) -> list[tuple[int, int, int, int]]:
    """Distinct (dev, epoch, seq) as sorted inclusive runs (dev, epoch, first, last)."""
    order = np.lexsort((seq, epoch, dev))
    dev, epoch, seq = dev[order], epoch[order], seq[order]
    same_key = (dev[1:] == dev[:-1]) & (epoch[1:] == epoch[:-1])
    keep = np.ones(dev.shape[0], dtype=bool)
    keep[1:] = ~(same_key & (seq[1:] == seq[:-1]))  # a reading twice in one step
    dev, epoch, seq = dev[keep], epoch[keep], seq[keep]
    starts = np.ones(dev.shape[0], dtype=bool)
    starts[1:] = ~((dev[1:] == dev[:-1]) & (epoch[1:] == epoch[:-1]) & (seq[1:] == seq[:-1] + 1))
    first = np.flatnonzero(starts)
    last = np.append(first[1:], dev.shape[0]) - 1
    return list(zip(dev[first].tolist(), epoch[first].tolist(), seq[first].tolist(),
                    seq[last].tolist(), strict=True))


def _payloads(ts: int, rows: list[list[Any]]) -> list[bytes]:
    """`rows` as one or more payloads of about TARGET_PAYLOAD_BYTES at most."""
    head = len(orjson.dumps({"ts": ts, "readings": []}))
    out: list[bytes] = []
    start, size = 0, head
    for i, row in enumerate(rows):
        grown = len(orjson.dumps(row)) + 1  # and a comma
        if i > start and size + grown > TARGET_PAYLOAD_BYTES:
            out.append(orjson.dumps({"ts": ts, "readings": rows[start:i]}))
            start, size = i, head
        size += grown
    if start < len(rows):
        out.append(orjson.dumps({"ts": ts, "readings": rows[start:]}))
    return out


def parse_stored(payload: bytes) -> list[StoredRange]:
    """The ranges of a confirmation; raises WireError (and nothing else) if the payload is too
    large, not JSON, or not of the documented shape."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError(f"confirmation of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}",
                        code="payload_too_large")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"confirmation is not JSON: {exc}", code="json_malformed") from None
    if not isinstance(doc, dict) or "readings" not in doc or "ts" not in doc:
        raise WireError("confirmation must be an object with ts and readings",
                        code="field_missing")
    if not _is_int(doc["ts"]):
        raise WireError("confirmation ts must be an integer", code="field_type")
    entries = doc["readings"]
    if not isinstance(entries, list):
        raise WireError("confirmation readings must be an array", code="field_type")
    if len(entries) > MAX_ENTRIES:
        raise WireError(f"confirmation holds {len(entries)} ranges, more than {MAX_ENTRIES}",
                        code="too_many_readings")
    out: list[StoredRange] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, list) or len(entry) != 4:
            raise WireError(f"readings[{i}] must be [device, epoch, first_seq, last_seq]",
                            code="field_type")
        device, epoch, first, last = entry
        if not isinstance(device, str) or not 0 < len(device) <= MAX_DEVICE_ID:
            raise WireError(f"readings[{i}]: device must be a string of 1-{MAX_DEVICE_ID}",
                            code="name_invalid")
        if not (_is_int(epoch) and _is_int(first) and _is_int(last)):
            raise WireError(f"readings[{i}]: epoch and seqs must be integers", code="field_type")
        if not 0 <= epoch <= MAX_EPOCH:
            raise WireError(f"readings[{i}]: epoch out of range", code="epoch_out_of_range")
        if not 0 <= first <= last <= MAX_SEQ:
            raise WireError(f"readings[{i}]: need 0 <= first_seq <= last_seq < 2**63",
                            code="seq_out_of_range")
        out.append((device, epoch, first, last))
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
