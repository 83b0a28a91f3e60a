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

Numbers: as orjson and Python read them (sensing.kernels.jsonnumber), else left to the slow
path; the common forms (at most 18 digits, no exponent) in one pass here (`_number`), with
jsonnumber.read_number's very result. The reading object's own keys are matched as one word
(`_known_key`), others byte by byte.

Output (preallocated by the caller; a message that does not fit stops the pass, see
`scan_messages`): per reading a column of `reading_cols` (rows R_*), its battery (NaN when
absent or null, as BatchBuilder stores it); per value a column of `value_cols` (rows V_*) and
the value; per message its status and range of readings. Names are spans of the buffer with
`hash_name` of their bytes.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import numpy as np
from numba import njit

from sensing.kernels.jit import njit_without_refcounts
from sensing.kernels.jsonnumber import read_number, to_float
from sensing.kernels.spans import at

OK = 0
SYNTAX = 1
"""not JSON as the lane reads it: malformed, truncated, trailing bytes, a reading not an object"""
STRING = 2
"""a string with an escape or a byte beyond ASCII"""
NUMBER = 3
"""a number the lane cannot convert exactly (an integer beyond int64, a float of a significand
beyond it, or one whose double jsonnumber cannot decide: subnormal, infinite, halfway)"""
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

_F = TypeVar("_F")


def _inlined(fn: _F) -> _F:
    """njit_without_refcounts, and always inlined into its callers (LLVM's alwaysinline).
    Left to itself LLVM kept most helpers here as calls, each passing the buffer and the
    output arrays as seven arguments apiece: inlined, the scan took a third less time on
    100-reading arrays, for 10 more seconds of compiling."""
    compile_: Any = njit(cache=True, nogil=True, _nrt=False,  # type: ignore[call-overload]
                         forceinline=True)
    return cast(_F, compile_(fn))


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


def _window(key: bytes) -> int:
    """A key and its closing quote as `_known_key` reads them (little-endian)."""
    return int.from_bytes(key + b'"', "little") if len(key) < 7 else int.from_bytes(key, "little")


_K_DEVICE = _window(b"device")
_K_KIND = _window(b"kind")
_K_GATEWAY = _window(b"gateway")
_K_AREA = _window(b"area")
_K_EPOCH = _window(b"epoch")
_K_SEQ = _window(b"seq")
_K_TS = _window(b"ts")
_K_VALUES = _window(b"values")
_K_BATTERY = _window(b"battery")
_BYTES_3, _BYTES_4, _BYTES_5, _BYTES_6 = (1 << 24) - 1, (1 << 32) - 1, (1 << 40) - 1, (1 << 48) - 1

_QUOTE, _BACKSLASH, _COMMA, _MINUS, _COLON = 34, 92, 44, 45, 58
_ZERO, _NINE, _DOT, _E, _E_UPPER = 48, 57, 46, 101, 69
_OPEN_OBJECT, _CLOSE_OBJECT, _OPEN_ARRAY, _CLOSE_ARRAY = 123, 125, 91, 93


@njit_without_refcounts
def hash_name(buf: np.ndarray, start: int, end: int) -> int:
    """A 63-bit hash of buf[at(start:end)], never negative: two 32-bit FNV-1a-style lanes with
    different multipliers, in int64 arithmetic that never overflows (so it is the same number
    when the kernels run as plain Python, NUMBA_DISABLE_JIT=1)."""
    a = 2166136261
    b = 0x9747B28C
    for i in range(start, end):
        c = int(buf[at(i)])
        a = ((a ^ c) * 16777619) & 0xFFFFFFFF
        b = ((b ^ c) * 0x5BD1E995) & 0xFFFFFFFF
    return ((a & 0x7FFFFFFF) << 32) | b


@_inlined
def _skip_space(buf: np.ndarray, pos: int, end: int) -> int:
    while pos < end:
        c = buf[at(pos)]
        if c != 32 and c != 10 and c != 13 and c != 9:
            break
        pos += 1
    return pos


