"""GIL-free pool primitives: atomic counters, fences and calls through a step's C address."""
from __future__ import annotations

import os
import platform

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _slot_pointer(context, builder, signature, args):
    ary = context.make_array(signature.args[0])(context, builder, args[0])
    idx = context.cast(builder, args[1], signature.args[1], types.int64)
    return builder.gep(ary.data, [idx])


def _require_int64_array(name, arr):
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        raise TypeError(f"{name}: needs an int64 array, got {arr}")


@intrinsic
def load_acquire(typingctx, arr, index):
    """arr[index] as an atomic acquire load: the compiler can neither hoist it out of a
    polling loop nor move later reads before it."""
    _require_int64_array("load_acquire", arr)

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_slot_pointer(context, builder, signature, args), "acquire", 8)
    return types.int64(arr, index), codegen


@intrinsic
def store_release(typingctx, arr, index, value):
    """arr[index] = value as an atomic release store: every write before it (a chunk's
    results, a task's arguments) is visible to a thread that acquire-loads the value."""
    _require_int64_array("store_release", arr)

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(value, _slot_pointer(context, builder, signature, args), "release", 8)
        return context.get_dummy_value()
    return types.none(arr, index, value), codegen


@intrinsic
def full_fence(typingctx):
    """A sequentially consistent fence. A caller that stores `go` and then loads `sleeping`,
    against a worker that stores `sleeping` and then loads `go`, needs one on both sides: x86
    may otherwise let each load pass its own earlier store, and both would miss the other."""
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def pause(typingctx):
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


# Polls between two sched_yield calls in a spin: every few microseconds a spinning thread
# offers its core to any other runnable thread there.
YIELD_EVERY = 128
_YIELDS = hasattr(os, "sched_yield")


@intrinsic
def yield_cpu(typingctx):
    """sched_yield(): a spin that shares its core with the thread it waits for (the caller and a
    worker pinned to the same core) otherwise holds that core for a whole time slice, and a
    40 us kernel call took 2.1 ms. Alone on its core, the call returns in about 0.5 us."""
    def codegen(context, builder, signature, args):
        if _YIELDS:
            fn = builder.module.globals.get("sched_yield") or ir.Function(
                builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def address_of(typingctx, arr):
    """The address of an array's first element, as an int64 for an argument block."""
    if not isinstance(arr, types.Array):
        raise TypeError(f"address_of: needs an array, got {arr}")

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.ptrtoint(ary.data, ir.IntType(64))
    return types.int64(arr), codegen


@intrinsic
def call_step(typingctx, entry, lo, hi, block):
    """step(lo, hi, args) for the compiled step at address `entry`, with `args` the address of
    its argument block: the C signature every generated step has (codegen/step_abi.py).
    Returns the step's result, 1, or 0 when it stopped with an exception."""
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(i64, [i64, i64, i64.as_pointer()])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(fn, [args[1], args[2], builder.inttoptr(args[3], i64.as_pointer())])
    return types.int64(types.int64, types.int64, types.int64, types.int64), codegen


@njit("boolean(int64[::1], int64, int64, int64)", nogil=True, cache=True)
def wait_at_least(counters, index, value, polls):
    """Spin, without the GIL, until counters[index] >= value; False after `polls` polls."""
    for k in range(polls):
        if load_acquire(counters, index) >= value:
            return True
        if k % YIELD_EVERY == YIELD_EVERY - 1:
            yield_cpu()
        else:
            pause()
    return load_acquire(counters, index) >= value
