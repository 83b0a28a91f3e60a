"""Makes the dedup window survive a restart: a snapshot plus a write-ahead journal.

Every processing step appends what it admitted — new device names, then (device, epoch, seq) —
as one checksummed record and fsyncs it after the step's lines are committed to the core's
spool (`sensing.store.spool`: on disk, drained into the store before anything else when the core
starts again) and before the broker is acknowledged. So the journal never names a reading that
is neither stored nor on its way there from the spool: a stop or a crash during a store outage
loses nothing and drops nothing as a duplicate of itself. A restarted core loads the snapshot,
replays the journal, and so refuses the redeliveries of everything it had taken. A torn last
record (a crash mid-write) fails its checksum and is ignored: its readings were never
acknowledged, so the broker sends them again.
The journal is folded into a fresh snapshot every `compact_every` records and at a stop.

The one window left: a crash after the spool commit and before the journal record is on disk
(about a millisecond) lets that step's readings be spooled a second time on redelivery; the
store keeps one sample per series and timestamp, so they are stored once all the same.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import structlog

from sensing.dedup.window import DedupWindow
from sensing.registry import Names, Registry

log = structlog.get_logger("sensing.dedup")


@dataclass(frozen=True, slots=True)
class Capture:
    """The dedup window and what a snapshot keeps, copied between two steps."""

    names: list[str]
    arrays: dict[str, Any]

_RECORD = struct.Struct("<4sIII")  # magic, crc32 of the body, n_new_names, n_readings
_MAGIC = b"DJ01"
_PLACEMENT = ("placed_gateways", "placed_areas", "device_gateway", "device_area", "device_kind")
"""what a snapshot keeps of the registry (`Registry.placement`), when it has a registry"""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DedupJournal:
    def __init__(self, state_dir: Path, window: DedupWindow, devices: Names,
                 compact_every: int = 2000, registry: Registry | None = None,
                 auto_compact: bool = True) -> None:
        """With `registry` (whose `devices` are `devices`), snapshots also keep each device's
        gateway, area and kind: which gateway owns a device survives a restart (as of the last
        snapshot: every `compact_every` records and at a stop). Without `auto_compact`,
        `append` never compacts: the caller takes a `capture` between steps when `due` and
        hands it to `write_snapshot` in order with its appends (the core appends on another
        thread while the next step changes the window)."""
        self.auto_compact = auto_compact
        self.registry = registry
        self.dir = state_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.window = window
        self.devices = devices
        self.compact_every = compact_every
        self.snapshot_path = self.dir / "dedup-snapshot.npz"
        self.journal_path = self.dir / "dedup-journal.bin"
        self._journaled_names = 0
        self._records = 0
        self._file: BinaryIO | None = None

    # -- recovery -------------------------------------------------------------------------

    def recover(self) -> int:
        """Load the snapshot and replay the journal; returns how many readings were replayed.
        Must run before the first step, with an empty registry."""
        if len(self.devices):
            raise RuntimeError("recover() needs an empty device registry")
        if self.snapshot_path.exists():
            with np.load(self.snapshot_path, allow_pickle=False) as snap:
                for name in snap["names"].tolist():
                    self.devices.intern(str(name))
                self.window.restore(snap["cur_epoch"], snap["top"], snap["bitmap"])
                if self.registry is not None and "device_gateway" in snap.files:
                    self.registry.restore_placement({k: snap[k] for k in _PLACEMENT})
        replayed = 0
        if self.journal_path.exists():
            data = self.journal_path.read_bytes()
            pos = 0
            while pos + _RECORD.size <= len(data):
                magic, crc, n_names, n = _RECORD.unpack_from(data, pos)
                body_start = pos + _RECORD.size
                body_len = self._body_len(data, body_start, n_names, n)
                if magic != _MAGIC or body_len < 0 or body_start + body_len > len(data):
                    break
                body = data[body_start : body_start + body_len]
                if zlib.crc32(body) != crc:
                    break
                replayed += self._replay(body, n_names, n)
                pos = body_start + body_len
            if pos < len(data):
                log.warning("dedup journal has a torn tail; ignoring it",
                            bytes_ignored=len(data) - pos)
        self._journaled_names = len(self.devices)
        log.info("dedup state recovered", devices=len(self.devices), replayed=replayed)
        try:
            self.compact()
        except OSError as exc:  # a full disk must not keep the core from starting
            log.error("dedup snapshot not written; the journal is kept", error=str(exc))
        return replayed

    @staticmethod
    def _body_len(data: bytes, start: int, n_names: int, n: int) -> int:
        pos = start
        for _ in range(n_names):
            if pos >= len(data):
                return -1
            pos += 2 + int.from_bytes(data[pos : pos + 2], "little")
        return pos - start + n * (4 + 8 + 8)

    def _replay(self, body: bytes, n_names: int, n: int) -> int:
        pos = 0
        for _ in range(n_names):
            size = int.from_bytes(body[pos : pos + 2], "little")
            self.devices.intern(body[pos + 2 : pos + 2 + size].decode())
            pos += 2 + size
        dev = np.frombuffer(body, dtype="<i4", count=n, offset=pos).astype(np.int32)
        epoch = np.frombuffer(body, dtype="<i8", count=n, offset=pos + 4 * n).astype(np.int64)
        seq = np.frombuffer(body, dtype="<i8", count=n, offset=pos + 12 * n).astype(np.int64)
        self.window.ensure_capacity(len(self.devices))
        self.window.classify(dev, epoch, seq)
        return n

    # -- running --------------------------------------------------------------------------

    def append(self, dev: npt.NDArray[np.int32], epoch: npt.NDArray[np.int64],
               seq: npt.NDArray[np.int64]) -> None:
        """Durably record admitted readings (and any device names not yet journaled)."""
        # the next step may intern names meanwhile (the core's commit thread): up to here only
        journaled = len(self.devices)
        names = self.devices.names[self._journaled_names : journaled]
        if not names and not dev.size:
            return
        parts = []
        for name in names:
            raw = name.encode()
            parts.append(len(raw).to_bytes(2, "little") + raw)
        parts += [np.ascontiguousarray(dev, "<i4").tobytes(),
                  np.ascontiguousarray(epoch, "<i8").tobytes(),
                  np.ascontiguousarray(seq, "<i8").tobytes()]
        body = b"".join(parts)
        if self._file is None:
            self._file = self.journal_path.open("ab")
        end = self._file.tell()
        try:
            self._file.write(_RECORD.pack(_MAGIC, zlib.crc32(body), len(names), int(dev.size))
                             + body)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            # a full disk: cut the torn record off, or recovery would stop there and ignore
            # every record after it; the caller tries again
            self._file.close()
            self._file = None
            with contextlib.suppress(OSError), self.journal_path.open("r+b") as f:
                f.truncate(end)
            raise
        self._journaled_names = journaled
        self._records += 1
        if self.auto_compact and self.due:
            try:
                self.compact()
            except OSError as exc:  # the record is on disk: compaction waits for space
                self._records = 0
                log.error("dedup snapshot not written; the journal is kept", error=str(exc))

    @property
    def due(self) -> bool:
        """Whether enough records were appended since the last snapshot to take another."""
        return self._records >= self.compact_every

    def compact(self) -> None:
        """Write the whole window as a snapshot and start an empty journal."""
        self.write_snapshot(self.capture())

    def capture(self) -> Capture:
        """A copy of the window and the device names as they are now (between two steps)."""
        cur_epoch, top, bitmap = self.window.state()
        n = len(self.devices)
        # Any: np.savez's stub types **kwds so that a dict of arrays reads as allow_pickle
        placement: dict[str, Any] = (self.registry.placement()
                                     if self.registry is not None else {})
        # the names stay a list here: their array is made on the writing thread
        return Capture(self.devices.names[:n], dict(
            cur_epoch=cur_epoch[:n].copy(), top=top[:n].copy(), bitmap=bitmap[:n].copy(),
            **placement))

    def write_snapshot(self, capture: Capture) -> None:
        """Write a capture as the snapshot and start an empty journal: the appends before it
        are in it, those after it go to the new journal."""
        tmp = self.snapshot_path.with_suffix(".tmp.npz")
        n = len(capture.names)
        with tmp.open("wb") as f:
            np.savez(f, names=np.array(capture.names, dtype=np.str_), **capture.arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.snapshot_path)
        if self._file is not None:
            self._file.close()
            self._file = None
        with self.journal_path.open("wb") as f:
            os.fsync(f.fileno())
        _fsync_dir(self.dir)
        self._journaled_names = n
        self._records = 0

    def close(self, compact: bool = True) -> None:
        """Fold the journal into a snapshot, unless the window holds readings that were never
        spooled (a stop while the spool was full): then the journal stays as it is."""
        if compact:
            self.compact()
        elif self._file is not None:
            self._file.close()
            self._file = None