@_inlined
def _string_end(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """(code, position of the closing quote) of the string whose opening quote is at pos."""
    pos += 1
    while pos < end:
        c = buf[at(pos)]
        if c == _QUOTE:
            return OK, pos
        if c == _BACKSLASH or c >= 128:
            return STRING, pos
        if c < 32:
            return SYNTAX, pos
        pos += 1
    return SYNTAX, pos


@_inlined
def _name_colon(buf: np.ndarray, pos: int, end: int) -> tuple[int, int, int, int]:
    """An object's key at pos, then the colon: (code, start and end of the key's bytes,
    position of the value after the colon and whitespace)."""
    if pos >= end or buf[at(pos)] != _QUOTE:
        return SYNTAX, pos, pos, pos
    code, close = _string_end(buf, pos, end)
    if code != OK:
        return code, pos + 1, close, close
    start = pos + 1
    pos = _skip_space(buf, close + 1, end)
    if pos >= end or buf[at(pos)] != _COLON:
        return SYNTAX, start, close, pos
    pos = _skip_space(buf, pos + 1, end)
    if pos >= end:
        return SYNTAX, start, close, pos
    return OK, start, close, pos


@_inlined
def _literal(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """(code, position after) of true, false or null at pos."""
    c = buf[at(pos)]
    if c == 116:  # true
        n = 4
        ok = (pos + 4 <= end and buf[at(pos + 1)] == 114 and buf[at(pos + 2)] == 117
              and buf[at(pos + 3)] == 101)
    elif c == 102:  # false
        n = 5
        ok = (pos + 5 <= end and buf[at(pos + 1)] == 97 and buf[at(pos + 2)] == 108
              and buf[at(pos + 3)] == 115 and buf[at(pos + 4)] == 101)
    elif c == 110:  # null
        n = 4
        ok = (pos + 4 <= end and buf[at(pos + 1)] == 117 and buf[at(pos + 2)] == 108
              and buf[at(pos + 3)] == 108)
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
        c = buf[at(pos)]
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
            if buf[at(pos)] == (_CLOSE_OBJECT if is_object else _CLOSE_ARRAY):
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
            valid, pos, _, _, _, _, _ = read_number(buf, pos, end)
            if not valid:
                return SYNTAX, pos
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
            c = buf[at(pos)]
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


@_inlined
def _key_field(buf: np.ndarray, start: int, end: int) -> int:
    """The field bit of a key of the reading object, 0 for an unknown key."""
    n = end - start
    if n < 2 or n > 7:
        return 0
    word = n << 56
    for i in range(n):
        word |= int(buf[at(start + i)]) << (8 * i)
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


@_inlined
def _known_key(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """(field bit, position after the closing quote) of the key whose opening quote is at
    pos if it is one of the reading object's own, read as one word of 7 bytes (the key's
    first letter says which it can be); (0, pos) for any other key, one with an escape, or
    one too near the end, which the caller reads byte by byte."""
    if pos + 9 > end:
        return 0, pos
    w = 0
    for i in range(7):
        w |= int(buf[at(pos + 1 + i)]) << (8 * i)
    first = w & 0xFF
    if first == 100:  # d
        if w == _K_DEVICE:
            return _DEVICE, pos + 8
    elif first == 107:  # k
        if w & _BYTES_5 == _K_KIND:
            return _KIND, pos + 6
    elif first == 115:  # s
        if w & _BYTES_4 == _K_SEQ:
            return _SEQ, pos + 5
    elif first == 116:  # t
        if w & _BYTES_3 == _K_TS:
            return _TS, pos + 4
    elif first == 118:  # v
        if w == _K_VALUES:
            return _VALUES, pos + 8
    elif first == 101:  # e
        if w & _BYTES_6 == _K_EPOCH:
            return _EPOCH, pos + 7
    elif first == 98:  # b
        if w == _K_BATTERY and buf[at(pos + 8)] == _QUOTE:
            return _BATTERY, pos + 9
    elif first == 103:  # g
        if w == _K_GATEWAY and buf[at(pos + 8)] == _QUOTE:
            return _GATEWAY, pos + 9
    elif first == 97 and w & _BYTES_5 == _K_AREA:  # a
        return _AREA, pos + 6
    return 0, pos


@_inlined
def _reading_key(buf: np.ndarray, pos: int, end: int) -> tuple[int, int, int]:
    """A key of the reading object at pos, then the colon: (code, its field bit or 0 for an
    unknown key, position of the value after the colon and whitespace)."""
    if pos < end and buf[at(pos)] == _QUOTE:
        field, after = _known_key(buf, pos, end)
        if field:
            if after < end and buf[at(after)] == _COLON:
                after += 1
            else:
                after = _skip_space(buf, after, end)
                if after >= end or buf[at(after)] != _COLON:
                    return SYNTAX, field, after
                after += 1
            if after < end and buf[at(after)] > 32:
                return OK, field, after
            after = _skip_space(buf, after, end)
            return (OK if after < end else SYNTAX), field, after
    code, start, close, pos = _name_colon(buf, pos, end)
    if code != OK:
        return code, 0, pos
    return OK, _key_field(buf, start, close), pos


@_inlined
def _digits(buf: np.ndarray, pos: int, end: int, significand: int, digits: int
            ) -> tuple[int, int, int]:
    """The decimal digits at pos appended to a significand of `digits` digits: (position after
    them, the significand, its digits), the digits -1 if there would be more than 18."""
    while pos < end:
        d = int(buf[at(pos)]) - _ZERO
        if d < 0 or d > 9:
            break
        if digits == 18:
            return pos, significand, -1
        significand = significand * 10 + d
        digits += 1
        pos += 1
    return pos, significand, digits


@_inlined
def _number(buf: np.ndarray, pos: int, end: int
            ) -> tuple[bool, int, bool, bool, int, int, bool]:
    """`read_number` of the number at pos, the common forms read here in one pass: at most
    18 digits and no exponent (the significand then stays below 10^18 and no digit is
    dropped, so the result is read_number's). Anything else, valid or not, read_number
    reads."""
    first = pos
    negative = False
    if buf[at(pos)] == _MINUS:
        negative = True
        pos += 1
    significand = digits = 0
    if pos < end and buf[at(pos)] == _ZERO:
        pos += 1
        if pos < end and _ZERO <= buf[at(pos)] <= _NINE:
            return read_number(buf, first, end)  # a leading zero: not JSON
    else:
        pos, significand, digits = _digits(buf, pos, end, 0, 0)
        if digits <= 0:  # no digit (not JSON), or too many
            return read_number(buf, first, end)
    integer = True
    exponent = 0
    if pos < end and buf[at(pos)] == _DOT:
        integer = False
        whole = digits
        pos, significand, digits = _digits(buf, pos + 1, end, significand, digits)
        if digits <= whole:  # no digit after the dot (not JSON), or too many
            return read_number(buf, first, end)
        exponent = whole - digits
    if pos < end and (buf[at(pos)] == _E or buf[at(pos)] == _E_UPPER):
        return read_number(buf, first, end)
    return True, pos, integer, negative, significand, exponent, False


@_inlined
def _same_bytes(buf: np.ndarray, a: int, b: int, n: int) -> bool:
    for i in range(n):  # noqa: SIM110 (numba compiles no generator into all())
        if buf[at(a + i)] != buf[at(b + i)]:
            return False
    return True


@_inlined
def _wrong_type(c: int) -> int:
    """The code for a value starting with byte c where another type was expected: FIELD if it
    starts a JSON value (the codec refuses its type), else SYNTAX."""
    if c in (_QUOTE, _OPEN_OBJECT, _OPEN_ARRAY, _MINUS, 116, 102, 110) or _ZERO <= c <= _NINE:
        return FIELD
    return SYNTAX


@_inlined
def _values(buf: np.ndarray, pos: int, end: int, r: int, v: int, value_cols: np.ndarray,
            values: np.ndarray, max_values_per_reading: int) -> tuple[int, int, int]:
    """The values object at pos of reading r, written from value v on: (code, position after,
    next value)."""
    first = v
    pos = _skip_space(buf, pos + 1, end)
    if pos < end and buf[at(pos)] == _CLOSE_OBJECT:
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
        c = buf[at(pos)]
        if c != _MINUS and not _ZERO <= c <= _NINE:
            return _wrong_type(c), pos, v
        valid, pos, integer, negative, significand, exponent, dropped = _number(buf, pos, end)
        if not valid:
            return SYNTAX, pos, v
        exact, x = to_float(integer, negative, significand, exponent, dropped)
        if not exact:
            return NUMBER, pos, v
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
        if buf[at(pos)] == _COMMA:
            pos = _skip_space(buf, pos + 1, end)
        elif buf[at(pos)] == _CLOSE_OBJECT:
            return OK, pos + 1, v
        else:
            return SYNTAX, pos, v


@_inlined
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
    if pos < end and buf[at(pos)] == _CLOSE_OBJECT:
        return FIELD, pos, v
    while True:
        code, field, pos = _reading_key(buf, pos, end)
        if code != OK:
            return code, pos, v
        if seen & field:
            return FIELD, pos, v  # orjson keeps the last of two: the slow path decides
        seen |= field
        c = buf[at(pos)]
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
            valid, pos, integer, negative, significand, _, dropped = _number(buf, pos, end)
            if not valid:
                return SYNTAX, pos, v
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
                valid, pos, integer, negative, significand, exponent, dropped = _number(
                    buf, pos, end)
                if not valid:
                    return SYNTAX, pos, v
                exact, level = to_float(integer, negative, significand, exponent, dropped)
                if not exact:
                    return NUMBER, pos, v
            else:
                return _wrong_type(c), pos, v
        else:
            code, pos = _skip_value(buf, pos, end)
            if code != OK:
                return code, pos, v
        pos = _skip_space(buf, pos, end)
        if pos >= end:
            return SYNTAX, pos, v
        if buf[at(pos)] == _COMMA:
            pos = _skip_space(buf, pos + 1, end)
        elif buf[at(pos)] == _CLOSE_OBJECT:
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


@_inlined
def _message(buf: np.ndarray, pos: int, end: int, m: int, r: int, v: int,
             reading_cols: np.ndarray, battery: np.ndarray, value_cols: np.ndarray,
             values: np.ndarray, max_readings: int, max_values_per_reading: int
             ) -> tuple[int, int, int]:
    """Message m, buf[at(pos:end)], written from reading r and value v on: (code, next reading,
    next value)."""
    pos = _skip_space(buf, pos, end)
    if pos >= end:
        return SYNTAX, r, v
    if buf[at(pos)] == _OPEN_OBJECT:
        if r == battery.shape[0]:
            return _NO_ROOM, r, v
        code, pos, v = _reading(buf, pos, end, m, r, v, reading_cols, battery, value_cols,
                                values, max_values_per_reading)
        if code != OK:
            return code, r, v
        r += 1
    elif buf[at(pos)] == _OPEN_ARRAY:
        first = r
        pos = _skip_space(buf, pos + 1, end)
        if pos < end and buf[at(pos)] == _CLOSE_ARRAY:
            return EMPTY, r, v
        while True:
            if pos >= end:
                return SYNTAX, r, v
            if buf[at(pos)] != _OPEN_OBJECT:
                return _wrong_type(buf[at(pos)]), r, v
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
            if buf[at(pos)] == _COMMA:
                pos = _skip_space(buf, pos + 1, end)
            elif buf[at(pos)] == _CLOSE_ARRAY:
                pos += 1
                break
            else:
                return SYNTAX, r, v
    else:
        return _wrong_type(buf[at(pos)]), r, v
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
    """Messages first.. of buf[at(starts[m)]:ends[m]] (checked by the caller to lie in buf),
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
