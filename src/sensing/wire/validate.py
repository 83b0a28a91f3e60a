"""Checks every reading of a batch against the contract, whichever codec it came from."""

from __future__ import annotations

import numpy as np

from sensing.wire.batch import ReadingBatch, kept_values
from sensing.wire.errors import Code
from sensing.wire.kinds import KINDS
from sensing.wire.limits import (
    MAX_FUTURE_MS,
    MAX_VALUES_PER_READING,
    TS_MAX_MS,
    TS_MIN_MS,
    all_channel_names,
    all_device_ids,
    bad_channel_reason,
    bad_device,
)
from sensing.wire.table_cache import ByIdentity

Rejected = tuple[int, str, str]
"""(index of the reading, reason, code)"""
BadEntries = list[tuple[int, str, str]]
"""(entry of a name table, reason, code)"""


class _TableCheck:
    """Bad entries of a batch's name tables, remembered per distinct triple of tables: a
    decoded SNB table is the same tuples batch after batch, so a repeat costs a dict hit."""

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self.tables: ByIdentity[tuple[BadEntries, BadEntries]] = ByIdentity(max_bytes)

    def __call__(self, devices: tuple[str, ...], kinds: tuple[str, ...],
                 channels: tuple[str, ...]) -> tuple[BadEntries, BadEntries]:
        """(bad devices, bad channels)"""
        key = (devices, kinds, channels)
        hit = self.tables.get(key)
        if hit is None:
            hit = (self._check_devices(devices, kinds), self._check_channels(channels))
            if not hit[0] and not hit[1]:
                # only clean tables are remembered: their names are short, so the cache's
                # estimate of its bytes holds (a bad name may be as long as the payload)
                self.tables.put(key, hit)
        return hit

    @staticmethod
    def _check_devices(devices: tuple[str, ...], kinds: tuple[str, ...]) -> BadEntries:
        if _KIND_SET.issuperset(kinds) and all_device_ids(devices):
            return []  # the usual case, checked without a Python step per device
        out = []
        for d, (device, kind) in enumerate(zip(devices, kinds, strict=True)):
            bad = bad_device(device, kind)
            if bad is not None:
                out.append((d, bad[0], str(bad[1])))
        return out

    @staticmethod
    def _check_channels(channels: tuple[str, ...]) -> BadEntries:
        if all_channel_names(channels):
            return []
        return [(c, reason, Code.NAME_INVALID.value) for c, name in enumerate(channels)
                if (reason := bad_channel_reason(name)) is not None]


_KIND_SET = frozenset(KINDS)
_tables = _TableCheck()


def ts_limit(now_ms: int | None) -> int:
    """The latest `ts` allowed: MAX_FUTURE_MS ahead of the core's clock (TS_MAX_MS at most)."""
    return TS_MAX_MS if now_ms is None else max(TS_MIN_MS, min(TS_MAX_MS, now_ms + MAX_FUTURE_MS))


