"""Checks every reading of a batch against the contract, whichever codec it came from."""

from __future__ import annotations

import numpy as np

from sensing.wire.batch import ReadingBatch, kept_values
from sensing.wire.kinds import KINDS
from sensing.wire.limits import MAX_DEVICE_ID, TS_MAX_MS, TS_MIN_MS, bad_device_reason


class _DeviceTableCheck:
    """Reasons per device table, remembered per distinct (devices, kinds) pair: a decoded
    SNB1 table is the same pair of tuples batch after batch, so a repeat costs a dict hit."""

    def __init__(self, max_tables: int = 1024) -> None:
        self._seen: dict[tuple[int, int], tuple[tuple[str, ...], tuple[str, ...],
                                                list[tuple[int, str]]]] = {}
        """by the identity of the tuples (hashing them costs a step per name), holding them
        so that their ids stay theirs"""
        self.max_tables = max_tables

    def __call__(self, devices: tuple[str, ...], kinds: tuple[str, ...]) -> list[tuple[int, str]]:
        key = (id(devices), id(kinds))
        hit = self._seen.get(key)
        if hit is None or hit[0] is not devices or hit[1] is not kinds:
            if len(self._seen) >= self.max_tables:
                self._seen.clear()
            hit = self._seen[key] = (devices, kinds, self._check(devices, kinds))
        return hit[2]

    @staticmethod
    def _check(devices: tuple[str, ...], kinds: tuple[str, ...]) -> list[tuple[int, str]]:
        if (not devices or (_KIND_SET.issuperset(kinds) and all(devices)
                            and max(map(len, devices)) <= MAX_DEVICE_ID
                            and all(map(str.isprintable, devices)))):
            return []  # the usual case, checked without a Python step per device
        out = []
        for d, (device, kind) in enumerate(zip(devices, kinds, strict=True)):
            reason = bad_device_reason(device, kind)
            if reason is not None:
                out.append((d, reason))
        return out


_KIND_SET = frozenset(KINDS)
_device_tables = _DeviceTableCheck()


def invalid_readings(batch: ReadingBatch) -> list[tuple[int, str]]:
    """(reading index, reason) for every reading the contract does not allow, first reason only."""
    # imported here: the edge agent imports sensing.wire and must not load numba
    from sensing.kernels.columns import readings_in_range

    n = len(batch)
    bad_devices = _device_tables(batch.devices, batch.kinds)
    if not bad_devices and readings_in_range(batch.seq, batch.epoch, batch.ts, batch.battery,
                                             batch.value, TS_MIN_MS, TS_MAX_MS):
        return []  # the usual case: one pass, no mask per check
    reasons: dict[int, str] = {}

    def flag(mask: np.ndarray, reason: str) -> None:
        for i in np.flatnonzero(mask).tolist():
            reasons.setdefault(int(i), reason)

    for d, reason in bad_devices:
        flag(batch.device == d, reason)
    flag(batch.seq < 0, "seq must be a non-negative integer")
    flag(batch.epoch < 0, "epoch must be a non-negative integer")
    flag((batch.ts < TS_MIN_MS) | (batch.ts > TS_MAX_MS), "ts outside 2000-01-01 .. 2100-01-01")
    flag((batch.battery < 0.0) | (batch.battery > 1.0), "battery must be between 0.0 and 1.0")
    if batch.n_values:
        bad_value_rows = batch.value_row[~np.isfinite(batch.value)]
        mask = np.zeros(n, dtype=np.bool_)
        mask[bad_value_rows] = True
        flag(mask, "values must be finite numbers (no NaN or infinity)")
    return sorted(reasons.items())


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
