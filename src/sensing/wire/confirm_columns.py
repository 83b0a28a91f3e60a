"""The core's store confirmations in one kernel pass: the same (topic, payload) list as
`sensing.wire.confirm.stored_messages`, byte for byte, without a Python object per reading.

`stored_messages` builds a tuple, a name lookup and an orjson item per range; with one reading
per device and step, per reading, on the core's commit thread. Here the step's readings are
sorted, coalesced and written as JSON by `sensing.kernels.confirmjson.confirm_payloads`, with
the GIL released; device names come from a packed table of the name table's orjson encodings
(so their escaping is orjson's by construction), kept up as the table grows. What the kernel
does not take goes to `stored_messages` itself: chunks with more than one name table, a name
orjson cannot encode, a device index outside the table, integers that are not int64-exact.
Core side only: this module imports numpy (the edge agent never imports it).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from sensing.arrays import grown, next_capacity
from sensing.kernels.confirmjson import ENTRY_FIXED, confirm_payloads
from sensing.packed_names import PackedNames
from sensing.wire import confirm
from sensing.wire.confirm import StoredChunk, stored_messages
from sensing.wire.topics import stored_topic

_NEEDS_NO_ESCAPE = re.compile(r'[^"\\\x00-\x1f]*')
"""a string orjson writes as its UTF-8 bytes between quotes (device ids always are)"""


def json_string(name: str) -> bytes:
    """orjson.dumps(name), without orjson's per-call output buffer (about 2.6 kB a name: a
    registry of 100,000 devices packed at once took 260 MB for a moment)."""
    if _NEEDS_NO_ESCAPE.fullmatch(name):
        return b'"' + name.encode() + b'"'
    return orjson.dumps(name)


_MAX_KEY = 2**62
"""gateways * names must stay below this (the kernel's sort key)"""


class ConfirmFormatter:
    """Builds a step's confirmations (`__call__`), owning the packed names of the table the
    chunks bring (the core's registry has one for its lifetime; a table must only grow at its
    end, as the registry's do, since it is packed once) and the buffers. Calls are serialized
    by a lock. `target` is the payload size to split at (smaller in tests); the fallback,
    `stored_messages`, splits at `confirm.TARGET_PAYLOAD_BYTES` whatever `target` is."""

    def __init__(self, target: int = confirm.TARGET_PAYLOAD_BYTES) -> None:
        self.target = target
        self.fallbacks = 0
        """calls left to `stored_messages`"""
        self._names: PackedNames | None = None
        self._lock = threading.Lock()
        self._out = np.zeros(1 << 16, dtype=np.uint8)
        """the entries of the latest call, each followed by a comma"""
        self._piece = np.zeros((64, 3), dtype=np.int64)
        """per payload: its gateway's code and the bytes of its entries in _out"""
        self._scratch = np.zeros((6, 64), dtype=np.int64)
        """the kernel's working rows (sort keys, order, entry bounds), reused between calls"""

    def __call__(self, chunks: Iterable[StoredChunk],
                 ts: int | None = None) -> list[tuple[str, bytes]]:
        """What `stored_messages(chunks, ts)` returns."""
        now = time.time_ns() // 1_000_000 if ts is None else ts
        listed = list(chunks)
        with self._lock:
            out = self._format(listed, now)
            if out is None:
                self.fallbacks += 1
        return stored_messages(listed, now) if out is None else out

    def _format(self, chunks: list[StoredChunk], now: int) -> list[tuple[str, bytes]] | None:
        """The messages, or None for what the kernel does not take."""
        gateway_of: dict[tuple[str, str], int] = {}
        names = None
        g_codes: list[int] = []
        ends: list[int] = []
        columns: tuple[list[npt.NDArray[np.int64]], ...] = ([], [], [])
        n = 0
        for area, gateway, table, dev, epoch, seq in chunks:
            arrays = (np.asarray(dev), np.asarray(epoch), np.asarray(seq))
            if arrays[0].ndim != 1:
                return None
            size = arrays[0].shape[0]
            if size == 0:
                continue
            if names is None:
                names = table
            elif table is not names:
                return None
            for column, a in zip(columns, arrays, strict=True):
                if a.shape != (size,) or not _int64_exact(a.dtype):
                    return None
                column.append(a.astype(np.int64, copy=False))
            g_codes.append(gateway_of.setdefault((area, gateway), len(gateway_of)))
            n += size
            ends.append(n)
        if names is None:
            return []
        packed = self._packed(names)
        if packed is None or len(gateway_of) * max(len(packed), 1) >= _MAX_KEY:
            return None
        try:
            prefix = orjson.dumps({"ts": now, "readings": []})[:-2]
        except orjson.JSONEncodeError:
            return None
        dev, epoch, seq = (c[0] if len(c) == 1 else np.concatenate(c) for c in columns)
        bound = n * (packed.longest + ENTRY_FIXED + 1)
        if bound > self._out.shape[0]:
            self._out = np.zeros(max(bound, 2 * self._out.shape[0]), dtype=np.uint8)
        self._piece = grown(self._piece, n)
        if self._scratch.shape[1] < n + 1:
            self._scratch = np.zeros((6, next_capacity(self._scratch.shape[1], n + 1)),
                                     dtype=np.int64)
        n_pieces = confirm_payloads(
            dev, epoch, seq, np.array(g_codes, dtype=np.int64), np.array(ends, dtype=np.int64),
            len(packed), packed.table, packed.offsets, len(prefix) + 2, self.target,
            self._scratch, self._piece, self._out)
        if n_pieces < 0:
            return None
        topic = [stored_topic(area, gateway) for area, gateway in gateway_of]
        entries = self._out.data
        return [(topic[g], b"".join((prefix, entries[a:b], b"]}")))
                for g, a, b in self._piece[:n_pieces].tolist()]

    def _packed(self, names: Sequence[str]) -> PackedNames | None:
        """The packed orjson encodings of `names`, synced; None if one cannot be encoded."""
        packed = self._names
        if packed is None or packed.names is not names or len(packed.names) < len(packed):
            packed = self._names = PackedNames(names, json_string)
        try:
            packed.sync()
        except (orjson.JSONEncodeError, UnicodeEncodeError):
            return None
        return packed


def _int64_exact(dtype: np.dtype[Any]) -> bool:
    """Whether every value of the type is an int64 (and numpy promotes a mix of such types
    to one that is, as `stored_messages` concatenates them)."""
    return dtype.kind == "i" or (dtype.kind == "u" and dtype.itemsize <= 4)


_DEFAULT = ConfirmFormatter()


def stored_messages_columns(chunks: Iterable[StoredChunk],
                            ts: int | None = None) -> list[tuple[str, bytes]]:
    """`stored_messages(chunks, ts)`, by one process-wide ConfirmFormatter."""
    return _DEFAULT(chunks, ts)
