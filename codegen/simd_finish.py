"""How a register tile leaves its vector registers: in-register epilogue programs (a bias and
a relu applied before the store) and the transposed store of a swapped tile into its output."""
from __future__ import annotations

# Operations an in-register tile epilogue applies (`outer_product_kernel(epilogue=...)`):
# value = op(value, operand); "rsub" is operand - value.
TILE_EPILOGUE_OPS = ("add", "sub", "rsub", "mul", "max", "min")


def check_tile_epilogue(epilogue) -> int:
    """The number of array operands a tile-epilogue program reads; ValueError if malformed.

    A program is a tuple of steps, applied in order to each value of the finished tile:
    (op, "const", c) with a float c; (op, "row", k, step): operand k read at its offset plus
    step * (tile row), the same for every column; (op, "col", k): operand k read at its
    offset plus the tile column (a contiguous run, one vector per vector of the tile);
    (op, "tile", k, ld): operand k read at its offset plus ld * (tile row) plus the tile
    column, a block laid out like the tile itself (a residual shortcut added to the output)."""
    used = set()
    for st in epilogue:
        if not (isinstance(st, tuple) and len(st) >= 3 and st[0] in TILE_EPILOGUE_OPS):
            raise ValueError(f"tile epilogue step {st!r}: expected (op, kind, ...) with op in {TILE_EPILOGUE_OPS}")
        kind = st[1]
        if kind == "const" and len(st) == 3 and isinstance(st[2], float):
            continue
        if kind == "row" and len(st) == 4 and isinstance(st[2], int) and isinstance(st[3], int) and st[2] >= 0:
            used.add(st[2])
            continue
        if kind == "col" and len(st) == 3 and isinstance(st[2], int) and st[2] >= 0:
            used.add(st[2])
            continue
        if kind == "tile" and len(st) == 4 and all(type(v) is int for v in st[2:]) and st[2] >= 0 and st[3] >= 0:
            used.add(st[2])
            continue
        raise ValueError(f"tile epilogue step {st!r} is not (op, 'const', float), (op, 'row', k, step), "
                         f"(op, 'col', k) or (op, 'tile', k, ld)")
    count = max(used) + 1 if used else 0
    if used != set(range(count)):
        raise ValueError(f"tile epilogue {epilogue!r} skips operand numbers: {sorted(used)}")
    return count


def finish_transposed(builder, finals, mr, nvec, lanes, accumulate, add_to_c, apply, d, c, finish):
    """The end of a transposed_out kernel: C's old values are added (loaded only when they
    count: a swapped tile's C is a scratch nothing else reads, and its misses cost as much as
    the store), then the tile goes through `finish` and transposed into D when `apply`
    holds, or back into C when it does not."""
    from llvmlite import ir
    i64 = ir.IntType(64)
    c_ptr, c_off, ldc = c
    vec = finals[0].type
    ptrs = [[builder.bitcast(builder.gep(c_ptr, [builder.add(builder.add(c_off, builder.mul(ir.Constant(i64, i), ldc)),
                                                            ir.Constant(i64, v * lanes))]), vec.as_pointer())
             for v in range(nvec)] for i in range(mr)]
    values = [finals[i * nvec:(i + 1) * nvec] for i in range(mr)]
    if accumulate is True:
        values = [[builder.fadd(builder.load(ptrs[i][v], align=4), values[i][v]) for v in range(nvec)]
                  for i in range(mr)]
    elif accumulate == "runtime":
        before = builder.block
        with builder.if_then(add_to_c):
            summed = [[builder.fadd(builder.load(ptrs[i][v], align=4), values[i][v]) for v in range(nvec)]
                      for i in range(mr)]
            summed_end = builder.block
        merged = []
        for i in range(mr):
            row = []
            for v in range(nvec):
                phi = builder.phi(vec)
                phi.add_incoming(values[i][v], before)
                phi.add_incoming(summed[i][v], summed_end)
                row.append(phi)
            merged.append(row)
        values = merged
    with builder.if_else(apply) as (to_d, to_c):
        with to_d:
            _transposed_store(builder, [[finish(values[i][v], i, v) for v in range(nvec)] for i in range(mr)],
                              *d, lanes)
        with to_c:
            for i in range(mr):
                for v in range(nvec):
                    builder.store(values[i][v], ptrs[i][v], align=4)


