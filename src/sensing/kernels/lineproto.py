"""InfluxDB line protocol for a batch of readings, written into one preallocated byte buffer.

Line of reading `i`: the device's prefix bytes (`reading,<tags> `), then per value of the reading
(in value order) `<field key>=<float>`, then `battery=<float>` when present, then
`seq=<int>i,epoch=<int>i`, a space, the timestamp in ms, and a newline. Prefixes and field keys
with their `=` are bytes prepared once by the owner (CSR:
`prefix[prefix_ptr[d]:prefix_ptr[d] + prefix_len[d]]`, `key[key_ptr[c]:key_ptr[c] + key_len[c]]`),
each arena followed by PADDING bytes; `out` has OUT_PADDING bytes beyond the bound.

Floats are written exactly as Python's `repr` writes them: the shortest decimal that reads back
as the same double (the closest such, ties to even), found with Giulietti's Schubfach
algorithm ("The Schubfach way to render doubles", 2020), then `repr`'s layout: plain notation
for decimal exponents -4 ..< 16, else `d.ddde±XX`. Sensor values mostly have a few decimals
(0.23, 22.4, 97.0): those are written directly, as integer part, point and decimals, and the
texts of recent values are kept in a small cache by their bits, as a batch repeats them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import config, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from sensing.kernels.jit import ix, njit_without_refcounts

FLOAT_MAX_CHARS = 24
"""-2.2250738585072014e-308"""
INT_MAX_CHARS = 20
CHUNK = 16
"""prefixes and keys are copied in chunks of this many bytes"""
PADDING = CHUNK
"""bytes an arena of prefixes or keys needs after its last entry"""
OUT_PADDING = 64
"""bytes `out` needs beyond the bound of its content (chunks and cached floats overshoot)"""
CACHE_SLOTS = 4096
CACHE_ENTRY = 32
"""bytes per cached text: FLOAT_MAX_CHARS, then the length"""
_CACHE_SHIFT = np.uint64(65 - CACHE_SLOTS.bit_length())  # the slot: the top 12 bits
_HASH = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of bits * 2^64 / phi
_NAN_BITS = np.uint64(0x7FF8000000000000)


def _g_table() -> np.ndarray:
    """g(k) = floor(10^-k * 2^(125 - floor(log2 10^-k))) + 1 for k in K_MIN..K_MAX, split into
    (g >> 63, g & (2^63 - 1)) (Schubfach's 126-bit approximations of powers of ten)."""
    rows = []
    for k in range(_K_MIN, _K_MAX + 1):
        num, den = (10 ** -k, 1) if k <= 0 else (1, 10 ** k)
        r = (num // den).bit_length() - 1 if num >= den else -((den - 1) // num).bit_length()
        while (num << max(0, -r)) < (den << max(0, r)):  # make 2^r <= 10^-k exactly
            r -= 1
        while (num << max(0, -(r + 1))) >= (den << max(0, r + 1)):
            r += 1
        shift = 125 - r
        g = ((num << shift) // den if shift >= 0 else num // (den << -shift)) + 1
        assert 1 << 125 <= g < 1 << 126
        rows.append((g >> 63, g & ((1 << 63) - 1)))
    return np.array(rows, dtype=np.uint64)


_K_MIN = -324
_K_MAX = 292
_G = _g_table()
_Q_MIN = -1074
_C_MIN = np.uint64(1 << 52)
_T_MASK = np.uint64((1 << 52) - 1)
_MASK_63 = np.uint64((1 << 63) - 1)
_MASK_32 = np.uint64(0xFFFFFFFF)
_TENTH = np.uint64(115_292_150_460_684_698 << 4)  # ceil(2^64 / 10)
_U0 = np.uint64(0)
FEW_DECIMALS = 8
_POW10 = 10.0 ** np.arange(FEW_DECIMALS + 1)
_FEW_LIMIT = float(2**50)
DIRECT_DECIMALS = 3
_POW10_I = np.array([10**i for i in range(DIRECT_DECIMALS + 1)], dtype=np.int64)
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U10 = np.uint64(10)
_U100 = np.uint64(100)
_U10000 = np.uint64(10_000)
_POW10_U = np.array([10**i for i in range(20)], dtype=np.uint64)
_PAIRS = np.frombuffer(b"".join(b"%02d" % i for i in range(100)), dtype=np.uint8)
_S32 = np.uint64(32)
_S63 = np.uint64(63)

_BATTERY = np.frombuffer(b"battery=", dtype=np.uint8)
_SEQ = np.frombuffer(b"seq=", dtype=np.uint8)
_EPOCH = np.frombuffer(b"i,epoch=", dtype=np.uint8)
_CH_0 = 48  # b"0"


@njit(cache=True, nogil=True)
def _mul_hi(a: np.uint64, b: np.uint64) -> np.uint64:
    """The high 64 bits of the 128-bit product a * b."""
    a0 = a & _MASK_32
    a1 = a >> _S32
    b0 = b & _MASK_32
    b1 = b >> _S32
    p01 = a0 * b1
    p10 = a1 * b0
    mid = ((a0 * b0) >> _S32) + (p01 & _MASK_32) + (p10 & _MASK_32)
    return a1 * b1 + (p01 >> _S32) + (p10 >> _S32) + (mid >> _S32)


@njit(cache=True, nogil=True)
def _mul_lo(a: np.uint64, b: np.uint64) -> np.uint64:
    """The low 64 bits of a * b (wrapping), without overflowing any step."""
    a0 = a & _MASK_32
    b0 = b & _MASK_32
    p00 = a0 * b0
    upper = ((p00 >> _S32) + (((a >> _S32) * b0) & _MASK_32)
             + ((a0 * (b >> _S32)) & _MASK_32)) & _MASK_32
    return (upper << _S32) | (p00 & _MASK_32)


@njit(cache=True, nogil=True)
def _rop(g1: np.uint64, g0: np.uint64, cp: np.uint64) -> np.uint64:
    """Round to odd of g * cp / 2^127 (Schubfach)."""
    x1 = _mul_hi(g0, cp)
    y0 = _mul_lo(g1, cp)
    y1 = _mul_hi(g1, cp)
    z = (y0 >> _U1) + x1
    vbp = y1 + (z >> _S63)
    return vbp | (((z & _MASK_63) + _MASK_63) >> _S63)


@njit(cache=True, nogil=True)
def _schubfach(q: int, c: np.uint64) -> tuple[np.uint64, int]:
    """Shortest (f, e) with f * 10^e in the rounding interval of c * 2^q, closest to it."""
    out = c & _U1
    cb = c << _U2
    cbr = cb + _U2
    if c != _C_MIN or q == _Q_MIN:
        cbl = cb - _U2
        k = (q * 661_971_961_083) >> 41
    else:
        cbl = cb - _U1
        k = (q * 661_971_961_083 - 274_743_187_321) >> 41
    h = np.uint64(q + ((-k * 913_124_641_741) >> 38) + 2)
    g1 = _G[k - _K_MIN, 0]
    g0 = _G[k - _K_MIN, 1]
    vb = _rop(g1, g0, cb << h)
    vbl = _rop(g1, g0, cbl << h)
    vbr = _rop(g1, g0, cbr << h)
    s = vb >> _U2
    sp10 = _U10 * _mul_hi(s, _TENTH)
    tp10 = sp10 + _U10
    upin = vbl + out <= sp10 << _U2
    wpin = (tp10 << _U2) + out <= vbr
    if upin != wpin:
        return (sp10 if upin else tp10), k
    t = s + _U1
    uin = vbl + out <= s << _U2
    win = (t << _U2) + out <= vbr
    if uin != win:
        return (s if uin else t), k
    mid = (s + t) << _U1
    if vb < mid or (vb == mid and s & _U1 == 0):
        return s, k
    return t, k


@njit(cache=True, nogil=True)
def _few_decimals(v: float) -> tuple[np.uint64, int]:
    """The fast path for values of a few decimals (most sensor readings): (f, e) with
    f * 10^e == |v| read back and f shortest, or (0, 0) if |v| has more than FEW_DECIMALS.

    Take p = FEW_DECIMALS (fewer for large values, keeping |v| 10^p < 2^50). Then a decimal
    with p places lies within half an ulp of v at most once (their spacing exceeds an ulp), and
    x = round(|v| 10^p) finds it if there is one (the product is off by less than 1/8); the
    division is exact IEEE, as a correct parser's reading of the decimal. A shorter decimal
    would be the same number with trailing zeros, so stripping x's zeros gives the shortest:
    the one `repr` writes."""
    v = abs(v)
    if not 0.0 < v < _FEW_LIMIT:
        return _U0, 0
    p = FEW_DECIMALS
    scaled = v * _POW10[p]
    while scaled >= _FEW_LIMIT:
        p -= 1
        scaled = v * _POW10[p]
    x = np.floor(scaled + 0.5)
    if x / _POW10[p] != v:
        return _U0, 0
    f = np.uint64(x)
    e = -p
    while f % _U10000 == _U0:
        f //= _U10000
        e += 4
    if f % _U100 == _U0:
        f //= _U100
        e += 2
    if f % _U10 == _U0:
        f //= _U10
        e += 1
    return f, e


@njit(cache=True, nogil=True)
def shortest_digits(v: float, bits: np.uint64) -> tuple[np.uint64, int]:
    """(f, e) such that f * 10^e reads back as |v| (finite; `bits` are its IEEE bits), f as
    short as possible, closest, without trailing zeros; (0, 0) for zero."""
    f, e = _few_decimals(v)
    if f != _U0:
        return f, e
    t = bits & _T_MASK
    bq = int((bits >> np.uint64(52)) & np.uint64(0x7FF))
    if bq != 0:
        mq = 1075 - bq
        c = _C_MIN | t
        f = c
        e = 0
        if 0 <= mq < 53 and (c >> np.uint64(mq)) << np.uint64(mq) == c:
            f = c >> np.uint64(mq)  # an integer below 2^53: its own shortest digits
        else:
            f, e = _schubfach(-mq, c)
    elif t == _U0:
        return _U0, 0
    elif t < np.uint64(3):  # the two smallest subnormals, as repr writes them
        return (np.uint64(5), -324) if t == _U1 else (_U1, -323)
    else:
        f, e = _schubfach(_Q_MIN, t)
    while f % _U10 == _U0:
        f //= _U10
        e += 1
    return f, e


@njit(cache=True, nogil=True)
def _n_digits(x: np.uint64) -> int:
    """Decimal digits of x: a jump to the right group of three, then at most three steps."""
    n = 1
    if x >= _POW10_U[12]:
        n = 13
    elif x >= _POW10_U[9]:
        n = 10
    elif x >= _POW10_U[6]:
        n = 7
    elif x >= _POW10_U[3]:
        n = 4
    while n < 20 and x >= _POW10_U[n]:
        n += 1
    return n


@njit_without_refcounts
def _digits(buf: np.ndarray, end: int, x: np.uint64) -> None:
    """The decimal digits of `x`, ending just before `end`, two at a time."""
    while x >= _U100:
        pair = int(x % _U100) * 2
        x //= _U100
        end -= 2
        buf[end] = _PAIRS[pair]
        buf[end + 1] = _PAIRS[pair + 1]
    if x >= _U10:
        pair = int(x) * 2
        buf[end - 2] = _PAIRS[pair]
        buf[end - 1] = _PAIRS[pair + 1]
    else:
        buf[end - 1] = _CH_0 + int(x)


@njit_without_refcounts
def _write_small_int(buf: np.ndarray, pos: int, x: int) -> int:
    """Decimal digits of 0 <= x < 2^63 at `pos`, the usual one or two digits without a loop."""
    if x < 10:
        buf[pos] = _CH_0 + x
        return pos + 1
    if x < 100:
        buf[pos] = _PAIRS[2 * x]
        buf[pos + 1] = _PAIRS[2 * x + 1]
        return pos + 2
    u = np.uint64(x)
    end = pos + _n_digits(u)
    _digits(buf, end, u)
    return end


@njit_without_refcounts
def write_int(buf: np.ndarray, pos: int, x: int) -> int:
    """Decimal digits of `x` (> -2^63) at `pos`; returns the position after them."""
    if x < 0:
        buf[pos] = 45  # "-"
        pos += 1
        x = -x
    u = np.uint64(x)
    end = pos + _n_digits(u)
    _digits(buf, end, u)
    return end


@njit(cache=True, nogil=True)
def _shift_in_dot(buf: np.ndarray, dot: int, end: int) -> None:
    """Move buf[dot:end] one place right and put a decimal point at `dot`."""
    for i in range(end, dot, -1):
        buf[i] = buf[i - 1]
    buf[dot] = 46  # "."


@njit_without_refcounts
def _write_shortest(buf: np.ndarray, pos: int, v: float, bits: np.uint64) -> int:
    """`repr(abs(v))` at `pos` for a finite `v` with IEEE bits `bits`, by Schubfach."""
    f, e = shortest_digits(v, bits)
    if f == _U0:
        buf[pos] = _CH_0
        buf[pos + 1] = 46
        buf[pos + 2] = _CH_0
        return pos + 3
    n = _n_digits(f)
    point = n + e  # the value is 0.d1d2..dn * 10^point
    if -4 < point <= 0:  # 0.000ddd
        buf[pos] = _CH_0
        buf[pos + 1] = 46
        for i in range(pos + 2, pos + 2 - point):
            buf[i] = _CH_0
        end = pos + 2 - point + n
        _digits(buf, end, f)
        return end
    end = pos + n
    _digits(buf, end, f)
    if 0 < point <= 16:
        if point < n:  # dd.ddd
            _shift_in_dot(buf, pos + point, end)
            return end + 1
        for i in range(end, pos + point):  # ddd000.0
            buf[i] = _CH_0
        end = pos + point
        buf[end] = 46
        buf[end + 1] = _CH_0
        return end + 2
    if n > 1:  # d.ddde±XX
        _shift_in_dot(buf, pos + 1, end)
        end += 1
    x = point - 1
    buf[end] = 101  # "e"
    buf[end + 1] = 45 if x < 0 else 43  # "-" or "+"
    end += 2
    if x < 0:
        x = -x
    if x < 10:
        buf[end] = _CH_0
        end += 1
    return write_int(buf, end, x)


@njit_without_refcounts
def _write_few_decimals(buf: np.ndarray, pos: int, v: float) -> int:
    """`repr(v)` at `pos` for 0 < v < 2^50 with at most DIRECT_DECIMALS decimals, as
    `<integer part>.<decimals>`; returns the position after it, or -1 if `v` has more decimals.

    The first p with round(v 10^p) / 10^p == v (an exact IEEE division: the double a correct
    parser reads for that decimal) gives the decimal with the fewest places that reads back as
    v. It is the only one with p places (v 10^p < 2^50: their spacing exceeds v's rounding
    interval, and the product is off by less than 1/8), so it is also the shortest and closest
    one: what `repr` writes, in plain notation as v >= 10^-DIRECT_DECIMALS > 10^-5."""
    whole = int(v)
    if whole == v:
        end = _write_small_int(buf, pos, whole)
        buf[end] = 46  # "."
        buf[end + 1] = _CH_0
        return end + 2
    for p in range(1, DIRECT_DECIMALS + 1):
        scaled = v * _POW10[p]
        if scaled >= _FEW_LIMIT:
            return -1
        x = np.floor(scaled + 0.5)
        if x / _POW10[p] == v:
            # v is within an ulp of x / 10^p, which is not an integer: same integer part
            frac = int(x) - whole * _POW10_I[p]
            end = _write_small_int(buf, pos, whole)
            buf[end] = 46  # "."
            end += p
            for i in range(p):
                buf[end - i] = _CH_0 + frac % 10
                frac //= 10
            return end + 1
    return -1


@njit_without_refcounts
def write_float(buf: np.ndarray, pos: int, v: float, bits: np.uint64) -> int:
    """`repr(v)` at `pos` for a finite `v` with IEEE bits `bits`; returns the position after
    it."""
    if bits >> _S63:
        buf[pos] = 45  # "-"
        pos += 1
    if 0.0 < abs(v) < _FEW_LIMIT:
        end = _write_few_decimals(buf, pos, abs(v))
        if end >= 0:
            return end
    return _write_shortest(buf, pos, v, bits)


def _memcpy_typer(typingctx: Any, dst: Any, dst_pos: Any, src: Any, src_pos: Any,
                  length: Any) -> tuple[Any, Any]:
    """memcpy(dst.data + dst_pos, src.data + src_pos, length) for uint8 arrays; unchecked."""
    sig = types.void(dst, types.intp, src, types.intp, types.intp)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        d, d_pos, s, s_pos, n = args
        d_arr = context.make_array(signature.args[0])(context, builder, d)
        s_arr = context.make_array(signature.args[2])(context, builder, s)
        cgutils.raw_memcpy(builder, builder.gep(d_arr.data, [d_pos]),  # type: ignore[no-untyped-call]
                           builder.gep(s_arr.data, [s_pos]), n, 1)
        return context.get_dummy_value()

    return sig, codegen


_memcpy: Any = intrinsic(_memcpy_typer)

if config.DISABLE_JIT:  # type: ignore[attr-defined]  # an intrinsic needs the compiler: the same copy as Python slices
    @njit_without_refcounts
    def _copy(buf: np.ndarray, pos: int, src: np.ndarray, start: int, length: int) -> int:
        buf[pos : pos + length] = src[start : start + length]
        return pos + length

    @njit_without_refcounts
    def _copy_chunks(buf: np.ndarray, pos: int, src: np.ndarray, start: int,
                     length: int) -> int:
        buf[pos : pos + length] = src[start : start + length]
        return pos + length
else:
    @njit_without_refcounts
    def _copy(buf: np.ndarray, pos: int, src: np.ndarray, start: int, length: int) -> int:
        """buf[pos:pos + length] = src[start:start + length] as one memcpy (numba's element
        loop costs about 1 ns a byte here); the caller guarantees the bounds."""
        _memcpy(buf, pos, src, start, length)
        return pos + length

    @njit_without_refcounts
    def _copy_chunks(buf: np.ndarray, pos: int, src: np.ndarray, start: int,
                     length: int) -> int:
        """buf[pos:pos + length] = src[start:start + length] in whole chunks of CHUNK bytes,
        each a few inlined moves instead of a call to memcpy: it reads and writes up to
        CHUNK - 1 bytes past the ends, which the caller provides (padding)."""
        for k in range(0, length, CHUNK):
            _memcpy(buf, pos + k, src, start + k, CHUNK)
        return pos + length


@njit_without_refcounts
def _write_float_cached(buf: np.ndarray, pos: int, v: float, bits: np.uint64,
                        cache_bits: np.ndarray, cache_text: np.ndarray) -> int:
    """write_float through a direct-mapped cache of the texts of recent values by their bits:
    sensor readings repeat a small set of values, and a hit is one fixed-size copy. An entry
    is `cache_text[slot * CACHE_ENTRY :][:FLOAT_MAX_CHARS]`, its length in the byte after."""
    slot = ix((bits * _HASH) >> _CACHE_SHIFT)
    at = ix(slot * CACHE_ENTRY)
    if cache_bits[slot] == bits:
        _copy(buf, pos, cache_text, at, FLOAT_MAX_CHARS)
        return pos + int(cache_text[at + FLOAT_MAX_CHARS])
    end = write_float(buf, pos, v, bits)
    _copy(cache_text, at, buf, pos, end - pos)
    cache_text[at + FLOAT_MAX_CHARS] = end - pos
    cache_bits[slot] = bits
    return end


def new_float_cache() -> tuple[np.ndarray, np.ndarray]:
    """An empty cache for format_readings: (bits, texts); NaN bits, never a value's, mark a
    free slot."""
    return (np.full(CACHE_SLOTS, _NAN_BITS, dtype=np.uint64),
            np.zeros(CACHE_SLOTS * CACHE_ENTRY, dtype=np.uint8))


@njit(cache=True, nogil=True)
def index_range(index: np.ndarray) -> tuple[int, int]:
    """(min, max) of a non-empty array in one pass."""
    low = high = index[0]
    for x in index:
        low = min(low, x)
        high = max(high, x)
    return int(low), int(high)


@njit(cache=True, nogil=True)
def stale_prefixes(dev: np.ndarray, device_gateway: np.ndarray, device_area: np.ndarray,
                   prefix_of: np.ndarray) -> np.ndarray:
    """The entries of `dev` whose prefix was built for another (gateway, area) than theirs
    (`prefix_of[d]`; (-1, -1): none built), repeats included; usually none."""
    stale = np.empty(0, dtype=np.int32)
    for i in range(dev.shape[0]):
        d = dev[i]
        if prefix_of[d, 0] != device_gateway[d] or prefix_of[d, 1] != device_area[d]:
            stale = np.empty(dev.shape[0] - i, dtype=np.int32)
            k = 0
            for d in dev[i:]:
                if prefix_of[d, 0] != device_gateway[d] or prefix_of[d, 1] != device_area[d]:
                    stale[k] = d
                    k += 1
            return stale[:k]
    return stale


@njit(cache=True, nogil=True)
def group_by_reading(n: int, value_row: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(start, order, grouped) for `n` readings: the values of reading i are
    order[start[i]:start[i + 1]], or start[i]:start[i + 1] themselves when `grouped` (already in
    reading order; `order` is then empty)."""
    m = value_row.shape[0]
    start = np.zeros(n + 1, dtype=np.int64)
    for j in range(m):
        start[value_row[j] + 1] += 1
    for i in range(n):
        start[i + 1] += start[i]
    grouped = True
    for j in range(1, m):
        if value_row[j] < value_row[j - 1]:
            grouped = False
            break
    order = np.empty(0, dtype=np.int64)
    if not grouped:
        order = np.empty(m, dtype=np.int64)
        fill = start[:n].copy()
        for j in range(m):
            order[fill[value_row[j]]] = j
            fill[value_row[j]] += 1
    return start, order, grouped


@njit_without_refcounts
def format_readings(
    dev: np.ndarray, epoch: np.ndarray, seq: np.ndarray, ts: np.ndarray, battery: np.ndarray,
    start: np.ndarray, order: np.ndarray, grouped: bool, value_channel: np.ndarray,
    value: np.ndarray, prefix: np.ndarray, prefix_ptr: np.ndarray, prefix_len: np.ndarray,
    key: np.ndarray, key_ptr: np.ndarray, key_len: np.ndarray,
    cache_bits: np.ndarray, cache_text: np.ndarray, out: np.ndarray,
) -> int:
    """One line per reading into `out` (large enough: see the owner's bound, plus
    OUT_PADDING); returns the number of bytes written, the last line without its newline.
    Values by reading as `group_by_reading` gives them; the prefix and key arenas need PADDING
    bytes after their last entry."""
    value_bits = value.view(np.uint64)
    battery_bits = battery.view(np.uint64)
    pos = 0
    for i in range(dev.shape[0]):
        if i:
            out[pos] = 10  # "\n"
            pos += 1
        d = ix(dev[i])
        pos = _copy_chunks(out, pos, prefix, prefix_ptr[d], prefix_len[d])
        for q in range(start[i], start[i + 1]):
            j = ix(q if grouped else order[ix(q)])
            c = ix(value_channel[j])
            pos = _copy_chunks(out, pos, key, key_ptr[c], key_len[c])  # "<key>="
            pos = _write_float_cached(out, pos, value[j], value_bits[j], cache_bits, cache_text)
            out[pos] = 44  # ","
            pos += 1
        if not np.isnan(battery[i]):
            pos = _copy(out, pos, _BATTERY, 0, 8)
            pos = _write_float_cached(out, pos, battery[i], battery_bits[i], cache_bits,
                                      cache_text)
            out[pos] = 44
            pos += 1
        pos = _copy(out, pos, _SEQ, 0, 4)
        pos = write_int(out, pos, seq[i])
        pos = _copy(out, pos, _EPOCH, 0, 8)
        pos = write_int(out, pos, epoch[i])
        out[pos] = 105  # "i"
        out[pos + 1] = 32  # " "
        pos = write_int(out, pos + 2, ts[i])
    return pos
