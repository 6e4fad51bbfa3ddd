"""Winograd F(m x m, 3x3) transforms as Numba intrinsics: the input patch transform on a vector
of channels, and the output transform with bias and relu on a run of tiles."""
from __future__ import annotations

from schedules.winograd_matrices import TRANSFORMS


def _combination(builder, coefficients, vectors, splat):
    """sum_i coefficients[i] * vectors[i] as vector instructions: nothing for zeros, adds and
    subtractions for +-1, a multiply by a splatted constant otherwise."""
    total = None
    for c, v in zip(coefficients, vectors):
        if c == 0:
            continue
        if total is None:
            total = v if c == 1 else builder.fmul(v, splat(c))
        elif c == 1:
            total = builder.fadd(total, v)
        elif c == -1:
            total = builder.fsub(total, v)
        else:
            total = builder.fadd(total, builder.fmul(v, splat(c)))
    return total if total is not None else splat(0.0)


def _arguments(context, builder, signature, args, arrays, count=None):
    """An intrinsic's array arguments (positions `arrays`) as data pointers, and its other
    arguments before position `count` as int64 values."""
    from numba import types
    count = len(args) if count is None else count
    pointers = [context.make_array(signature.args[i])(context, builder, args[i]).data for i in arrays]
    ints = [context.cast(builder, args[i], signature.args[i], types.int64) for i in range(count) if i not in arrays]
    return pointers, ints


def _splatter(builder, vec):
    from llvmlite import ir
    return lambda c: ir.Constant(vec, [ir.Constant(ir.FloatType(), float(c))] * vec.count)


def input_tile(m: int, lanes: int = 16):
    """A Numba intrinsic `tile(v, v_off, plane, xt, x_off, row, col)`: B^T d B for `lanes`
    channels at once, d[i][j] = xt[x_off + i * row + j * col + lane], written to
    v[v_off + xi * plane + lane] for each of the (m+2)^2 positions xi. A loop over channels
    would stay scalar: its many load and store streams are more than LLVM checks for overlap."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic
    bt = TRANSFORMS[m][0]
    alpha = m + 2

    @intrinsic
    def tile(typingctx, v, v_off, plane, xt, x_off, row, col):
        sig = types.void(v, v_off, plane, xt, x_off, row, col)

        def codegen(context, builder, signature, args):
            vec = ir.VectorType(ir.FloatType(), lanes)
            splat = _splatter(builder, vec)
            (v_ptr, x_ptr), (v_off, plane, x_off, row, col) = _arguments(context, builder, signature, args, (0, 3))

            def at(ptr, offset):
                return builder.bitcast(builder.gep(ptr, [offset]), vec.as_pointer())

            def const(value):
                return ir.Constant(row.type, value)

            d = [[builder.load(at(x_ptr, builder.add(x_off, builder.add(builder.mul(row, const(i)),
                                                                          builder.mul(col, const(j))))), align=4)
                  for j in range(alpha)] for i in range(alpha)]
            w = [[_combination(builder, bt[a], [d[i][j] for i in range(alpha)], splat) for j in range(alpha)]
                 for a in range(alpha)]
            for a in range(alpha):
                for b in range(alpha):
                    value = _combination(builder, bt[b], w[a], splat)
                    builder.store(value, at(v_ptr, builder.add(v_off, builder.mul(plane, const(a * alpha + b)))), align=4)
            return context.get_dummy_value()
        return sig, codegen
    return tile


def output_run(m: int, run: int, relu: bool):
    """A Numba intrinsic `out(mf, q, plane, y, o, width, bias)`: A^T m A for `run` consecutive
    tiles at once (tile l's values at mf[q + xi * plane + l]), plus the bias and the relu,
    each of the m output rows a stored as one vector of m * run values at y[o + a * width]."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
    at_ = TRANSFORMS[m][2]
    alpha = m + 2

    @intrinsic
    def out(typingctx, mf, q, plane, y, o, width, bias):
        sig = types.void(mf, q, plane, y, o, width, bias)

        def codegen(context, builder, signature, args):
            vec = ir.VectorType(ir.FloatType(), run)
            wide = ir.VectorType(ir.FloatType(), m * run)
            splat = _splatter(builder, vec)
            (m_ptr, y_ptr), (q, plane, o, width) = _arguments(context, builder, signature, args, (0, 3), 6)
            i32 = ir.IntType(32)

            def const(value):
                return ir.Constant(q.type, value)

            vals = [builder.load(builder.bitcast(builder.gep(m_ptr, [builder.add(q, builder.mul(plane, const(xi)))]),
                                                 vec.as_pointer()), align=4) for xi in range(alpha * alpha)]
            s_ = [[_combination(builder, at_[a], [vals[i * alpha + j] for i in range(alpha)], splat)
                   for j in range(alpha)] for a in range(m)]
            b_vec = builder.insert_element(ir.Constant(vec, ir.Undefined), args[6], ir.Constant(i32, 0))
            b_vec = builder.shuffle_vector(b_vec, ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(i32, run), [0] * run))
            maxnum = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec]), f"llvm.maxnum.v{run}f32")
            for a in range(m):
                ys = []
                for b in range(m):
                    value = builder.fadd(_combination(builder, at_[b], s_[a], splat), b_vec)
                    ys.append(builder.call(maxnum, [value, splat(0.0)]) if relu else value)
                # one vector for the row: tile l's m values side by side
                while len(ys) > 1:
                    n = ys[0].type.count
                    ys = [builder.shuffle_vector(ys[k], ys[k + 1], ir.Constant(ir.VectorType(i32, 2 * n), list(range(2 * n))))
                          for k in range(0, len(ys), 2)]
                order = [b * run + l for l in range(run) for b in range(m)]
                row = builder.shuffle_vector(ys[0], ir.Constant(wide, ir.Undefined), ir.Constant(ir.VectorType(i32, m * run), order))
                dst = builder.gep(y_ptr, [builder.add(o, builder.mul(width, const(a)))])
                builder.store(row, builder.bitcast(dst, wide.as_pointer()), align=4)
            return context.get_dummy_value()
        return sig, codegen
    return out
