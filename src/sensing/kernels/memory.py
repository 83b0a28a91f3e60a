"""Telling the processor which state a loop will need next.

Readings arrive in no particular device order, so the state a kernel reads for the next reading
is anywhere in arrays of tens of megabytes (100,000 devices): each miss costs a trip to memory.
The processor overlaps a few of those trips by running ahead into later iterations, fewer the
larger the loop's body (the check bank's waits for nearly each). `prefetch` asks for the state
of a reading a few ahead, so that its trip overlaps the work on the readings in between.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic

PREFETCH_AHEAD = 4
"""readings: on 100,000 devices in random order, asking 2 to 4 readings ahead took the check
bank from 2.3 to 0.9 ms a batch, 8 or more only to 1.4 ms (the lines are evicted before their
turn)"""

_LOCALITY_HIGH = 3  # keep in every cache level: it is used within a few readings
_FOR_WRITE = 1
_DATA_CACHE = 1


def _emit_prefetch(builder: Any, address: Any) -> None:
    i32 = ir.IntType(32)
    prefetch = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
        builder.module, ir.FunctionType(ir.VoidType(), [address.type, i32, i32, i32]),
        "llvm.prefetch.p0i8")
    builder.call(prefetch, [address, ir.Constant(i32, _FOR_WRITE),
                            ir.Constant(i32, _LOCALITY_HIGH), ir.Constant(i32, _DATA_CACHE)])


def _prefetch_typer(typingctx: Any, array: Any, row: Any, column: Any) -> tuple[Any, Any] | None:
    """A hint, not an access: the cache line holding `array[row, column]` (`array[row]` of a
    1-D array, column 0) is fetched for writing while the caller goes on. It never faults,
    whatever the indices; they are not checked."""
    if (not isinstance(array, types.Array) or array.ndim > 2
            or not isinstance(row, types.Integer) or not isinstance(column, types.Integer)):
        return None
    sig = types.void(array, row, column)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type, row_type, column_type = signature.args
        arr = context.make_array(array_type)(context, builder, args[0])
        strides = cgutils.unpack_tuple(builder, arr.strides, array_type.ndim)  # type: ignore[no-untyped-call]
        offset = builder.mul(context.cast(builder, args[1], row_type, types.intp), strides[0])
        if array_type.ndim == 2:
            offset = builder.add(offset, builder.mul(
                context.cast(builder, args[2], column_type, types.intp), strides[1]))
        data = builder.bitcast(arr.data, ir.IntType(8).as_pointer())
        _emit_prefetch(builder, builder.gep(data, [offset]))
        return context.get_dummy_value()

    return sig, codegen


if config.DISABLE_JIT:  # type: ignore[attr-defined]  # an intrinsic needs the compiler
    def prefetch(array: np.ndarray, row: int, column: int) -> None:
        """Without the compiler, a hint that has no effect."""
else:
    prefetch: Any = intrinsic(_prefetch_typer)  # type: ignore[no-redef]
