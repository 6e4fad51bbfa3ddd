"""Explicit LLVM vector code for Numba: register micro-kernels and the FMA peak probe.

LLVM left to itself vectorizes a register tile along the reduction axis and gathers the
other operand; emitting `<lanes x float>` loads, broadcasts and `llvm.fma` directly keeps a
whole mr x (nvec * lanes) tile of C in vector registers for the full reduction.
"""
from __future__ import annotations

import functools

from .simd_finish import check_tile_epilogue, finish_transposed, reads_tiles, tile_epilogue, transpose_8x8

# Vector registers an x86-64 AVX2 core has; a tile larger than this spills.
VECTOR_REGISTERS = 16


def _require_float32(what: str, **arrays) -> None:
    """Typing-time check of an intrinsic's array arguments."""
    from numba import types
    for name, arr in arrays.items():
        if not (isinstance(arr, types.Array) and arr.dtype == types.float32):
            raise TypeError(f"{what}: {name} must be a float32 array, got {arr}")


@functools.lru_cache(maxsize=64)
def outer_product_kernel(mr: int, nvec: int, lanes: int = 8, accumulate=True, direct: bool = False,
                         epilogue: tuple | None = None, transposed_out: bool = False, b_strided: bool = False):
    """A Numba intrinsic `kernel(a, a_off, b, b_off, c, c_off, ldc, kc)` for float32 arrays:

        C[i, j] += sum_k A[k, i] * B[k, j]   for i < mr, j < nvec * lanes
        (C[i, j] = ... when accumulate is False: C's old values are ignored)

    accumulate="runtime" adds an argument, a flag choosing between the two per call.

    where A is a packed panel (a[a_off + k * mr + i]), B is a packed panel
    (b[b_off + k * nr + j], nr = nvec * lanes) and C is row-major with row stride ldc
    starting at c_off. C may have any number of dimensions: it is addressed as its flat,
    C-contiguous data. Callable only from @njit code. kc <= 0 adds nothing.

    direct=True reads A unpacked, wherever its rows and k steps lie, through two int64
    tables: `kernel(a, a_off, rows, ks, ks_off, b, b_off, c, c_off, ldc, kc)` takes
    A[k, i] = a[a_off + rows[i] + ks[ks_off + k]] (a convolution's pixels read straight from
    its padded input: rows[i] is pixel i's offset, ks[k] the offset of filter tap k).

    epilogue (a program, see check_tile_epilogue) adds the arguments `apply, x0, x0_off,
    x1, x1_off, ...` after all others: when `apply` is true, the finished values (after
    adding C's old ones) go through the program before they are stored, while the tile is
    still in registers (a bias and a relu on the last k block).

    transposed_out=True (with an epilogue program, which may be empty) adds `d, d_off, ldd`
    right after `apply`: when `apply` is true the finished tile is stored transposed,
    D[d_off + j * ldd + i] for tile row i and column j, instead of into C (a swapped tile,
    filters on the lanes and pixels on the rows, written straight to an NCHW output); when
    it is false the tile goes to C as usual.

    b_strided=True adds a last argument `ldb`: B is read in place, b[b_off + k * ldb + j],
    instead of from a packed panel (a batch matmul's B, row-major along the columns).
    """
    if accumulate not in (True, False, "runtime"):
        raise ValueError(f"outer_product_kernel: accumulate must be True, False or 'runtime', got {accumulate!r}")
    if mr < 1 or nvec < 1 or lanes not in (4, 8, 16):
        raise ValueError(f"outer_product_kernel: mr={mr}, nvec={nvec}, lanes={lanes} is not a register tile")
    operands = check_tile_epilogue(epilogue) if epilogue is not None else 0
    if transposed_out and epilogue is None:
        raise ValueError("outer_product_kernel: transposed_out needs an epilogue program (an empty one will do)")
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
    nr = nvec * lanes
    tables = 3 if direct else 0
    flagged = 1 if accumulate == "runtime" else 0
    out_args = 3 if transposed_out else 0
    arity = 8 + tables + flagged + ((1 + out_args + 2 * operands) if epilogue is not None else 0) \
        + (1 if b_strided else 0)

    def typing(arg_types):
        if len(arg_types) != arity:
            raise TypeError(f"outer-product kernel {mr}x{nvec}x{lanes}: {len(arg_types)} arguments, "
                            f"expected {arity}")
        a, b, c = arg_types[0], arg_types[2 + tables], arg_types[4 + tables]
        _require_float32("outer-product kernel", a=a, b=b, c=c)
        if direct and not all(isinstance(t, types.Array) and t.dtype == types.int64 for t in arg_types[2:4]):
            raise TypeError(f"outer-product kernel: row and k tables must be int64 arrays, got {arg_types[2:4]}")
        first_operand = 9 + tables + flagged + out_args
        if transposed_out:
            _require_float32("outer-product kernel", d=arg_types[9 + tables + flagged])
        _require_float32("outer-product kernel epilogue",
                         **{f"x{k}": arg_types[first_operand + 2 * k] for k in range(operands)})
        sig = types.void(types.StarArgTuple(arg_types))

        def codegen(context, builder, signature, packed_args):
            arg_types = signature.args[0].types
            args = cgutils.unpack_tuple(builder, packed_args[0])
            i32, i64 = ir.IntType(32), ir.IntType(64)
            vec = ir.VectorType(ir.FloatType(), lanes)

            def data(i):
                return context.make_array(arg_types[i])(context, builder, args[i]).data

            def int_arg(i):
                return context.cast(builder, args[i], arg_types[i], types.int64)

            a_ptr, b_ptr, c_ptr = data(0), data(2 + tables), data(4 + tables)
            a_off, b_off, c_off, ldc, kc = (int_arg(i) for i in (1, 3 + tables, 5 + tables, 6 + tables, 7 + tables))
            ldb = int_arg(arity - 1) if b_strided else None
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                                 f"llvm.fma.v{lanes}f32")
            zero, undef = ir.Constant(vec, None), ir.Constant(vec, ir.Undefined)
            splat_mask = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)

            def const(v):
                return ir.Constant(i64, v)

            def vload(ptr, index):
                return builder.load(builder.bitcast(builder.gep(ptr, [index]), vec.as_pointer()), align=4)

            def splat(scalar):
                return builder.shuffle_vector(builder.insert_element(undef, scalar, ir.Constant(i32, 0)),
                                              undef, splat_mask)

            if direct:
                # Each row's base pointer is fixed for the call; a k step adds one offset.
                rows_ptr, ks_ptr = data(2), data(3)
                ks_off = int_arg(4)
                row_bases = [builder.gep(a_ptr, [builder.add(a_off, builder.load(builder.gep(rows_ptr, [const(i)])))])
                             for i in range(mr)]
            entry = builder.block
            loop = builder.append_basic_block("outer_product.loop")
            done = builder.append_basic_block("outer_product.done")
            builder.cbranch(builder.icmp_signed(">", kc, const(0)), loop, done)

            builder.position_at_end(loop)
            k = builder.phi(i64)
            acc = [[builder.phi(vec) for _ in range(nvec)] for _ in range(mr)]
            b_row = builder.add(b_off, builder.mul(k, ldb if b_strided else const(nr)))
            b_vecs = [vload(b_ptr, builder.add(b_row, const(v * lanes))) for v in range(nvec)]
            if direct:
                k_at = builder.load(builder.gep(ks_ptr, [builder.add(ks_off, k)]))
                a_at = [builder.gep(row_bases[i], [k_at]) for i in range(mr)]
            else:
                a_row = builder.add(a_off, builder.mul(k, const(mr)))
                a_at = [builder.gep(a_ptr, [builder.add(a_row, const(i))]) for i in range(mr)]
            updated = []
            for i in range(mr):
                broadcast = splat(builder.load(a_at[i]))
                updated.append([builder.call(fma, [broadcast, b_vecs[v], acc[i][v]]) for v in range(nvec)])
            k_next = builder.add(k, const(1))
            body_end = builder.block
            builder.cbranch(builder.icmp_signed("<", k_next, kc), loop, done)
            k.add_incoming(const(0), entry)
            k.add_incoming(k_next, body_end)
            for i in range(mr):
                for v in range(nvec):
                    acc[i][v].add_incoming(zero, entry)
                    acc[i][v].add_incoming(updated[i][v], body_end)

            builder.position_at_end(done)
            finals = []  # LLVM wants every phi of a block before its other instructions
            for i in range(mr):
                for v in range(nvec):
                    phi = builder.phi(vec)
                    phi.add_incoming(zero, entry)
                    phi.add_incoming(updated[i][v], body_end)
                    finals.append(phi)
            if accumulate == "runtime":
                add_to_c = context.cast(builder, args[8 + tables], arg_types[8 + tables], types.boolean)
            if epilogue is not None:
                at = 8 + tables + flagged
                apply = context.cast(builder, args[at], arg_types[at], types.boolean)
                x_ptrs = [data(at + 1 + out_args + 2 * q) for q in range(operands)]
                x_offs = [int_arg(at + 2 + out_args + 2 * q) for q in range(operands)]
            if transposed_out:
                finish_transposed(builder, finals, mr, nvec, lanes, accumulate,
                                  add_to_c if accumulate == "runtime" else None, apply,
                                  (data(at + 1), int_arg(at + 2), int_arg(at + 3)), (c_ptr, c_off, ldc),
                                  lambda value, i, v: tile_epilogue(builder, epilogue, value, i, v, lanes,
                                                                    x_ptrs, x_offs, vload, splat, const))
                return context.get_dummy_value()

            def store_tile(finish):
                for i in range(mr):
                    row = builder.add(c_off, builder.mul(const(i), ldc))
                    for v in range(nvec):
                        ptr = builder.bitcast(builder.gep(c_ptr, [builder.add(row, const(v * lanes))]),
                                              vec.as_pointer())
                        value = finals[i * nvec + v]
                        if accumulate == "runtime":
                            value = builder.select(add_to_c, builder.fadd(builder.load(ptr, align=4), value), value)
                        elif accumulate:
                            value = builder.fadd(builder.load(ptr, align=4), value)
                        builder.store(finish(value, i, v), ptr, align=4)

            def finished(value, i, v):
                return tile_epilogue(builder, epilogue, value, i, v, lanes, x_ptrs, x_offs, vload, splat, const)

            def unchanged(value, i, v):
                return value

            if epilogue is not None and reads_tiles(epilogue):
                # A block read like the tile (a shortcut) costs a load per vector: only the
                # k block that applies the program reads it.
                with builder.if_else(apply) as (to_finish, to_store):
                    with to_finish:
                        store_tile(finished)
                    with to_store:
                        store_tile(unchanged)
            elif epilogue is not None:
                store_tile(lambda value, i, v: builder.select(apply, finished(value, i, v), value))
            else:
                store_tile(unchanged)
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def kernel(typingctx, *arg_types):
        return typing(arg_types)
    return kernel


