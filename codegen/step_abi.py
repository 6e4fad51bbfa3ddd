"""The C calling convention of generated steps, step(lo, hi, args), and its argument block.

Every step is a Numba cfunc with this one signature, so pool threads run it from native code
through its address, without taking the GIL: `args` points at int64 words holding each
buffer's data address, in the loop nest's buffer order, then the runtime knob values. A step
returns 1. Numba's C wrapper cannot raise: when the step stops with an exception (an
allocation that failed) it prints it as unraisable and returns 0, which the caller turns
into an error.
"""
from __future__ import annotations

from numba import carray, njit, types
from numba.extending import intrinsic

STEP_SIGNATURE = "int64(int64, int64, CPointer(int64))"
STEP_OK = 1


@intrinsic
def _as_voidptr(typingctx, address):
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))
    return types.voidptr(types.int64), codegen


@njit(inline="always", cache=True)
def array_at(address, shape, dtype):
    """The C-contiguous array of `shape` and `dtype` whose data starts at `address`."""
    return carray(_as_voidptr(address), shape, dtype)


def python_array_at(array, shape, dtype):
    """What array_at gives, for steps run by the interpreter: there the argument block holds
    the arrays themselves, so the step's unpacking is checked against them."""
    import numpy as np
    if not isinstance(array, np.ndarray) or array.dtype != np.dtype(dtype) \
            or array.size != int(np.prod(shape)) or not array.flags.c_contiguous:
        raise TypeError(f"argument block entry is not a C-contiguous {np.dtype(dtype)} array "
                        f"of shape {shape}: {type(array).__name__}")
    return array.reshape(shape)
