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
    first seen; within one, by device (its index in the name table; by name if the chunks
    bring several tables), then epoch, then seq. One sort over the whole step, whatever the
    number of gateways."""
    import numpy as np

    now = time.time_ns() // 1_000_000 if ts is None else ts
    gateway_of: dict[tuple[str, str], int] = {}
    table_of: dict[int, int] = {}  # id() of a name table -> its index (the core has one)
    tables: list[Sequence[str]] = []
    g_codes: list[int] = []
    t_codes: list[int] = []
    sizes: list[int] = []
    devs: list[Any] = []
    epochs: list[Any] = []
    seqs: list[Any] = []
    for area, gateway, names, dev, epoch, seq in chunks:
        dev_a = np.asarray(dev)
        n = dev_a.shape[0]
        if n == 0:
            continue
        g_codes.append(gateway_of.setdefault((area, gateway), len(gateway_of)))
        t_code = table_of.setdefault(id(names), len(tables))
        if t_code == len(tables):
            tables.append(names)
        t_codes.append(t_code)
        sizes.append(n)
        devs.append(dev_a)
        epochs.append(epoch)
        seqs.append(seq)
    if not sizes:
        return []
    g = np.repeat(np.array(g_codes, dtype=np.int64), sizes)
    t = np.repeat(np.array(t_codes, dtype=np.int64), sizes)
    d = np.concatenate(devs).astype(np.int64, copy=False)
    e = np.concatenate(epochs).astype(np.int64, copy=False)
    q = np.concatenate(seqs).astype(np.int64, copy=False)
    order = np.lexsort((q, e, d, t, g))
    g, t, d, e, q = g[order], t[order], d[order], e[order], q[order]
    same_key = (g[1:] == g[:-1]) & (t[1:] == t[:-1]) & (d[1:] == d[:-1]) & (e[1:] == e[:-1])
    keep = np.ones(g.shape[0], dtype=bool)
    keep[1:] = ~(same_key & (q[1:] == q[:-1]))  # a reading twice in one step
    if not keep.all():
        g, t, d, e, q = g[keep], t[keep], d[keep], e[keep], q[keep]
        same_key = (g[1:] == g[:-1]) & (t[1:] == t[:-1]) & (d[1:] == d[:-1]) & (e[1:] == e[:-1])
    starts = np.ones(g.shape[0], dtype=bool)
    starts[1:] = ~(same_key & (q[1:] == q[:-1] + 1))
    first = np.flatnonzero(starts)
    last = np.append(first[1:], g.shape[0]) - 1
    d_first = d[first].tolist()
    if len(tables) == 1:
        names = list(map(tables[0].__getitem__, d_first))
    else:
        names = [tables[ti][di] for ti, di in zip(t[first].tolist(), d_first, strict=True)]
    # (device, epoch, first, last) tuples: orjson writes them as JSON arrays
    entries = list(zip(names, e[first].tolist(), q[first].tolist(), q[last].tolist(),
                       strict=True))
    bounds = np.searchsorted(g[first], np.arange(len(gateway_of) + 1)).tolist()
    out: list[tuple[str, bytes]] = []
    for (area, gateway), gi in gateway_of.items():
        rows = entries[bounds[gi]:bounds[gi + 1]]
        if len(tables) > 1:
            rows = _coalesced(rows)
        topic = stored_topic(area, gateway)
        out.extend((topic, p) for p in _payloads(now, rows))
    return out


def _coalesced(rows: list[StoredRange]) -> list[StoredRange]:
    """Sorted, with touching or overlapping ranges of one (device, epoch) merged (chunks with
    different name tables may name one device by different indexes)."""
    out: list[StoredRange] = []
    for row in sorted(rows):
        prev = out[-1] if out else None
        if prev is not None and prev[:2] == row[:2] and row[2] <= prev[3] + 1:
            out[-1] = (prev[0], prev[1], prev[2], max(prev[3], row[3]))
        else:
            out.append(row)
    return out


def _payloads(ts: int, rows: list[StoredRange]) -> list[bytes]:
    """`rows` as one or more payloads of about TARGET_PAYLOAD_BYTES at most."""
    whole = orjson.dumps({"ts": ts, "readings": rows})
    if len(whole) <= TARGET_PAYLOAD_BYTES:
        return [whole]
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