def _transposed_store(builder, tile, d_ptr, d_off, ldd, lanes):
    """D[d_off + (v * lanes + l) * ldd + i] = tile[i][v][l]: each tile column's rows are one
    contiguous run of D, gathered out of the row vectors by a butterfly of two-source
    shuffles (rows in groups of at most 8, padded to a power of two with zeros)."""
    from llvmlite import ir
    from numba.core import cgutils
    i1, i32, i64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
    vec = tile[0][0].type
    zero = ir.Constant(vec, None)
    group = min(lanes, 8)
    for r0 in range(0, len(tile), group):
        count = min(group, len(tile) - r0)
        width = 1 << (count - 1).bit_length()
        for v in range(len(tile[0])):
            rows = [tile[r0 + t][v] for t in range(count)] + [zero] * (width - count)
            for value, lane, position in _butterfly(builder, rows, lanes, width):
                at = builder.add(builder.add(d_off, builder.mul(ir.Constant(i64, v * lanes + lane), ldd)),
                                 ir.Constant(i64, r0))
                ptr = builder.gep(d_ptr, [at])
                if width == 1:
                    builder.store(builder.extract_element(value, ir.Constant(i32, position)), ptr)
                    continue
                piece_type = ir.VectorType(ir.FloatType(), width)
                piece = builder.shuffle_vector(value, ir.Constant(vec, ir.Undefined), ir.Constant(
                    ir.VectorType(i32, width), [position + t for t in range(width)]))
                ptr = builder.bitcast(ptr, piece_type.as_pointer())
                if count == width:
                    builder.store(piece, ptr, align=4)
                    continue
                # A run shorter than its vector (7 rows): a masked store writes only its own.
                store = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), [piece_type, piece_type.as_pointer(), i32,
                                                                    ir.VectorType(i1, width)]),
                    f"llvm.masked.store.v{width}f32.p0")
                mask = ir.Constant(ir.VectorType(i1, width), [int(t < count) for t in range(width)])
                builder.call(store, [piece, ptr, ir.Constant(i32, 4), mask])


def _butterfly(builder, rows, lanes, width):
    """(vector, lane, position) for each lane: the vector holding rows[0..width)[lane] at
    positions position.. position + width - 1. Each level interleaves units of two vectors
    (rows b.. and b + u.. over the same lanes) into units twice as long: log2(width) levels
    of `width` shuffles; 8 rows of 8 lanes take the AVX in-lane 8x8 transpose instead."""
    from llvmlite import ir
    i32 = ir.IntType(32)
    if width == 8 and lanes == 8:
        return [(column, q, 0) for q, column in enumerate(transpose_8x8(builder, rows))]
    # Entries: (first row, lanes in unit order, vector); unit q of a vector holds `unit` rows
    # from the first one, of lane order[q].
    entries = [(t, tuple(range(lanes)), rows[t]) for t in range(width)]
    unit = 1
    while unit < width:
        by_start = {(first, order): value for first, order, value in entries}
        merged = []
        for first, order, value in entries:
            if first % (2 * unit):
                continue
            partner = by_start[(first + unit, order)]
            half = len(order) // 2
            for units in (range(half), range(half, len(order))):
                mask = [p for q in units for p in [q * unit + e for e in range(unit)]
                        + [lanes + q * unit + e for e in range(unit)]]
                merged.append((first, tuple(order[q] for q in units), builder.shuffle_vector(
                    value, partner, ir.Constant(ir.VectorType(i32, lanes), mask))))
        entries, unit = merged, unit * 2
    return [(value, lane, q * width) for _, order, value in entries for q, lane in enumerate(order)]


def _shuffle(builder, a, b, mask):
    from llvmlite import ir
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), len(mask)), mask))


# Shuffle masks over two concatenated <8 x float> (AVX unpacklo/hi, shuffle 0x44/0xEE,
# permute2f128 0x20/0x31): the three stages of an 8x8 transpose.
_UNPACK = ([0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15])
_PAIRS = ([0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15])
_HALVES = ([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15])


def transpose_8x8(builder, rows) -> list:
    """The 8 columns of 8 <8 x float> rows (column q holds rows[r][q] at r): 24 in-lane
    shuffles and cross-lane permutes, each one AVX instruction."""
    t = [_shuffle(builder, rows[2 * (q // 2)], rows[2 * (q // 2) + 1], _UNPACK[q % 2]) for q in range(8)]
    u = []
    for half in (0, 4):
        u += [_shuffle(builder, t[half + a], t[half + 2 + a], _PAIRS[p]) for a in (0, 1) for p in (0, 1)]
    return [_shuffle(builder, u[q % 4], u[q % 4 + 4], _HALVES[q // 4]) for q in range(8)]


def reads_tiles(program) -> bool:
    """Whether a tile-epilogue program reads a block laid out like the tile (kind "tile"):
    loads worth skipping on the k blocks that do not apply it."""
    return any(st[1] == "tile" for st in program)


def tile_epilogue(builder, program, value, i, v, lanes, x_ptrs, x_offs, vload, splat, const):
    """`value` (tile row i, vector v) through an epilogue program, in vector registers."""
    from llvmlite import ir
    from numba.core import cgutils
    vec = value.type
    max_f, min_f = (cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec]),
                                                   f"llvm.{name}.v{lanes}f32") for name in ("maxnum", "minnum"))
    for op, kind, *where in program:
        if kind == "const":
            operand = ir.Constant(vec, [where[0]] * lanes)
        elif kind == "row":
            k, step = where
            at = builder.add(x_offs[k], const(step * i))
            operand = splat(builder.load(builder.gep(x_ptrs[k], [at])))
        elif kind == "tile":
            k, ld = where
            operand = vload(x_ptrs[k], builder.add(x_offs[k], const(ld * i + v * lanes)))
        else:
            operand = vload(x_ptrs[where[0]], builder.add(x_offs[where[0]], const(v * lanes)))
        if op == "add":
            value = builder.fadd(value, operand)
        elif op == "sub":
            value = builder.fsub(value, operand)
        elif op == "rsub":
            value = builder.fsub(operand, value)
        elif op == "mul":
            value = builder.fmul(value, operand)
        else:
            value = builder.call(max_f if op == "max" else min_f, [value, operand])
    return value