@functools.lru_cache(maxsize=64)
def vector_copy(count: int, lanes: int = 8, stride: int = 1, masked: bool = False):
    """A Numba intrinsic `copy(dst, dst_off, src, src_off)` for float32 arrays addressed as
    flat C-contiguous data: dst[dst_off + t] = src[src_off + t * stride] for t < count, as
    unaligned `<lanes x float>` loads and stores (scalars for a tail). Packing a panel row
    this way leaves no index arithmetic per value. At a stride above 1, each output vector
    is picked by shuffles out of the vectors covering its span of the source, the last of
    them ending at the span's last value, so no load reads past it.

    masked=True takes a fifth argument `length` <= count and copies only t < length (a run
    of a panel row that ends where a row of the image does), with masked vector loads and
    stores that touch nothing past it. Callable only from @njit code."""
    if count < 1 or lanes not in (4, 8, 16) or stride < 1:
        raise ValueError(f"vector_copy: count={count}, lanes={lanes}, stride={stride}, "
                         f"masked={masked} is not a copy")
    if masked:
        return _masked_copy(count, lanes, stride)
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def copy(typingctx, dst, dst_off, src, src_off):
        _require_float32("vector copy", dst=dst, src=src)
        sig = types.void(dst, dst_off, src, src_off)

        def codegen(context, builder, signature, args):
            i32, i64 = ir.IntType(32), ir.IntType(64)
            vec = ir.VectorType(ir.FloatType(), lanes)
            d_ptr, s_ptr = (context.make_array(signature.args[i])(context, builder, args[i]).data
                            for i in (0, 2))
            d_off, s_off = (context.cast(builder, args[i], signature.args[i], types.int64) for i in (1, 3))

            def load_vec(at):
                src = builder.gep(s_ptr, [builder.add(s_off, ir.Constant(i64, at))])
                return builder.load(builder.bitcast(src, vec.as_pointer()), align=4)

            loads = []
            for t in range(0, count - count % lanes, lanes):
                if stride == 1:
                    loads.append((t, load_vec(t)))
                else:
                    loads.append((t, _strided_vector(builder, load_vec, t * stride, stride, lanes, i32)))
            for t in range(count - count % lanes, count):
                src = builder.gep(s_ptr, [builder.add(s_off, ir.Constant(i64, t * stride))])
                loads.append((t, builder.load(src)))
            for t, value in loads:  # all loads first: dst and src never overlap here
                dst = builder.gep(d_ptr, [builder.add(d_off, ir.Constant(i64, t))])
                if isinstance(value.type, ir.VectorType):
                    dst = builder.bitcast(dst, vec.as_pointer())
                builder.store(value, dst, align=4)
            return context.get_dummy_value()
        return sig, codegen
    return copy


