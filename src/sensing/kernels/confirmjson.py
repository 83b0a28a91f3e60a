"""Store confirmations as JSON, written into one preallocated byte buffer.

A step's handled readings (device `dev`, `epoch`, `seq`), in chunks of one gateway each
(`chunk_gateway[c]` for readings `chunk_end[c - 1] ..< chunk_end[c]`), are ordered by (gateway,
device index, epoch, seq), rid of repeats, and coalesced into ranges of consecutive seqs per
(gateway, device, epoch). Each range's entry `[<name>,<epoch>,<first_seq>,<last_seq>]` and a
comma are written into `out`, the device's name copied, already JSON-encoded with its quotes,
from a packed table (name k: `table[offsets[k]:offsets[k + 1]]`), the integers formatted
here. Then each gateway's entries are cut into payloads exactly as
`sensing.wire.confirm._payloads` cuts them: all in one if
`{"ts":<ts>,"readings":[...]}` fits in `target` bytes, else greedily, counting a comma after
every entry; `head` is the size of the payload without entries. The caller wraps each piece
of `out` as `{"ts":<ts>,"readings":[` + piece + `]}`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sensing.kernels.lineproto import write_int
from sensing.kernels.spans import at

RADIX_BITS = 11
"""bits of the key per pass of the radix sort"""
SMALL_RUN = 24
"""runs up to this long are sorted by insertion"""
ENTRY_FIXED = 2 + 3 + 3 * 19
"""bytes of an entry besides its name, at most: brackets, commas, three ints < 2^63"""

_COMMA = 44  # b","
_OPEN = 91  # b"["
_CLOSE = 93  # b"]"
_INT64_MAX = np.iinfo(np.int64).max


@njit(cache=True, nogil=True)
def sort_by_key(key: np.ndarray, order: np.ndarray, tmp: np.ndarray,
                key_tmp: np.ndarray) -> None:
    """Sort `key` (n non-negative int64s) in place, stably, and set order[:n] to the position
    each key had: nothing moves if already sorted; insertion if few, else an LSD radix sort
    that carries the keys along (later passes and the caller read them in order, not through
    `order`), through tmp and key_tmp (n long at least)."""
    n = key.shape[0]
    top = 0
    is_sorted = True
    for i in range(n):
        order[i] = i
        if key[i] > top:
            top = key[i]
        if i and key[i] < key[i - 1]:
            is_sorted = False
    if is_sorted:
        return
    if n <= SMALL_RUN:
        for i in range(1, n):
            k = key[i]
            j = i
            while j > 0 and key[j - 1] > k:
                order[j] = order[j - 1]
                key[j] = key[j - 1]
                j -= 1
            order[j] = i
            key[j] = k
        return
    buckets = 1 << RADIX_BITS
    mask = buckets - 1
    count = np.empty(buckets + 1, dtype=np.int64)
    src, dst, k_src, k_dst = order, tmp, key, key_tmp
    shift = 0
    while shift < 63 and (shift == 0 or (top >> shift) > 0):
        count[:] = 0
        for p in range(n):
            count[((k_src[p] >> shift) & mask) + 1] += 1
        for b in range(buckets):
            count[b + 1] += count[b]
        for p in range(n):
            k = k_src[p]
            b = (k >> shift) & mask
            c = at(count[b])
            dst[c] = src[p]
            k_dst[c] = k
            count[b] += 1
        src, dst, k_src, k_dst = dst, src, k_dst, k_src
        shift += RADIX_BITS
    if (shift // RADIX_BITS) % 2:
        order[:n] = tmp[:n]
        key[:n] = key_tmp[:n]


@njit(cache=True, nogil=True)
def _before(epoch: np.ndarray, seq: np.ndarray, i: int, j: int) -> bool:
    """(epoch, seq) of reading i < that of reading j"""
    return bool(epoch[i] < epoch[j] or (epoch[i] == epoch[j] and seq[i] < seq[j]))


@njit(cache=True, nogil=True)
def sort_run(order: np.ndarray, lo: int, hi: int, epoch: np.ndarray, seq: np.ndarray,
             tmp: np.ndarray) -> None:
    """Sort order[lo:hi] by (epoch, seq), stably: insertion for short runs, else a
    bottom-up merge sort through tmp (at least hi - lo long)."""
    if hi - lo <= SMALL_RUN:
        for p in range(lo + 1, hi):
            i = order[p]
            q = p
            while q > lo and _before(epoch, seq, i, order[q - 1]):
                order[q] = order[q - 1]
                q -= 1
            order[q] = i
        return
    n = hi - lo
    src = order[lo:hi]
    dst = tmp[:n]
    in_order = True  # whether src is order's own run
    width = 1
    while width < n:
        for a in range(0, n, 2 * width):
            m = min(a + width, n)
            b = min(a + 2 * width, n)
            i, j, k = a, m, a
            while i < m and j < b:
                if _before(epoch, seq, src[j], src[i]):
                    dst[k] = src[j]
                    j += 1
                else:
                    dst[k] = src[i]
                    i += 1
                k += 1
            while i < m:
                dst[k] = src[i]
                i += 1
                k += 1
            while j < b:
                dst[k] = src[j]
                j += 1
                k += 1
        src, dst = dst, src
        in_order = not in_order
        width *= 2
    if not in_order:
        order[lo:hi] = src


@njit(cache=True, nogil=True)
def confirm_payloads(dev: np.ndarray, epoch: np.ndarray, seq: np.ndarray,
                     chunk_gateway: np.ndarray, chunk_end: np.ndarray, n_names: int,
                     table: np.ndarray, offsets: np.ndarray, head: int, target: int,
                     scratch: np.ndarray, piece: np.ndarray, out: np.ndarray) -> int:
    """Write the entries (see the module) into `out`; payload k holds
    `out[piece[k, 1]:piece[k, 2]]` for gateway piece[k, 0]. Returns the number of payloads,
    or -1 (with nothing written) if a device index lies outside 0 ..< n_names or an epoch or
    seq is negative. For n readings, `out` must hold n * (longest name + ENTRY_FIXED + 1) bytes,
    `piece` n rows and `scratch` (int64) 6 rows of n + 1; max(chunk_gateway) * n_names must
    stay below 2^62."""
    n = dev.shape[0]
    key, order, tmp, key_tmp, entry, gateway = (scratch[0], scratch[1], scratch[2], scratch[3],
                                                scratch[4], scratch[5])
    c = 0
    for i in range(n):
        while i >= chunk_end[c]:
            c += 1
        d = dev[i]
        if not 0 <= d < n_names or epoch[i] < 0 or seq[i] < 0:
            return -1
        key[i] = chunk_gateway[c] * n_names + d
    key = key[:n]
    sort_by_key(key, order, key_tmp, tmp)
    lo = 0
    for p in range(1, n + 1):
        if p < n and key[p] == key[lo]:
            continue
        for r in range(lo + 1, p):  # a run of one device: sorted by (epoch, seq) as it came?
            if _before(epoch, seq, order[r], order[r - 1]):
                sort_run(order, lo, p, epoch, seq, tmp)
                break
        lo = p

    # ranges, each written as its entry and a comma
    # entry r: out[entry[r]:entry[r + 1]], its comma included; gateway[r]: its gateway
    n_ranges = 0
    pos = 0
    p = 0
    g = 0  # the gateway of the keys below g_end
    g_end = n_names
    while p < n:
        run_i = at(order[p])
        k, e, first_seq = key[p], epoch[run_i], seq[run_i]
        last = first_seq
        p += 1
        while p < n:
            next_i = at(order[p])
            if key[p] != k or epoch[next_i] != e or not (
                    seq[next_i] == last or (last < _INT64_MAX and seq[next_i] == last + 1)):
                break
            last = seq[next_i]
            p += 1
        while k >= g_end:
            g += 1
            g_end += n_names
        d = k - (g_end - n_names)
        gateway[n_ranges] = g
        entry[n_ranges] = pos
        n_ranges += 1
        out[pos] = _OPEN
        pos += 1
        for b in range(offsets[d], offsets[d + 1]):
            out[at(pos)] = table[at(b)]
            pos += 1
        out[pos] = _COMMA
        pos = write_int(out, pos + 1, e)
        out[pos] = _COMMA
        first = pos + 1
        pos = write_int(out, first, first_seq)
        out[pos] = _COMMA
        if last == first_seq:  # one reading (one per device and step is common): copy its text
            for b in range(first, pos):
                out[at(b + pos + 1 - first)] = out[at(b)]
            pos += pos + 1 - first
        else:
            pos = write_int(out, pos + 1, last)
        out[pos] = _CLOSE
        out[pos + 1] = _COMMA
        pos += 2
    entry[n_ranges] = pos

    # payloads: each gateway's entries whole if they fit, else cut greedily
    n_pieces = 0
    a = 0
    while a < n_ranges:
        b = a
        while b < n_ranges and gateway[b] == gateway[a]:
            b += 1
        if head - 1 + entry[b] - entry[a] > target:
            start, used = a, head
            for r in range(a, b):
                size = entry[r + 1] - entry[r]
                if r > start and used + size > target:
                    piece[n_pieces, 0] = gateway[a]
                    piece[n_pieces, 1] = entry[start]
                    piece[n_pieces, 2] = entry[r] - 1
                    n_pieces += 1
                    start, used = r, head
                used += size
            a = start
        piece[n_pieces, 0] = gateway[a]
        piece[n_pieces, 1] = entry[a]
        piece[n_pieces, 2] = entry[b] - 1
        n_pieces += 1
        a = b
    return n_pieces
