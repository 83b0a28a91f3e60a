"""Whole-batch checks and lookups that numpy would do in several passes."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def batch_bounds(dev: np.ndarray, kind: np.ndarray, value_row: np.ndarray,
                 value_channel: np.ndarray) -> tuple[int, int, int, int, int, int]:
    """(lowest device, highest device, highest kind, lowest value row, highest value row,
    lowest channel), in one pass; an empty array gives 0 for its lowest and -1 for its
    highest."""
    dev_lo, dev_hi, kind_hi = 0, -1, -1
    if dev.shape[0]:
        dev_lo = dev_hi = int(dev[0])
        kind_hi = int(kind[0])
    for i in range(dev.shape[0]):
        d = int(dev[i])
        dev_lo = min(dev_lo, d)
        dev_hi = max(dev_hi, d)
        kind_hi = max(kind_hi, int(kind[i]))
    row_lo, row_hi, chan_lo = 0, -1, 0
    if value_row.shape[0]:
        row_lo = row_hi = int(value_row[0])
        chan_lo = int(value_channel[0])
    for j in range(value_row.shape[0]):
        r = int(value_row[j])
        row_lo = min(row_lo, r)
        row_hi = max(row_hi, r)
        chan_lo = min(chan_lo, int(value_channel[j]))
    return dev_lo, dev_hi, kind_hi, row_lo, row_hi, chan_lo


@njit(cache=True, nogil=True)
def take(table: np.ndarray, index: np.ndarray, out: np.ndarray) -> int:
    """out[i] = table[index[i]] (numpy's fancy indexing, without its per-call set-up); returns
    the position of the first index outside the table, or -1 when all are inside."""
    n = table.shape[0]
    for i in range(index.shape[0]):
        j = index[i]
        if j < 0 or j >= n:
            return i
        out[i] = table[j]
    return -1


_INT32_MAX = 2**31 - 1


@njit(cache=True, nogil=True)
def widen_wire_indices(device: np.ndarray, epoch: np.ndarray, value_row: np.ndarray,
                       value_channel: np.ndarray, out_device: np.ndarray, out_epoch: np.ndarray,
                       out_row: np.ndarray, out_channel: np.ndarray) -> tuple[int, int, int]:
    """Copy SNB1's narrow index columns into the native ones (same lengths) and return the
    highest device index, value row and channel index (-1 for none), in one pass instead of
    numpy's seven."""
    dev_hi = row_hi = chan_hi = -1
    for i in range(device.shape[0]):
        dev_hi = max(dev_hi, int(device[i]))
        out_device[i] = device[i]
        out_epoch[i] = epoch[i]
    for j in range(value_row.shape[0]):
        r = int(value_row[j])
        row_hi = max(row_hi, r)
        chan_hi = max(chan_hi, int(value_channel[j]))
        out_row[j] = min(r, _INT32_MAX)  # larger ones are out of range: the caller rejects
        out_channel[j] = value_channel[j]  # them on the exact maximum
    return dev_hi, row_hi, chan_hi


@njit(cache=True, nogil=True)
def readings_in_range(seq: np.ndarray, epoch: np.ndarray, ts: np.ndarray, battery: np.ndarray,
                      value: np.ndarray, ts_min: int, ts_max: int) -> bool:
    """Whether every reading has seq and epoch >= 0, ts_min <= ts <= ts_max, a battery level in
    [0, 1] or none (NaN), and finite values: the contract's range checks in one pass."""
    for i in range(seq.shape[0]):
        if seq[i] < 0 or epoch[i] < 0 or not ts_min <= ts[i] <= ts_max:
            return False
        b = battery[i]
        if b < 0.0 or b > 1.0:  # NaN compares false: no battery
            return False
    for j in range(value.shape[0]):  # noqa: SIM110 (numba compiles no generator into all())
        if not np.isfinite(value[j]):
            return False
    return True


@njit(cache=True, nogil=True)
def most_values_per_reading(value_row: np.ndarray, n: int) -> int:
    """The largest number of values of one reading (value rows outside 0 ..< n count for
    none): one pass, and no array when the values come grouped by reading (as encoders write
    them)."""
    best = run = 0
    prev = -1
    for j in range(value_row.shape[0]):
        r = int(value_row[j])
        if r < prev:
            counts = np.zeros(n, dtype=np.int64)
            for k in range(value_row.shape[0]):
                r = int(value_row[k])
                if 0 <= r < n:
                    counts[r] += 1
            return int(counts.max()) if n else 0
        run = run + 1 if r == prev else 1
        prev = r
        if 0 <= r < n:
            best = max(best, run)
    return best


@njit(cache=True, nogil=True)
def readings_allowed(seq: np.ndarray, epoch: np.ndarray, ts: np.ndarray, battery: np.ndarray,
                     value: np.ndarray, value_row: np.ndarray, ts_min: int, ts_max: int,
                     max_values: int) -> bool:
    """`readings_in_range`, and at most `max_values` values per reading with the values grouped
    by reading (as encoders write them; False otherwise, to be looked at closely): every check
    of the usual batch in one call."""
    if not readings_in_range(seq, epoch, ts, battery, value, ts_min, ts_max):
        return False
    run = 0
    prev = -1
    for j in range(value_row.shape[0]):
        r = int(value_row[j])
        if r < prev:
            return False
        run = run + 1 if r == prev else 1
        if run > max_values:
            return False
        prev = r
    return True