def _masked_copy(count: int, lanes: int, stride: int = 1):
    """vector_copy(count, lanes, stride, masked=True): `copy(dst, dst_off, src, src_off,
    length)`. At a stride above 1, each output vector is shuffled out of masked loads of its
    span, which read nothing past the run's last value (src_off + (length - 1) * stride)."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def copy(typingctx, dst, dst_off, src, src_off, length):
        _require_float32("vector copy", dst=dst, src=src)
        sig = types.void(dst, dst_off, src, src_off, length)

        def codegen(context, builder, signature, args):
            i1, i32, i64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
            vec, index_vec, mask_type = ir.VectorType(ir.FloatType(), lanes), ir.VectorType(i64, lanes), \
                ir.VectorType(i1, lanes)
            ptr = vec.as_pointer()
            d_ptr, s_ptr = (context.make_array(signature.args[i])(context, builder, args[i]).data
                            for i in (0, 2))
            d_off, s_off, n = (context.cast(builder, args[i], signature.args[i], types.int64) for i in (1, 3, 4))
            load = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [ptr, i32, mask_type, vec]), f"llvm.masked.load.v{lanes}f32.p0")
            store = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [vec, ptr, i32, mask_type]),
                f"llvm.masked.store.v{lanes}f32.p0")
            undef = ir.Constant(index_vec, ir.Undefined)

            def splat(value):
                return builder.shuffle_vector(builder.insert_element(undef, value, ir.Constant(i32, 0)), undef,
                                              ir.Constant(ir.VectorType(i32, lanes), [0] * lanes))
            n_splat = splat(n)
            # Source values the run reads: (n - 1) * stride + 1 of them (none when n is 0).
            src_end = splat(builder.select(builder.icmp_signed(">", n, ir.Constant(i64, 0)),
                                           builder.add(builder.mul(builder.sub(n, ir.Constant(i64, 1)),
                                                                   ir.Constant(i64, stride)), ir.Constant(i64, 1)),
                                           ir.Constant(i64, 0)))
            align = ir.Constant(i32, 4)

            def masked_load(at):
                mask = builder.icmp_signed("<", ir.Constant(index_vec, [at + lane for lane in range(lanes)]), src_end)
                src = builder.bitcast(builder.gep(s_ptr, [builder.add(s_off, ir.Constant(i64, at))]), ptr)
                return builder.call(load, [src, align, mask, ir.Constant(vec, None)])

            for t in range(0, count, lanes):
                mask = builder.icmp_signed("<", ir.Constant(index_vec, [t + lane for lane in range(lanes)]), n_splat)
                dst = builder.bitcast(builder.gep(d_ptr, [builder.add(d_off, ir.Constant(i64, t))]), ptr)
                value = masked_load(t) if stride == 1 else \
                    _strided_vector(builder, masked_load, t * stride, stride, lanes, i32)
                builder.call(store, [value, dst, align, mask])
            return context.get_dummy_value()
        return sig, codegen
    return copy


def _strided_vector(builder, load_vec, start: int, stride: int, lanes: int, i32):
    """The vector of src[start + l * stride] for l < lanes, shuffled out of whole-vector
    loads covering [start, start + (lanes - 1) * stride]; the last load is moved back to end
    on that span's last value instead of reading past it."""
    from llvmlite import ir
    span = (lanes - 1) * stride + 1
    chunks = -(-span // lanes)
    starts = [c * lanes for c in range(chunks - 1)] + [span - lanes]
    vectors = [load_vec(start + s) for s in starts]
    where = []  # (chunk, position) of each wanted value; later chunks win an overlap
    for lane in range(lanes):
        e = lane * stride
        c = max(k for k, s in enumerate(starts) if s <= e < s + lanes)
        where.append((c, e - starts[c]))
    # Concatenate the chunks pairwise (padding to a power of two with undef) so one final
    # shuffle can pick the lanes; LLVM lowers the tree to the target's permutes.
    width = 1
    while width < chunks:
        width *= 2
    undef = ir.Constant(vectors[0].type, ir.Undefined)
    level = vectors + [undef] * (width - chunks)
    size = lanes
    while len(level) > 1:
        mask = ir.Constant(ir.VectorType(i32, 2 * size), list(range(2 * size)))
        level = [builder.shuffle_vector(level[k], level[k + 1], mask) for k in range(0, len(level), 2)]
        size *= 2
    pick = ir.Constant(ir.VectorType(i32, lanes), [c * lanes + p for c, p in where])
    return builder.shuffle_vector(level[0], ir.Constant(level[0].type, ir.Undefined), pick)


@functools.lru_cache(maxsize=16)
def transpose_copy(width: int):
    """A Numba intrinsic `copy(dst, dst_off, src, src_off, ld, kc)` for float32 arrays in flat
    C-contiguous addressing: dst[dst_off + k*width + t] = src[src_off + t*ld + k] for
    t < width and k < kc rounded down to a multiple of 8. Each 8x8 block is 8 vector loads,
    24 shuffles and 8 vector stores, instead of 64 scalar loads from 8 strided rows."""
    if width < 8 or width % 8:
        raise ValueError(f"transpose_copy: width={width} must be a positive multiple of 8")
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def copy(typingctx, dst, dst_off, src, src_off, ld, kc):
        _require_float32("transpose copy", dst=dst, src=src)
        sig = types.void(dst, dst_off, src, src_off, ld, kc)

        def codegen(context, builder, signature, args):
            i64 = ir.IntType(64)
            vec = ir.VectorType(ir.FloatType(), 8)
            d_ptr, s_ptr = (context.make_array(signature.args[i])(context, builder, args[i]).data
                            for i in (0, 2))
            d_off, s_off, ld_, kc_ = (context.cast(builder, args[i], signature.args[i], types.int64)
                                      for i in (1, 3, 4, 5))
            blocks = builder.sdiv(kc_, ir.Constant(i64, 8))

            def at(ptr, offset):
                return builder.bitcast(builder.gep(ptr, [offset]), vec.as_pointer())

            entry = builder.block
            loop = builder.append_basic_block("transpose_copy.loop")
            done = builder.append_basic_block("transpose_copy.done")
            builder.cbranch(builder.icmp_signed(">", blocks, ir.Constant(i64, 0)), loop, done)
            builder.position_at_end(loop)
            kb = builder.phi(i64)
            k0 = builder.mul(kb, ir.Constant(i64, 8))
            for g in range(width // 8):
                rows = []
                for r in range(8):
                    off = builder.add(builder.add(s_off, builder.mul(ir.Constant(i64, g * 8 + r), ld_)), k0)
                    rows.append(builder.load(at(s_ptr, off), align=4))
                out = transpose_8x8(builder, rows)
                for q in range(8):  # out[q] holds k = k0 + q for the 8 rows of group g
                    off = builder.add(builder.add(d_off, builder.mul(builder.add(k0, ir.Constant(i64, q)),
                                                                     ir.Constant(i64, width))),
                                      ir.Constant(i64, g * 8))
                    builder.store(out[q], at(d_ptr, off), align=4)
            kb_next = builder.add(kb, ir.Constant(i64, 1))
            body_end = builder.block
            builder.cbranch(builder.icmp_signed("<", kb_next, blocks), loop, done)
            kb.add_incoming(ir.Constant(i64, 0), entry)
            kb.add_incoming(kb_next, body_end)
            builder.position_at_end(done)
            return context.get_dummy_value()
        return sig, codegen
    return copy


@functools.lru_cache(maxsize=8)
def fma_probe(lanes: int = 8, chains: int = 12):
    """An @njit function `probe(iterations) -> float` doing iterations * chains * lanes FMAs
    in independent register chains, with no memory traffic: the core's fp32 FMA peak."""
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def chains_of_fma(typingctx, iterations):
        sig = types.float32(iterations)

        def codegen(context, builder, signature, args):
            i64 = ir.IntType(64)
            vec = ir.VectorType(ir.FloatType(), lanes)
            n = context.cast(builder, args[0], signature.args[0], types.int64)
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                                 f"llvm.fma.v{lanes}f32")
            mul = ir.Constant(vec, [0.999999] * lanes)
            add = ir.Constant(vec, [1e-7] * lanes)
            entry = builder.block
            loop = builder.append_basic_block("fma_probe.loop")
            done = builder.append_basic_block("fma_probe.done")
            builder.cbranch(builder.icmp_signed(">", n, ir.Constant(i64, 0)), loop, done)
            builder.position_at_end(loop)
            i = builder.phi(i64)
            xs = [builder.phi(vec) for _ in range(chains)]
            ys = [builder.call(fma, [x, mul, add]) for x in xs]
            i_next = builder.add(i, ir.Constant(i64, 1))
            body_end = builder.block
            builder.cbranch(builder.icmp_signed("<", i_next, n), loop, done)
            i.add_incoming(ir.Constant(i64, 0), entry)
            i.add_incoming(i_next, body_end)
            for c, (x, y) in enumerate(zip(xs, ys)):
                x.add_incoming(ir.Constant(vec, [1.0 + c] * lanes), entry)
                x.add_incoming(y, body_end)
            builder.position_at_end(done)
            outs = []
            for c, y in enumerate(ys):
                phi = builder.phi(vec)
                phi.add_incoming(ir.Constant(vec, [1.0 + c] * lanes), entry)
                phi.add_incoming(y, body_end)
                outs.append(phi)
            total = outs[0]
            for o in outs[1:]:
                total = builder.fadd(total, o)
            return builder.extract_element(total, ir.Constant(ir.IntType(32), 0))

        return sig, codegen

    @njit(nogil=True)
    def probe(iterations):
        return chains_of_fma(iterations)

    return probe