def invalid_readings(batch: ReadingBatch, now_ms: int | None = None) -> list[Rejected]:
    """(reading index, reason, code) for every reading the contract does not allow, first
    reason only. `now_ms`: the core's clock, for the future bound on `ts` (None: 2100)."""
    # imported here: the edge agent imports sensing.wire and must not load numba
    from sensing.kernels.columns import readings_allowed

    n = len(batch)
    ts_max = ts_limit(now_ms)
    bad_devices, bad_channels = _tables(batch.devices, batch.kinds, batch.channels)
    if not bad_devices and not bad_channels and readings_allowed(
            batch.seq, batch.epoch, batch.ts, batch.battery, batch.value, batch.value_row,
            TS_MIN_MS, ts_max, MAX_VALUES_PER_READING):
        return []  # the usual case: one pass, no mask per check
    reasons: dict[int, tuple[str, str]] = {}

    def flag(mask: np.ndarray, reason: str, code: str) -> None:
        for i in np.flatnonzero(mask).tolist():
            reasons.setdefault(int(i), (reason, code))

    def flag_values(value_mask: np.ndarray, reason: str, code: str) -> None:
        mask = np.zeros(n, dtype=np.bool_)
        mask[batch.value_row[value_mask]] = True
        flag(mask, reason, code)

    for d, reason, code in bad_devices:
        flag(batch.device == d, reason, code)
    for c, reason, code in bad_channels:
        flag_values(batch.value_channel == c, reason, code)
    if batch.n_values > MAX_VALUES_PER_READING:
        counts = np.bincount(batch.value_row, minlength=n)
        flag(counts > MAX_VALUES_PER_READING,
             f"more than {MAX_VALUES_PER_READING} values in one reading", Code.TOO_MANY_VALUES)
    flag(batch.seq < 0, "seq must be a non-negative integer", Code.SEQ_OUT_OF_RANGE)
    flag(batch.epoch < 0, "epoch must be a non-negative integer", Code.EPOCH_OUT_OF_RANGE)
    flag((batch.ts < TS_MIN_MS) | (batch.ts > TS_MAX_MS), "ts outside 2000-01-01 .. 2100-01-01",
         Code.TS_OUT_OF_RANGE)
    flag(batch.ts > ts_max, f"ts more than {MAX_FUTURE_MS // 1000} s ahead of the core's clock",
         Code.TS_OUT_OF_RANGE)
    flag((batch.battery < 0.0) | (batch.battery > 1.0), "battery must be between 0.0 and 1.0",
         Code.BATTERY_OUT_OF_RANGE)
    if batch.n_values:
        flag_values(~np.isfinite(batch.value),
                    "values must be finite numbers (no NaN or infinity)", Code.VALUE_INVALID)
    return sorted((i, reason, str(code)) for i, (reason, code) in reasons.items())


def has_bad_names(batch: ReadingBatch) -> bool:
    """Whether the batch's tables hold a name the contract refuses (`name_invalid`; an unknown
    kind is no harm there), used by a reading or not: a table entry no reading uses would
    still reach the registry."""
    bad_devices, bad_channels = _tables(batch.devices, batch.kinds, batch.channels)
    return any(code == Code.NAME_INVALID for _, _, code in (*bad_devices, *bad_channels))


def select_named(batch: ReadingBatch, keep: np.ndarray) -> ReadingBatch:
    """The readings where `keep` is true, with tables of only the devices and channels they
    name: a refused reading's bad name must not reach the registry (nor a stored line)."""
    kept = select(batch, keep)
    used_devices = np.unique(kept.device)
    used_channels = np.unique(kept.value_channel)
    device_map = np.full(len(batch.devices), -1, dtype=np.int32)
    device_map[used_devices] = np.arange(used_devices.shape[0], dtype=np.int32)
    channel_map = np.full(len(batch.channels), -1, dtype=np.int32)
    channel_map[used_channels] = np.arange(used_channels.shape[0], dtype=np.int32)
    dev_list, chan_list = used_devices.tolist(), used_channels.tolist()
    return ReadingBatch(
        devices=tuple(batch.devices[d] for d in dev_list),
        kinds=tuple(batch.kinds[d] for d in dev_list),
        channels=tuple(batch.channels[c] for c in chan_list),
        device=device_map[kept.device],
        epoch=kept.epoch,
        seq=kept.seq,
        ts=kept.ts,
        battery=kept.battery,
        value_row=kept.value_row,
        value_channel=channel_map[kept.value_channel],
        value=kept.value,
    )


def select(batch: ReadingBatch, keep: np.ndarray) -> ReadingBatch:
    """The readings where `keep` is true, with their values; tables stay as they are."""
    keep = np.asarray(keep, dtype=np.bool_)
    value_keep, value_row = kept_values(keep, batch.value_row)
    return ReadingBatch(
        devices=batch.devices,
        kinds=batch.kinds,
        channels=batch.channels,
        device=batch.device[keep],
        epoch=batch.epoch[keep],
        seq=batch.seq[keep],
        ts=batch.ts[keep],
        battery=batch.battery[keep],
        value_row=value_row,
        value_channel=batch.value_channel[value_keep],
        value=batch.value[value_keep],
    )
