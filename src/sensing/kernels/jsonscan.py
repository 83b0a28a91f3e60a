"""JSON readings of many messages in one pass, straight into columns.

A fast lane in front of the JSON codec: each message (a span of one byte buffer) is either
decoded whole, or flagged with a reason (`status` > 0) for the caller to decode it the slow
way. It takes the contract's forms, a reading object or an array of them, with keys in any
order and JSON whitespace anywhere, unknown keys skipped (any JSON value, nested to
SKIP_DEPTH). It leaves to the slow path everything whose meaning it would have to work out:
escapes and non-ASCII bytes in strings, a key twice in an object, numbers it cannot convert
exactly, a field of an unexpected type, `ts` as a string, and anything not strictly JSON. So a
message it takes gives what orjson and the codec would give; the ones it flags cost the slow
path's time, never a wrong reading.

Numbers: integers up to 2^63 - 1 in magnitude exactly (seq, epoch, ts; a value's float(int)).
Others with a significand below 2^63 as the nearest double, as orjson and Python read them:
by Clinger's fast path when the significand is at most 2^53 and the power of ten at most
10^22 (one correctly rounded multiply or divide of exact doubles), else by the Eisel-Lemire
algorithm (as Go's strconv has it), which gives up on the rare inputs it cannot decide (a
halfway case, a subnormal or infinite result): those are left to the slow path.

Output (preallocated by the caller; a message that does not fit stops the pass, see
`scan_messages`): per reading a column of `reading_cols` (rows R_*), its battery (NaN when
absent or null, as BatchBuilder stores it); per value a column of `value_cols` (rows V_*) and
the value; per message its status and range of readings. Names are spans of the buffer with
`hash_name` of their bytes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from sensing.kernels.jit import njit_without_refcounts

OK = 0
SYNTAX = 1
"""not JSON as the lane reads it: malformed, truncated, trailing bytes, a reading not an object"""
STRING = 2
"""a string with an escape or a byte beyond ASCII"""
NUMBER = 3
"""a number the lane cannot convert exactly (more than 18 digits, beyond Clinger's fast path)"""
FIELD = 4
"""a field missing, repeated, or of an unexpected type (`ts` as a string, a float `seq`)"""
LIMIT = 5
"""more readings, values or distinct channels than the limits given, or nesting deeper than
SKIP_DEPTH"""
EMPTY = 6
"""an empty array"""
_NO_ROOM = -1
"""the output arrays are full: the pass stops before this message"""

(R_MESSAGE, R_DEVICE_START, R_DEVICE_END, R_DEVICE_HASH, R_KIND_START, R_KIND_END, R_KIND_HASH,
 R_GATEWAY_START, R_GATEWAY_END, R_AREA_START, R_AREA_END, R_EPOCH, R_SEQ, R_TS, R_VALUE_START,
 R_VALUE_STOP) = range(16)
READING_ROWS = 16
"""rows of `reading_cols`; gateway and area spans are -1 when the reading has none"""
V_READING, V_NAME_START, V_NAME_END, V_NAME_HASH = range(4)
VALUE_ROWS = 4

SKIP_DEPTH = 32
"""nesting of an unknown key's value the lane skips over (orjson itself refuses beyond 1024)"""
_MAX_PROBE = 64
"""slots a search of the distinct-channel set may pass"""
MAX_DIGITS = 19
"""significant digits the lane reads, as far as they fit int64 (up to 2^63 - 1)"""
_SAFE_DIGITS = 18  # any number of this many digits fits
_INT64_TENTH = (2**63 - 1) // 10
_EXACT_SIGNIFICAND = 2**53
_POW10 = np.array([10.0**i for i in range(23)])  # each one exact as a double
_POW10_MIN = -348
_POW10_MAX = 347


def _powers_of_ten() -> np.ndarray:
    """Rows (high, low) of the 128-bit significand of 10^e, rounded down, for e in
    _POW10_MIN.._POW10_MAX (Eisel-Lemire's table; its exponent follows from e)."""
    rows = []
    for e in range(_POW10_MIN, _POW10_MAX + 1):
        if e >= 0:
            p = 10**e
            n = p.bit_length()
            m = p >> (n - 128) if n >= 128 else p << (128 - n)
        else:
            d = 10**-e  # not a power of two: 2^(bits + 127) / d is below 2^128
            m = (1 << (d.bit_length() + 127)) // d
        rows.append((m >> 64, m & (2**64 - 1)))
    return np.array(rows, dtype=np.uint64)


_POW10_128 = _powers_of_ten()
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U3 = np.uint64(3)
_U9 = np.uint64(9)
_S16 = np.uint64(16)
_S32 = np.uint64(32)
_S53 = np.uint64(53)
_S63 = np.uint64(63)
_LOW_9 = np.uint64(0x1FF)
_MASK_32 = np.uint64(0xFFFFFFFF)
_U64_MAX = np.uint64(2**64 - 1)
_BELOW_32 = np.uint64(1 << 32)
_BELOW_48 = np.uint64(1 << 48)
_BELOW_56 = np.uint64(1 << 56)
_BELOW_60 = np.uint64(1 << 60)
_BELOW_62 = np.uint64(1 << 62)
_BELOW_63 = np.uint64(1 << 63)

_DEVICE, _KIND, _GATEWAY, _AREA, _EPOCH, _SEQ, _TS, _VALUES, _BATTERY = (1 << i for i in range(9))
_REQUIRED = _DEVICE | _KIND | _SEQ | _TS | _VALUES
_STRINGS = _DEVICE | _KIND | _GATEWAY | _AREA
_INTEGERS = _EPOCH | _SEQ | _TS


def _word(key: bytes) -> int:
    """A key of 2-7 bytes packed into an int64 with its length (as `_key_field` packs it)."""
    return int.from_bytes(key, "little") | len(key) << 56


_W_DEVICE = _word(b"device")
_W_KIND = _word(b"kind")
_W_GATEWAY = _word(b"gateway")
_W_AREA = _word(b"area")
_W_EPOCH = _word(b"epoch")
_W_SEQ = _word(b"seq")
_W_TS = _word(b"ts")
_W_VALUES = _word(b"values")
_W_BATTERY = _word(b"battery")

@njit(cache=True, nogil=True)
def _at(pos: int) -> np.uint64:
    """A position (never negative) as an unsigned index: numba then skips the check for a
    negative index counting from the end, on every byte read (a sixth of the lane's time)."""
    return np.uint64(pos)


_QUOTE, _BACKSLASH, _COMMA, _MINUS, _COLON = 34, 92, 44, 45, 58
_ZERO, _NINE, _DOT, _E, _E_UPPER, _PLUS = 48, 57, 46, 101, 69, 43
_OPEN_OBJECT, _CLOSE_OBJECT, _OPEN_ARRAY, _CLOSE_ARRAY = 123, 125, 91, 93


@njit_without_refcounts
def hash_name(buf: np.ndarray, start: int, end: int) -> int:
    """A 63-bit hash of buf[_at(start:end)], never negative: two 32-bit FNV-1a-style lanes with
    different multipliers, in int64 arithmetic that never overflows (so it is the same number
    when the kernels run as plain Python, NUMBA_DISABLE_JIT=1)."""
    a = 2166136261
    b = 0x9747B28C
    for i in range(start, end):
        c = int(buf[_at(i)])
        a = ((a ^ c) * 16777619) & 0xFFFFFFFF
        b = ((b ^ c) * 0x5BD1E995) & 0xFFFFFFFF
    return ((a & 0x7FFFFFFF) << 32) | b


@njit_without_refcounts
def _skip_space(buf: np.ndarray, pos: int, end: int) -> int:
    while pos < end:
        c = buf[_at(pos)]
        if c != 32 and c != 10 and c != 13 and c != 9:
            break
        pos += 1
    return pos


@njit_without_refcounts
def _string_end(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """(code, position of the closing quote) of the string whose opening quote is at pos."""
    pos += 1
    while pos < end:
        c = buf[_at(pos)]
        if c == _QUOTE:
            return OK, pos
        if c == _BACKSLASH or c >= 128:
            return STRING, pos
        if c < 32:
            return SYNTAX, pos
        pos += 1
    return SYNTAX, pos


@njit_without_refcounts
def _name_colon(buf: np.ndarray, pos: int, end: int) -> tuple[int, int, int, int]:
    """An object's key at pos, then the colon: (code, start and end of the key's bytes,
    position of the value after the colon and whitespace)."""
    if pos >= end or buf[_at(pos)] != _QUOTE:
        return SYNTAX, pos, pos, pos
    code, close = _string_end(buf, pos, end)
    if code != OK:
        return code, pos + 1, close, close
    start = pos + 1
    pos = _skip_space(buf, close + 1, end)
    if pos >= end or buf[_at(pos)] != _COLON:
        return SYNTAX, start, close, pos
    pos = _skip_space(buf, pos + 1, end)
    if pos >= end:
        return SYNTAX, start, close, pos
    return OK, start, close, pos


@njit_without_refcounts
def _append_digit(significand: int, digits: int, dropped: bool, d: int
                  ) -> tuple[int, int, bool]:
    """(significand, significant digits, digits dropped) after one more digit d: dropped
    once the significand would pass 2^63 - 1 (leading zeros are no significant digits)."""
    if dropped or (significand == 0 and d == 0):
        return significand, digits, dropped
    if digits < _SAFE_DIGITS or (digits == _SAFE_DIGITS and (
            significand < _INT64_TENTH or (significand == _INT64_TENTH and d <= 7))):
        return significand * 10 + d, digits + 1, False
    return significand, digits, True


@njit_without_refcounts
def _number(buf: np.ndarray, pos: int, end: int
            ) -> tuple[int, int, bool, bool, int, int, bool]:
    """The JSON number at pos: (code, position after it, integer form, negative, significand,
    power of ten, digits dropped). code is SYNTAX unless it is a JSON number; digits beyond
    int64 (MAX_DIGITS) are dropped (the number is then inexact)."""
    negative = False
    if pos < end and buf[_at(pos)] == _MINUS:
        negative = True
        pos += 1
    if pos >= end or not _ZERO <= buf[_at(pos)] <= _NINE:
        return SYNTAX, pos, False, negative, 0, 0, False
    significand = 0
    digits = 0
    exponent = 0
    dropped = False
    if buf[_at(pos)] == _ZERO:
        pos += 1
        if pos < end and _ZERO <= buf[_at(pos)] <= _NINE:
            return SYNTAX, pos, False, negative, 0, 0, False  # a leading zero
    else:
        while pos < end and _ZERO <= buf[_at(pos)] <= _NINE:
            significand, digits, dropped = _append_digit(significand, digits, dropped,
                                                         int(buf[_at(pos)] - _ZERO))
            pos += 1
    integer = True
    if pos < end and buf[_at(pos)] == _DOT:
        integer = False
        pos += 1
        if pos >= end or not _ZERO <= buf[_at(pos)] <= _NINE:
            return SYNTAX, pos, False, negative, 0, 0, False
        while pos < end and _ZERO <= buf[_at(pos)] <= _NINE:
            taken = digits
            significand, digits, dropped = _append_digit(significand, digits, dropped,
                                                         int(buf[_at(pos)] - _ZERO))
            if digits > taken or significand == 0:  # a leading zero of the fraction counts
                exponent -= 1
            pos += 1
    if pos < end and (buf[_at(pos)] == _E or buf[_at(pos)] == _E_UPPER):
        integer = False
        pos += 1
        sign = 1
        if pos < end and (buf[_at(pos)] == _PLUS or buf[_at(pos)] == _MINUS):
            sign = -1 if buf[_at(pos)] == _MINUS else 1
            pos += 1
        if pos >= end or not _ZERO <= buf[_at(pos)] <= _NINE:
            return SYNTAX, pos, False, negative, 0, 0, False
        written = 0
        while pos < end and _ZERO <= buf[_at(pos)] <= _NINE:
            if written < 100_000:  # far beyond any double: only "too large" matters then
                written = written * 10 + int(buf[_at(pos)] - _ZERO)
            pos += 1
        exponent += sign * written
    return OK, pos, integer, negative, significand, exponent, dropped


@njit_without_refcounts
def _as_float(integer: bool, negative: bool, significand: int, exponent: int,
              dropped: bool) -> tuple[int, float]:
    """(code, value) of a parsed number as the codec's float(): NUMBER if not exactly known."""
    if dropped:
        return NUMBER, 0.0
    if integer:  # orjson gives an int, float() rounds it once; "-0" is the int 0
        return OK, float(-significand if negative else significand)
    if significand <= _EXACT_SIGNIFICAND and -22 <= exponent <= 22:
        x = float(significand)
        x = x * _POW10[exponent] if exponent >= 0 else x / _POW10[-exponent]
    else:
        decided, x = _eisel_lemire(significand, exponent)
        if not decided:
            return NUMBER, 0.0
    return OK, -x if negative else x


@njit_without_refcounts
def _mul_128(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
    """(high, low) 64 bits of the 128-bit product a * b, in steps that never overflow."""
    a0 = a & _MASK_32
    a1 = a >> _S32
    b0 = b & _MASK_32
    b1 = b >> _S32
    p00 = a0 * b0
    p01 = a0 * b1
    p10 = a1 * b0
    mid = (p00 >> _S32) + (p01 & _MASK_32) + (p10 & _MASK_32)
    high = a1 * b1 + (p01 >> _S32) + (p10 >> _S32) + (mid >> _S32)
    return high, ((mid & _MASK_32) << _S32) | (p00 & _MASK_32)


@njit_without_refcounts
def _carries(a: np.uint64, b: np.uint64) -> bool:
    """Whether a + b overflows 64 bits."""
    return bool(b > _U64_MAX - a)


@njit_without_refcounts
def _wrapping_add(a: np.uint64, b: np.uint64) -> np.uint64:
    return b - (_U64_MAX - a) - _U1 if _carries(a, b) else a + b


@njit_without_refcounts
def _eisel_lemire(significand: int, exponent: int) -> tuple[bool, float]:
    """(decided, the double nearest to significand * 10^exponent), significand < 2^63 and
    exact. Not decided (then the value is 0.0): a result that is subnormal or infinite, or a
    case the 128-bit approximation cannot tell from a halfway point."""
    if significand == 0:
        return True, 0.0
    if not _POW10_MIN <= exponent <= _POW10_MAX:
        return False, 0.0
    man = np.uint64(significand)
    shift = 0  # leading zeros of man, shifted out
    if man < _BELOW_32:
        man <<= _S32
        shift += 32
    if man < _BELOW_48:
        man <<= _S16
        shift += 16
    if man < _BELOW_56:
        man <<= np.uint64(8)
        shift += 8
    if man < _BELOW_60:
        man <<= np.uint64(4)
        shift += 4
    if man < _BELOW_62:
        man <<= np.uint64(2)
        shift += 2
    if man < _BELOW_63:
        man <<= _U1
        shift += 1
    exp2 = ((217706 * exponent) >> 16) + 64 + 1023 - shift
    row = exponent - _POW10_MIN
    x_hi, x_lo = _mul_128(man, _POW10_128[row, 0])
    if x_hi & _LOW_9 == _LOW_9 and _carries(x_lo, man):  # the low word may carry: widen
        y_hi, y_lo = _mul_128(man, _POW10_128[row, 1])
        merged_hi = x_hi + _U1 if _carries(x_lo, y_hi) else x_hi
        merged_lo = _wrapping_add(x_lo, y_hi)
        if merged_hi & _LOW_9 == _LOW_9 and merged_lo == _U64_MAX and _carries(y_lo, man):
            return False, 0.0
        x_hi, x_lo = merged_hi, merged_lo
    msb = x_hi >> _S63
    mantissa = x_hi >> (msb + _U9)
    exp2 -= 1 - int(msb)
    if x_lo == _U0 and x_hi & _LOW_9 == _U0 and mantissa & _U3 == _U1:
        return False, 0.0  # halfway between two doubles, or nearly
    mantissa = (mantissa + (mantissa & _U1)) >> _U1
    if mantissa >> _S53 > _U0:
        mantissa >>= _U1
        exp2 += 1
    if exp2 <= 0 or exp2 >= 0x7FF:
        return False, 0.0
    return True, math.ldexp(float(mantissa), exp2 - 1075)


@njit_without_refcounts
def _literal(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """(code, position after) of true, false or null at pos."""
    c = buf[_at(pos)]
    if c == 116:  # true
        n = 4
        ok = (pos + 4 <= end and buf[_at(pos + 1)] == 114 and buf[_at(pos + 2)] == 117
              and buf[_at(pos + 3)] == 101)
    elif c == 102:  # false
        n = 5
        ok = (pos + 5 <= end and buf[_at(pos + 1)] == 97 and buf[_at(pos + 2)] == 108
              and buf[_at(pos + 3)] == 115 and buf[_at(pos + 4)] == 101)
    elif c == 110:  # null
        n = 4
        ok = (pos + 4 <= end and buf[_at(pos + 1)] == 117 and buf[_at(pos + 2)] == 108
              and buf[_at(pos + 3)] == 108)
    else:
        return SYNTAX, pos
    return (OK, pos + n) if ok else (SYNTAX, pos)


@njit_without_refcounts
def _skip_value(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """(code, position after) of any JSON value at pos, checked as strictly as orjson reads
    it, nested to SKIP_DEPTH. The open containers are bits of `objects` (1: an object)."""
    objects = 0
    depth = 0
    while True:
        if pos >= end:
            return SYNTAX, pos
        c = buf[_at(pos)]
        complete = True  # whether a whole value ends at pos
        if c in (_OPEN_OBJECT, _OPEN_ARRAY):
            if depth == SKIP_DEPTH:
                return LIMIT, pos
            is_object = c == _OPEN_OBJECT
            if is_object:
                objects |= 1 << depth
            else:
                objects &= ~(1 << depth)
            depth += 1
            pos = _skip_space(buf, pos + 1, end)
            if pos >= end:
                return SYNTAX, pos
            if buf[_at(pos)] == (_CLOSE_OBJECT if is_object else _CLOSE_ARRAY):
                pos += 1
                depth -= 1
            elif is_object:
                code, _, _, pos = _name_colon(buf, pos, end)
                if code != OK:
                    return code, pos
                complete = False
            else:
                complete = False
        elif c == _QUOTE:
            code, close = _string_end(buf, pos, end)
            if code != OK:
                return code, close
            pos = close + 1
        elif c == _MINUS or _ZERO <= c <= _NINE:
            code, pos, _, _, _, _, _ = _number(buf, pos, end)
            if code != OK:
                return code, pos
        else:
            code, pos = _literal(buf, pos, end)
            if code != OK:
                return code, pos
        while complete:  # close containers, or move to the next member
            if depth == 0:
                return OK, pos
            pos = _skip_space(buf, pos, end)
            if pos >= end:
                return SYNTAX, pos
            c = buf[_at(pos)]
            is_object = (objects >> (depth - 1)) & 1 == 1
            if c == _COMMA:
                pos = _skip_space(buf, pos + 1, end)
                if is_object:
                    code, _, _, pos = _name_colon(buf, pos, end)
                    if code != OK:
                        return code, pos
                complete = False
            elif c == (_CLOSE_OBJECT if is_object else _CLOSE_ARRAY):
                pos += 1
                depth -= 1
            else:
                return SYNTAX, pos


@njit_without_refcounts
def _key_field(buf: np.ndarray, start: int, end: int) -> int:
    """The field bit of a key of the reading object, 0 for an unknown key."""
    n = end - start
    if n < 2 or n > 7:
        return 0
    word = n << 56
    for i in range(n):
        word |= int(buf[_at(start + i)]) << (8 * i)
    if word == _W_DEVICE:
        return _DEVICE
    if word == _W_KIND:
        return _KIND
    if word == _W_SEQ:
        return _SEQ
    if word == _W_TS:
        return _TS
    if word == _W_VALUES:
        return _VALUES
    if word == _W_EPOCH:
        return _EPOCH
    if word == _W_BATTERY:
        return _BATTERY
    if word == _W_GATEWAY:
        return _GATEWAY
    if word == _W_AREA:
        return _AREA
    return 0


@njit_without_refcounts
def _same_bytes(buf: np.ndarray, a: int, b: int, n: int) -> bool:
    for i in range(n):  # noqa: SIM110 (numba compiles no generator into all())
        if buf[_at(a + i)] != buf[_at(b + i)]:
            return False
    return True


@njit_without_refcounts
def _wrong_type(c: int) -> int:
    """The code for a value starting with byte c where another type was expected: FIELD if it
    starts a JSON value (the codec refuses its type), else SYNTAX."""
    if c in (_QUOTE, _OPEN_OBJECT, _OPEN_ARRAY, _MINUS, 116, 102, 110) or _ZERO <= c <= _NINE:
        return FIELD
    return SYNTAX


@njit_without_refcounts
def _values(buf: np.ndarray, pos: int, end: int, r: int, v: int, value_cols: np.ndarray,
            values: np.ndarray, max_values_per_reading: int) -> tuple[int, int, int]:
    """The values object at pos of reading r, written from value v on: (code, position after,
    next value)."""
    first = v
    pos = _skip_space(buf, pos + 1, end)
    if pos < end and buf[_at(pos)] == _CLOSE_OBJECT:
        return OK, pos + 1, v
    while True:
        code, start, close, pos = _name_colon(buf, pos, end)
        if code != OK:
            return code, pos, v
        name_hash = hash_name(buf, start, close)
        for j in range(first, v):  # a channel twice: orjson keeps the last, at the first place
            if (value_cols[V_NAME_HASH, j] == name_hash
                    and value_cols[V_NAME_END, j] - value_cols[V_NAME_START, j] == close - start
                    and _same_bytes(buf, value_cols[V_NAME_START, j], start, close - start)):
                return FIELD, pos, v
        c = buf[_at(pos)]
        if c != _MINUS and not _ZERO <= c <= _NINE:
            return _wrong_type(c), pos, v
        code, pos, integer, negative, significand, exponent, dropped = _number(buf, pos, end)
        if code != OK:
            return code, pos, v
        code, x = _as_float(integer, negative, significand, exponent, dropped)
        if code != OK:
            return code, pos, v
        if v - first == max_values_per_reading:
            return LIMIT, pos, v
        if v == values.shape[0]:
            return _NO_ROOM, pos, v
        value_cols[V_READING, v] = r
        value_cols[V_NAME_START, v] = start
        value_cols[V_NAME_END, v] = close
        value_cols[V_NAME_HASH, v] = name_hash
        values[v] = x
        v += 1
        pos = _skip_space(buf, pos, end)
        if pos >= end:
            return SYNTAX, pos, v
        if buf[_at(pos)] == _COMMA:
            pos = _skip_space(buf, pos + 1, end)
        elif buf[_at(pos)] == _CLOSE_OBJECT:
            return OK, pos + 1, v
        else:
            return SYNTAX, pos, v


@njit_without_refcounts
def _reading(buf: np.ndarray, pos: int, end: int, m: int, r: int, v: int,
             reading_cols: np.ndarray, battery: np.ndarray, value_cols: np.ndarray,
             values: np.ndarray, max_values_per_reading: int) -> tuple[int, int, int]:
    """The reading object at pos of message m, written as reading r, its values from v on:
    (code, position after, next value)."""
    seen = 0
    device_start = device_end = kind_start = kind_end = 0
    gateway_start = gateway_end = area_start = area_end = -1
    epoch = seq = ts = 0
    level = np.nan
    value_start = value_stop = v
    pos = _skip_space(buf, pos + 1, end)
    if pos < end and buf[_at(pos)] == _CLOSE_OBJECT:
        return FIELD, pos, v
    while True:
        code, start, close, pos = _name_colon(buf, pos, end)
        if code != OK:
            return code, pos, v
        field = _key_field(buf, start, close)
        if seen & field:
            return FIELD, pos, v  # orjson keeps the last of two: the slow path decides
        seen |= field
        c = buf[_at(pos)]
        if field & _STRINGS:
            if c != _QUOTE:
                return _wrong_type(c), pos, v
            code, close = _string_end(buf, pos, end)
            if code != OK:
                return code, pos, v
            if field == _DEVICE:
                device_start, device_end = pos + 1, close
            elif field == _KIND:
                kind_start, kind_end = pos + 1, close
            elif field == _GATEWAY:
                gateway_start, gateway_end = pos + 1, close
            else:
                area_start, area_end = pos + 1, close
            pos = close + 1
        elif field & _INTEGERS:
            if c != _MINUS and not _ZERO <= c <= _NINE:
                return _wrong_type(c), pos, v  # ts as an RFC 3339 string: FIELD
            code, pos, integer, negative, significand, _, dropped = _number(buf, pos, end)
            if code != OK:
                return code, pos, v
            if not integer:
                return FIELD, pos, v
            if dropped:
                return NUMBER, pos, v
            number = -significand if negative else significand
            if field == _EPOCH:
                epoch = number
            elif field == _SEQ:
                seq = number
            else:
                ts = number
        elif field == _VALUES:
            if c != _OPEN_OBJECT:
                return _wrong_type(c), pos, v
            code, pos, value_stop = _values(buf, pos, end, r, v, value_cols, values,
                                            max_values_per_reading)
            if code != OK:
                return code, pos, v
            value_start, v = v, value_stop
        elif field == _BATTERY:
            if c == 110:  # null: no battery level, as if absent
                code, pos = _literal(buf, pos, end)
                if code != OK:
                    return code, pos, v
            elif c == _MINUS or _ZERO <= c <= _NINE:
                code, pos, integer, negative, significand, exponent, dropped = _number(
                    buf, pos, end)
                if code != OK:
                    return code, pos, v
                code, level = _as_float(integer, negative, significand, exponent, dropped)
                if code != OK:
                    return code, pos, v
            else:
                return _wrong_type(c), pos, v
        else:
            code, pos = _skip_value(buf, pos, end)
            if code != OK:
                return code, pos, v
        pos = _skip_space(buf, pos, end)
        if pos >= end:
            return SYNTAX, pos, v
        if buf[_at(pos)] == _COMMA:
            pos = _skip_space(buf, pos + 1, end)
        elif buf[_at(pos)] == _CLOSE_OBJECT:
            pos += 1
            break
        else:
            return SYNTAX, pos, v
    if seen & _REQUIRED != _REQUIRED:
        return FIELD, pos, v
    reading_cols[R_MESSAGE, r] = m
    reading_cols[R_DEVICE_START, r] = device_start
    reading_cols[R_DEVICE_END, r] = device_end
    reading_cols[R_DEVICE_HASH, r] = hash_name(buf, device_start, device_end)
    reading_cols[R_KIND_START, r] = kind_start
    reading_cols[R_KIND_END, r] = kind_end
    reading_cols[R_KIND_HASH, r] = hash_name(buf, kind_start, kind_end)
    reading_cols[R_GATEWAY_START, r] = gateway_start
    reading_cols[R_GATEWAY_END, r] = gateway_end
    reading_cols[R_AREA_START, r] = area_start
    reading_cols[R_AREA_END, r] = area_end
    reading_cols[R_EPOCH, r] = epoch
    reading_cols[R_SEQ, r] = seq
    reading_cols[R_TS, r] = ts
    reading_cols[R_VALUE_START, r] = value_start
    reading_cols[R_VALUE_STOP, r] = value_stop
    battery[r] = level
    return OK, pos, v


@njit_without_refcounts
def _too_many_channels(buf: np.ndarray, value_cols: np.ndarray, first: int, stop: int,
                       limit: int, stamp: int, seen_stamp: np.ndarray, seen_value: np.ndarray
                       ) -> bool:
    """Whether values first..stop name more than `limit` distinct channels, counted in an
    open-addressing set of at least 2 * (limit + 1) slots (a power of two); a slot belongs to
    this count when seen_stamp holds `stamp`, so the set needs no clearing. Names made to
    collide (the hash is no secret) count as too many once a search passes _MAX_PROBE
    slots: the slow path decides then."""
    mask = seen_stamp.shape[0] - 1
    distinct = 0
    for j in range(first, stop):
        name_hash = value_cols[V_NAME_HASH, j]
        start = value_cols[V_NAME_START, j]
        n = value_cols[V_NAME_END, j] - start
        slot = name_hash & mask
        for probe in range(_MAX_PROBE + 1):
            if probe == _MAX_PROBE:
                return True
            if seen_stamp[slot] != stamp:
                seen_stamp[slot] = stamp
                seen_value[slot] = j
                distinct += 1
                if distinct > limit:
                    return True
                break
            k = seen_value[slot]
            if (value_cols[V_NAME_HASH, k] == name_hash
                    and value_cols[V_NAME_END, k] - value_cols[V_NAME_START, k] == n
                    and _same_bytes(buf, value_cols[V_NAME_START, k], start, n)):
                break
            slot = (slot + 1) & mask
    return False


@njit_without_refcounts
def _message(buf: np.ndarray, pos: int, end: int, m: int, r: int, v: int,
             reading_cols: np.ndarray, battery: np.ndarray, value_cols: np.ndarray,
             values: np.ndarray, max_readings: int, max_values_per_reading: int
             ) -> tuple[int, int, int]:
    """Message m, buf[_at(pos:end)], written from reading r and value v on: (code, next reading,
    next value)."""
    pos = _skip_space(buf, pos, end)
    if pos >= end:
        return SYNTAX, r, v
    if buf[_at(pos)] == _OPEN_OBJECT:
        if r == battery.shape[0]:
            return _NO_ROOM, r, v
        code, pos, v = _reading(buf, pos, end, m, r, v, reading_cols, battery, value_cols,
                                values, max_values_per_reading)
        if code != OK:
            return code, r, v
        r += 1
    elif buf[_at(pos)] == _OPEN_ARRAY:
        first = r
        pos = _skip_space(buf, pos + 1, end)
        if pos < end and buf[_at(pos)] == _CLOSE_ARRAY:
            return EMPTY, r, v
        while True:
            if pos >= end:
                return SYNTAX, r, v
            if buf[_at(pos)] != _OPEN_OBJECT:
                return _wrong_type(buf[_at(pos)]), r, v
            if r - first == max_readings:
                return LIMIT, r, v
            if r == battery.shape[0]:
                return _NO_ROOM, r, v
            code, pos, v = _reading(buf, pos, end, m, r, v, reading_cols, battery, value_cols,
                                    values, max_values_per_reading)
            if code != OK:
                return code, r, v
            r += 1
            pos = _skip_space(buf, pos, end)
            if pos >= end:
                return SYNTAX, r, v
            if buf[_at(pos)] == _COMMA:
                pos = _skip_space(buf, pos + 1, end)
            elif buf[_at(pos)] == _CLOSE_ARRAY:
                pos += 1
                break
            else:
                return SYNTAX, r, v
    else:
        return _wrong_type(buf[_at(pos)]), r, v
    if _skip_space(buf, pos, end) != end:
        return SYNTAX, r, v
    return OK, r, v


@njit_without_refcounts
def scan_messages(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, first: int, r: int,
                  v: int, reading_cols: np.ndarray, battery: np.ndarray, value_cols: np.ndarray,
                  values: np.ndarray, status: np.ndarray, message_readings: np.ndarray,
                  seen_stamp: np.ndarray, seen_value: np.ndarray, max_readings: int,
                  max_values_per_reading: int, max_values: int, max_channels: int
                  ) -> tuple[int, int, int]:
    """Messages first.. of buf[_at(starts[m)]:ends[m]] (checked by the caller to lie in buf),
    readings written from r and values from v on: (next message, next reading, next value).
    The next message is len(starts) when all are done, less when message `next` did not fit
    in the output (the caller grows it and goes on from there).

    status[m]: OK or why message m is left to the slow path (then it has no readings here);
    message_readings[0, m] and [1, m]: its first reading and the one after its last. A
    message takes at most `max_readings` readings, `max_values_per_reading` values per reading
    and `max_values` in all, naming at most `max_channels` distinct channels; seen_stamp and
    seen_value are that count's set (`_too_many_channels`), seen_stamp zeros at first."""
    for m in range(first, starts.shape[0]):
        r0, v0 = r, v
        code, r, v = _message(buf, starts[m], ends[m], m, r, v, reading_cols, battery,
                              value_cols, values, max_readings, max_values_per_reading)
        if code == _NO_ROOM:
            return m, r0, v0
        if code == OK and v - v0 > max_values:
            code = LIMIT
        if code == OK and v - v0 > max_channels and _too_many_channels(
                buf, value_cols, v0, v, max_channels, m + 1, seen_stamp, seen_value):
            code = LIMIT
        if code != OK:
            r, v = r0, v0
        status[m] = code
        message_readings[0, m] = r0
        message_readings[1, m] = r
    return starts.shape[0], r, v
