"""GIL-free spin-waiting on shared counters, so pool threads answer a kernel call in microseconds."""
from __future__ import annotations

import platform

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def _load_acquire(typingctx, arr, index):
    """counters[index] as an atomic acquire load: the compiler can neither hoist it out of a
    polling loop nor move later reads before it."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        raise TypeError(f"load_acquire: needs an int64 array, got {arr}")

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        idx = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.load_atomic(builder.gep(ary.data, [idx]), "acquire", 8)
    return types.int64(arr, index), codegen


@intrinsic
def _pause(typingctx):
    """x86 `pause` between polls: it eases the spin on the memory bus and on a sibling
    hyperthread. Nothing elsewhere."""
    def codegen(context, builder, signature, args):
        if _X86:
            name = "llvm.x86.sse2.pause"
            fn = builder.module.globals.get(name) or ir.Function(
                builder.module, ir.FunctionType(ir.VoidType(), []), name)
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


@njit("boolean(int64[::1], int64, int64, int64)", nogil=True, cache=True)
def wait_at_least(counters, index, value, polls):
    """Spin, without the GIL, until counters[index] >= value; False after `polls` polls."""
    for _ in range(polls):
        if _load_acquire(counters, index) >= value:
            return True
        _pause()
    return _load_acquire(counters, index) >= value
