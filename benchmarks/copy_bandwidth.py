"""How fast this machine moves an array of a memory-bound operator's size: the floor under any
kernel that reads one array and writes another of the same size (layer norm, softmax).

    python benchmarks/copy_bandwidth.py --rows 8192 --cols 768 --rounds 5 --out benchmarks/results

Times, on the kernel thread pool's threads, a copy with ordinary vector stores and one with
non-temporal (streaming) stores that skip the cache and the read of each line before it is
written, and numpy's one-thread copyto; then the same with the tuned layer norm kernel, when
a records database is given.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _streaming_copy():
    """A Numba intrinsic `copy8(dst, dst_off, src, src_off)`: one <8 x float> from src stored
    to dst with !nontemporal (dst + dst_off must be 32-byte aligned), and `fence()`, the
    sfence that orders those stores before the step returns."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def copy8(typingctx, dst, dst_off, src, src_off):
        sig = types.void(dst, dst_off, src, src_off)

        def codegen(context, builder, signature, args):
            vec = ir.VectorType(ir.FloatType(), 8)
            d, s = (context.make_array(signature.args[i])(context, builder, args[i]).data for i in (0, 2))
            d_off, s_off = (context.cast(builder, args[i], signature.args[i], types.int64) for i in (1, 3))
            value = builder.load(builder.bitcast(builder.gep(s, [s_off]), vec.as_pointer()), align=4)
            store = builder.store(value, builder.bitcast(builder.gep(d, [d_off]), vec.as_pointer()), align=32)
            store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
            return context.get_dummy_value()
        return sig, codegen

    @intrinsic
    def fence(typingctx):
        def codegen(context, builder, signature, args):
            fn = builder.module.declare_intrinsic("llvm.x86.sse.sfence", fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(fn, [])
            return context.get_dummy_value()
        return types.void(), codegen
    return copy8, fence


def _copy_steps(n: int):
    import numpy as np
    from numba import cfunc

    from codegen.step_abi import STEP_SIGNATURE, array_at
    copy8, fence = _streaming_copy()
    opts = dict(fastmath=True, error_model="numpy", boundscheck=False)
    block = 1 << 14   # elements per chunk of the split

    @cfunc(STEP_SIGNATURE, **opts)
    def plain(lo, hi, a):
        src = array_at(a[0], (n,), np.float32)
        dst = array_at(a[1], (n,), np.float32)
        for b in range(lo, hi):
            for i in range(b * block, min(n, (b + 1) * block)):
                dst[np.uint64(i)] = src[np.uint64(i)]
        return 1

    @cfunc(STEP_SIGNATURE, **opts)
    def streaming(lo, hi, a):
        src = array_at(a[0], (n,), np.float32)
        dst = array_at(a[1], (n,), np.float32)
        for b in range(lo, hi):
            end = min(n, (b + 1) * block)
            for i in range(b * block, end - (end - b * block) % 8, 8):
                copy8(dst, i, src, i)
            for i in range(end - (end - b * block) % 8, end):
                dst[np.uint64(i)] = src[np.uint64(i)]
        fence()
        return 1
    return plain, streaming, (n + block - 1) // block


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from report import write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192, help="rows of the array (default: 8192)")
    parser.add_argument("--cols", type=int, default=768, help="columns of the array (default: 768)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default: 5)")
    parser.add_argument("--seconds", type=float, default=0.3, help="timed seconds per variant and round")
    parser.add_argument("--database", default=None,
                        help="a records database: also time its best layer norm of this size")
    parser.add_argument("--out", default=None, help="folder for the JSON result (default: print only)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.cols < 1 or args.rounds < 1 or args.seconds <= 0:
        parser.error("--rows, --cols and --rounds must be at least 1 and --seconds above 0")
    import numpy as np

    from codegen.parallel import run_step, thread_count
    from tuner.timing import median, time_callable

    n = args.rows * args.cols
    raw = np.empty(n + 16, np.float32)   # the streaming stores need a 32-byte aligned target
    dst = raw[(-raw.ctypes.data % 32) // 4:][:n]
    src = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    plain, streaming, chunks = _copy_steps(n)
    threads = thread_count()
    params = np.empty(0, np.int64)
    variants = {
        "copy, vector stores": lambda: run_step(plain.address, chunks, (src, dst), params, threads),
        "copy, streaming stores": lambda: run_step(streaming.address, chunks, (src, dst), params, threads),
        "np.copyto (one thread)": lambda: np.copyto(dst, src),
    }
    for name, fn in variants.items():
        dst[:] = 0
        fn()
        if not np.array_equal(dst, src):
            raise SystemExit(f"{name}: the copy is wrong")
    if args.database:
        from schedules import ops
        from tuner.build_best import build_best
        op = ops.layer_norm(M=args.rows, N=args.cols).with_constants("gamma", "beta")
        x, gamma, beta = op.random_inputs(0)
        kernel, rest = build_best(op, "cpu", args.database).bind_inputs([x, gamma, beta], op.constants)
        out = np.empty((args.rows, args.cols), np.float32)
        variants["layer norm, best record"] = lambda: kernel(*rest, out=out)
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            times[name].append(median(time_callable(fn, min_seconds=args.seconds)) * 1e3)
    moved = 2 * n * 4
    rows = [{"variant": name, "median_ms": statistics.median(v), "rounds_ms": v,
             "gb_per_s": moved / (statistics.median(v) * 1e-3) / 1e9} for name, v in times.items()]
    for r in rows:
        print(f"{r['variant']:<26} {r['median_ms']:.3f} ms  ({r['gb_per_s']:.1f} GB/s read + written)  "
              f"rounds {', '.join(f'{v:.3f}' for v in r['rounds_ms'])}")
    if args.out:
        path = write_result(args.out, "copy-bandwidth", "benchmarks/copy_bandwidth.py", argv,
                            {"threads": threads, "rounds": args.rounds, "array_mb": n * 4 / 1e6, "rows": rows})
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
