"""Runs generated kernel source in the Python interpreter, without Numba, for fast checks.

The source is exactly what Numba would compile; only the decorator becomes a no-op, and the
argument block holds the arrays themselves instead of their addresses. Tests use
it to check the index math of many sampled configs in milliseconds instead of compiling each.
"""
from __future__ import annotations


def python_cfunc(*args, **kwargs):
    def keep(fn):
        return fn
    return keep


def python_outer_product(rows: int, vecs: int, lanes: int, accumulate: bool, direct: bool = False,
                         epilogue: tuple | None = None, transposed_out: bool = False, b_strided: bool = False):
    """What codegen.simd.outer_product_kernel computes, in numpy (float32 accumulation)."""
    import numpy as np

    from .simd_finish import check_tile_epilogue
    cols = vecs * lanes
    operands = check_tile_epilogue(epilogue) if epilogue is not None else 0

    def kernel(a, a_off, *rest):
        if direct:
            row_at, k_at, k_off, b, b_off, c, c_off, ldc, kc, *more = rest
        else:
            b, b_off, c, c_off, ldc, kc, *more = rest
        if b_strided:
            more, ldb = more[:-1], more[-1]
        flag, more = (more[:1], more[1:]) if accumulate == "runtime" else ((), more)
        flat = c.reshape(-1)
        tile = np.zeros((rows, cols), np.float32)
        if kc > 0:
            if direct:
                at = a_off + k_at[k_off:k_off + kc][:, None] + row_at[:rows][None, :]
                pa = a.reshape(-1)[at]
            else:
                pa = a[a_off:a_off + kc * rows].reshape(kc, rows)
            if b_strided:
                pb = b.reshape(-1)[b_off + ldb * np.arange(kc)[:, None] + np.arange(cols)[None, :]]
            else:
                pb = b[b_off:b_off + kc * cols].reshape(kc, cols)
            tile = (pa.T.astype(np.float64) @ pb.astype(np.float64)).astype(np.float32)
        add = bool(flag[0]) if accumulate == "runtime" else accumulate
        apply = epilogue is not None and bool(more[0])
        d, d_off, ldd = more[1:4] if transposed_out else (None, 0, 0)
        first = 4 if transposed_out else 1
        xs = [(more[first + 2 * q].reshape(-1), more[first + 1 + 2 * q]) for q in range(operands)]
        for i in range(rows):
            row = flat[c_off + i * ldc:c_off + i * ldc + cols]
            value = row + tile[i] if add else tile[i]
            if apply:
                value = _python_tile_epilogue(epilogue, value, i, cols, xs)
            if apply and transposed_out:
                d.reshape(-1)[d_off + i + ldd * np.arange(cols)] = value
            else:
                row[:] = value
    return kernel


# The numpy ufunc of each tile-epilogue op; "rsub" takes its arguments the other way round.
_EPILOGUE_UFUNCS = {"add": "add", "sub": "subtract", "rsub": "subtract", "mul": "multiply",
                    "max": "maximum", "min": "minimum"}


def _python_tile_epilogue(program, value, i, cols, xs):
    import numpy as np
    value = np.asarray(value, np.float32)
    for op, kind, *where in program:
        if kind == "const":
            x = np.float32(where[0])
        elif kind == "row":
            data, off = xs[where[0]]
            x = data[off + where[1] * i]
        elif kind == "tile":
            data, off = xs[where[0]]
            x = data[off + where[1] * i:off + where[1] * i + cols]
        else:
            data, off = xs[where[0]]
            x = data[off:off + cols]
        value = getattr(np, _EPILOGUE_UFUNCS[op])(*((x, value) if op == "rsub" else (value, x)))
    return value.astype(np.float32)


def python_vector_copy(count: int, lanes: int = 8, stride: int = 1, masked: bool = False):
    def copy(dst, dst_off, src, src_off, length=count):
        if not 0 <= length <= count:
            raise IndexError(f"vector copy of {length} values, at most {count}")
        if length:
            dst.reshape(-1)[dst_off:dst_off + length] = \
                src.reshape(-1)[src_off:src_off + (length - 1) * stride + 1:stride]
    return copy


def python_transpose_copy(width: int):
    import numpy as np

    def copy(dst, dst_off, src, src_off, ld, kc):
        k = np.arange(kc // 8 * 8)[:, None]
        t = np.arange(width)[None, :]
        dst.reshape(-1)[dst_off + k * width + t] = src.reshape(-1)[src_off + t * ld + k]
    return copy


def python_input_tile(m: int, lanes: int = 16):
    """What codegen.winograd_simd.input_tile computes, in numpy."""
    import numpy as np

    from schedules.winograd_matrices import TRANSFORMS
    bt = TRANSFORMS[m][0].astype(np.float32)
    alpha = m + 2

    def tile(v, v_off, plane, xt, x_off, row, col):
        i, j = np.arange(alpha)[:, None, None], np.arange(alpha)[None, :, None]
        d = xt.reshape(-1)[x_off + i * row + j * col + np.arange(lanes)[None, None, :]]
        out = np.einsum("pi,ijl,qj->pql", bt, d, bt).astype(np.float32).reshape(alpha * alpha, lanes)
        v.reshape(-1)[v_off + np.arange(alpha * alpha)[:, None] * plane + np.arange(lanes)[None, :]] = out
    return tile


def python_output_run(m: int, run: int, relu: bool):
    """What codegen.winograd_simd.output_run computes, in numpy."""
    import numpy as np

    from schedules.winograd_matrices import TRANSFORMS
    at = TRANSFORMS[m][2].astype(np.float32)
    alpha = m + 2

    def out(mf, q, plane, y, o, width, bias):
        vals = mf.reshape(-1)[q + np.arange(alpha * alpha)[:, None] * plane + np.arange(run)[None, :]]
        tiles = np.einsum("ai,ijl,bj->lab", at, vals.reshape(alpha, alpha, run), at) + np.float32(bias)
        if relu:
            tiles = np.fmax(tiles, 0)   # llvm.maxnum, as compiled: a NaN becomes 0
        rows = tiles.transpose(1, 0, 2).reshape(m, run * m).astype(np.float32)  # row a: tile l's m values
        flat = y.reshape(-1)
        for a in range(m):
            flat[o + a * width:o + a * width + m * run] = rows[a]
    return out


def interpreted_steps(source: str) -> list:
    namespace: dict = {"__name__": "autosched_interpreted"}
    code = source.replace("from numba import cfunc", "from codegen.interpret import python_cfunc as cfunc")
    code = code.replace("from codegen.step_abi import STEP_SIGNATURE, array_at",
                        "from codegen.step_abi import STEP_SIGNATURE, python_array_at as array_at")
    code = code.replace("from codegen.simd import outer_product_kernel, transpose_copy, vector_copy",
                        "from codegen.interpret import python_outer_product as outer_product_kernel, "
                        "python_transpose_copy as transpose_copy, python_vector_copy as vector_copy")
    code = code.replace("from codegen.winograd_simd import input_tile, output_run",
                        "from codegen.interpret import python_input_tile as input_tile, "
                        "python_output_run as output_run")
    exec(compile(code.replace("cache=CACHE", "cache=False"), "<autosched interpreted>", "exec"), namespace)
    return namespace["STEPS"]
