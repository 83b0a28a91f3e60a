"""JSON numbers read as orjson and Python read them, for the JSON lane (jsonscan).

Integers up to 2^63 - 1 in magnitude exactly (a value's float(int) rounds once, as the
codec's float() does). Other numbers with a significand below 2^63 as the nearest double: by
Clinger's fast path when the significand is at most 2^53 and the power of ten at most 10^22
(one correctly rounded multiply or divide of exact doubles), else by the Eisel-Lemire
algorithm (as Go's strconv has it), which gives up on the rare inputs it cannot decide (a
halfway case, a subnormal or infinite result). 64-bit unsigned arithmetic is done in steps
that never overflow, so it gives the same bits when the kernels run as plain Python
(NUMBA_DISABLE_JIT=1).
"""

from __future__ import annotations

import math

import numpy as np

from sensing.kernels.jit import njit_without_refcounts
from sensing.kernels.spans import at

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

_ZERO, _NINE, _DOT, _E, _E_UPPER, _PLUS, _MINUS = 48, 57, 46, 101, 69, 43, 45


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
def read_number(buf: np.ndarray, pos: int, end: int
                ) -> tuple[bool, int, bool, bool, int, int, bool]:
    """The JSON number at pos: (valid, position after it, integer form, negative,
    significand, power of ten, digits dropped). Not valid unless it is a JSON number (by its
    grammar: no leading zeros, no `+`, no bare `.` or `e`); digits beyond int64 are dropped
    (the number is then inexact)."""
    negative = False
    if pos < end and buf[at(pos)] == _MINUS:
        negative = True
        pos += 1
    if pos >= end or not _ZERO <= buf[at(pos)] <= _NINE:
        return False, pos, False, negative, 0, 0, False
    significand = 0
    digits = 0
    exponent = 0
    dropped = False
    if buf[at(pos)] == _ZERO:
        pos += 1
        if pos < end and _ZERO <= buf[at(pos)] <= _NINE:
            return False, pos, False, negative, 0, 0, False  # a leading zero
    else:
        while pos < end and _ZERO <= buf[at(pos)] <= _NINE:
            significand, digits, dropped = _append_digit(significand, digits, dropped,
                                                         int(buf[at(pos)] - _ZERO))
            pos += 1
    integer = True
    if pos < end and buf[at(pos)] == _DOT:
        integer = False
        pos += 1
        if pos >= end or not _ZERO <= buf[at(pos)] <= _NINE:
            return False, pos, False, negative, 0, 0, False
        while pos < end and _ZERO <= buf[at(pos)] <= _NINE:
            taken = digits
            significand, digits, dropped = _append_digit(significand, digits, dropped,
                                                         int(buf[at(pos)] - _ZERO))
            if digits > taken or significand == 0:  # a leading zero of the fraction counts
                exponent -= 1
            pos += 1
    if pos < end and (buf[at(pos)] == _E or buf[at(pos)] == _E_UPPER):
        integer = False
        pos += 1
        sign = 1
        if pos < end and (buf[at(pos)] == _PLUS or buf[at(pos)] == _MINUS):
            sign = -1 if buf[at(pos)] == _MINUS else 1
            pos += 1
        if pos >= end or not _ZERO <= buf[at(pos)] <= _NINE:
            return False, pos, False, negative, 0, 0, False
        written = 0
        while pos < end and _ZERO <= buf[at(pos)] <= _NINE:
            if written < 100_000:  # far beyond any double: only "too large" matters then
                written = written * 10 + int(buf[at(pos)] - _ZERO)
            pos += 1
        exponent += sign * written
    return True, pos, integer, negative, significand, exponent, dropped


@njit_without_refcounts
def to_float(integer: bool, negative: bool, significand: int, exponent: int,
             dropped: bool) -> tuple[bool, float]:
    """(exact, value) of a number read by read_number, as the codec's float() of what orjson
    gives: not exact (value 0.0) when the lane cannot tell the double for sure."""
    if dropped:
        return False, 0.0
    if integer:  # orjson gives an int, float() rounds it once; "-0" is the int 0
        return True, float(-significand if negative else significand)
    if significand <= _EXACT_SIGNIFICAND and -22 <= exponent <= 22:
        x = float(significand)
        x = x * _POW10[exponent] if exponent >= 0 else x / _POW10[-exponent]
    else:
        decided, x = _eisel_lemire(significand, exponent)
        if not decided:
            return False, 0.0
    return True, -x if negative else x


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
