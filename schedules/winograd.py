"""Lowering of a Winograd F(m x m, 3x3) convolution to a LoopNest of five parallel steps."""
from __future__ import annotations

from .expr import Binary, Const, Load, Unary, Var, rebuild
from .loopnest import (Allocate, Assign, Buffer, For, If, LoopNest, MicroKernel, Scalar, Store,
                       WinogradInput, WinogradOutput, add, ceildiv, floordiv, minimum, mod, mul, sub)
from .winograd_match import TileGeometry, WinogradPlan
from .winograd_matrices import TRANSFORMS

# Output rows go through the vector transform in runs of this many tiles, the widest whose
# m * run values fit a row of whole tiles and 64 floats.
RUNS = (16, 8, 4)
# Pixels the pad step copies per channel before moving on: reads stay within a few lines.
PAD_CHUNK = 8


def lower_winograd(sch, plan: WinogradPlan, constants=frozenset()) -> LoopNest:
    """Steps, each a parallel loop (the pool runs them one after another):
      1. U = G w G^T for every (k, c), packed as the GEMMs' column panels; run once by
         Kernel.bind when the weight is a constant;
      2. the input padded by one pixel, channels last (xt), one job per padded row of an image;
      3. V = B^T d B for every m x m tile's (m+2)^2 patch, a vector of channels at a time, one
         job per row of tiles of an image;
      4. (m+2)^2 GEMMs M[xi] = V[xi] (tiles x C) @ U[xi] (C x K) on the micro-kernel, reading
         V unpacked and storing each register tile transposed (M is K x tiles);
      5. y = act(A^T M A + bias) for runs of tiles at once, straight into the NCHW output.
    The tiles of a batch are numbered image by image, so the GEMMs see one long tile axis."""
    op, conv, g = sch.op, plan.conv, plan.geometry
    P = g.alpha * g.alpha
    inputs = tuple(Buffer(t.name, t.shape, t.dtype, "global", "input") for t in op.inputs)
    out = op.outputs[0]
    output = Buffer(out.name, out.shape, out.dtype, "global", "output")
    u = Buffer("wino_u", (P * g.Kp * g.C,), "float32", "global", "temp")
    xt = Buffer("wino_x", (g.N * g.Hp * g.Wp * g.C,), "float32", "global", "temp")
    v = Buffer("wino_v", (P * g.SV,), "float32", "global", "temp")
    mt = Buffer("wino_mt", (P * g.SM,), "float32", "global", "temp")
    data, weight = inputs[conv.data], inputs[conv.weight]
    bias = None if conv.bias is None else inputs[conv.bias]
    by_tiles = plan.by_tiles()
    body = (_weight_step(weight, u, g),
            _pad_step(data, xt, g),
            _input_step(xt, v, plan.lanes, g),
            _gemm_step(v, u, mt, plan, by_tiles, g),
            _output_step(mt, output, bias, conv.relu, by_tiles, g, _finisher(conv.finish, op, inputs)))
    split = "tiles" if by_tiles else "planes"
    batch = f"{g.N} images of " if g.N > 1 else ""
    notes = (f"winograd F({g.m}x{g.m}, 3x3): {batch}{g.th}x{g.tw} tiles padded to {g.Tp}, K padded to {g.Kp}, "
             f"GEMM tile {g.rows}x{g.nr}, split by {split}",)
    weight_name = op.inputs[conv.weight].name
    prepacked = ((weight_name, u),) if weight_name in constants else ()
    # Every runtime knob stays a kernel argument, unused here, so the argument block keeps its layout.
    params = tuple(p for p, _ in sch.params)
    return LoopNest(op.name, inputs, (output,), (u, xt, v, mt), params, body, notes, prepacked)


def _loop(name: str, extent, kind: str, body) -> tuple:
    var = Var(name, None, "loop")
    return var, For(var, extent if not isinstance(extent, int) else Const(extent, "int64"), kind, tuple(body(var)))


def _combination(coefficients, terms):
    """sum_i coefficients[i] * terms[i] as an Expr: zeros skipped, +-1 as adds."""
    total = None
    for coef, term in zip(coefficients, terms):
        if coef == 0:
            continue
        scaled = term if coef in (1, -1) else Binary("mul", term, Const(coef, "float32"))
        if total is None:
            total = scaled if coef != -1 else Binary("mul", term, Const(-1.0, "float32"))
        else:
            total = Binary("sub" if coef == -1 else "add", total, scaled)
    return total if total is not None else Const(0.0, "float32")


def _scalars(prefix: str, values) -> tuple:
    """Assignments of each value to a fresh float32 Scalar, and the Scalars."""
    names = [Scalar(f"{prefix}{k}", "float32") for k in range(len(values))]
    return [Assign(s, value) for s, value in zip(names, values)], names


def _weight_step(weight, u, g: TileGeometry) -> For:
    """U[xi][k // nr][c][k % nr] = (G w[k, c] G^T)[xi], zero for the padding columns k >= K."""
    gm = TRANSFORMS[g.m][1]
    alpha, C, K, Kp = g.alpha, g.C, g.K, g.Kp

    def per_column(k):
        def per_channel(c):
            loads, w = _scalars("w_", [Load(weight, (k, c, Const(r, "int64"), Const(s, "int64")))
                                       for r in range(3) for s in range(3)])
            stores = []
            for xi in range(alpha * alpha):
                a, b = divmod(xi, alpha)
                coefficients = [gm[a, r] * gm[b, s] for r in range(3) for s in range(3)]
                stores.append(Store(u, (_u_offset(xi, k, c, g),), _combination(coefficients, w)))
            zeros = [Store(u, (_u_offset(xi, k, c, g),), Const(0.0, "float32")) for xi in range(alpha * alpha)]
            return [If(Binary("lt", k, Const(K, "int64")), tuple(loads + stores)),
                    If(Binary("ge", k, Const(K, "int64")), tuple(zeros))]
        return [_loop("c", C, "serial", per_channel)[1]]
    return _loop("k", Kp, "parallel", per_column)[1]


def _u_offset(xi: int, k, c, g: TileGeometry):
    C, Kp, nr = g.C, g.Kp, g.nr
    panel = add(xi * (Kp // nr), floordiv(k, nr))
    return add(mul(add(mul(panel, C), c), nr), mod(k, nr))


def _pad_step(data, xt, g: TileGeometry) -> For:
    """xt[n, hp, wp, c] = x[n, c, hp - 1, wp - 1], zero outside the image."""
    C, H, W, Hp, Wp = g.C, g.H, g.W, g.Hp, g.Wp

    def at(row, wp, c):
        return add(mul(add(mul(row, Wp), wp), C), c)

    def per_row(row):
        # row = n * Hp + hp: xt's rows of all images in one sequence
        zero = Const(0.0, "float32")
        n, hp, h = Var("n", None, "index"), Var("hp", None, "index"), Var("h", None, "index")
        blank = _loop("i", Wp * C, "serial", lambda i: [Store(xt, (add(mul(row, Wp * C), i),), zero)])[1]
        left = _loop("c", C, "serial", lambda c: [Store(xt, (at(row, 0, c),), zero)])[1]
        right = _loop("i", (Wp - W - 1) * C, "serial",
                      lambda i: [Store(xt, (add(at(row, W + 1, 0), i),), zero)])[1]

        def per_chunk(w0):
            def per_channel(c):
                def per_pixel(wi):
                    w = add(mul(w0, PAD_CHUNK), wi)
                    return [Store(xt, (at(row, add(w, 1), c),), Load(data, (n, c, h, w)))]
                return [_loop("wi", minimum(PAD_CHUNK, sub(W, mul(w0, PAD_CHUNK))), "serial", per_pixel)[1]]
            return [_loop("c", C, "serial", per_channel)[1]]
        copy = _loop("w0", ceildiv(W, PAD_CHUNK), "serial", per_chunk)[1]
        inside = Binary("and", Binary("ge", hp, Const(1, "int64")), Binary("le", hp, Const(H, "int64")))
        return [Assign(n, floordiv(row, Hp)), Assign(hp, mod(row, Hp)),
                If(Unary("not", inside), (blank,)), If(inside, (Assign(h, sub(hp, 1)), left, right, copy))]
    return _loop("row", g.N * Hp, "parallel", per_row)[1]


def _input_step(xt, v, lanes: int, g: TileGeometry) -> For:
    """V[xi, t*C + c] = (B^T d B)[xi] for tile t's patch d of channel c: whole vectors of
    channels by the intrinsic, the channels past the last vector in scalar code."""
    bt = TRANSFORMS[g.m][0]
    m, alpha, C, th, tw, Hp, Wp, SV, Tp = g.m, g.alpha, g.C, g.th, g.tw, g.Hp, g.Wp, g.SV, g.Tp
    whole = C - C % lanes

    def per_row(row):
        # row = n * th + ty, and the row's first tile is row * tw
        top = Var("top", None, "index")

        def per_tile(tx):
            t = Var("t", None, "index")
            corner = mul(add(mul(top, Wp), mul(tx, m)), C)
            stmts = [Assign(t, add(mul(row, tw), tx))]
            if whole:
                stmts.append(_loop("cv", whole // lanes, "serial", lambda cv: [WinogradInput(
                    m, lanes, v, add(mul(t, C), mul(cv, lanes)), Const(SV, "int64"), xt,
                    add(corner, mul(cv, lanes)), Const(Wp * C, "int64"), Const(C, "int64"))])[1])
            if C % lanes:
                def per_channel(cr):
                    c = add(cr, whole)
                    loads, d = _scalars("d_", [Load(xt, (add(add(corner, c), (i * Wp + j) * C),))
                                               for i in range(alpha) for j in range(alpha)])
                    stores = []
                    for xi in range(alpha * alpha):
                        p, q = divmod(xi, alpha)
                        coefficients = [bt[p, i] * bt[q, j] for i in range(alpha) for j in range(alpha)]
                        stores.append(Store(v, (add(Const(xi * SV, "int64"), add(mul(t, C), c)),),
                                            _combination(coefficients, d)))
                    return loads + stores
                stmts.append(_loop("cr", C % lanes, "serial", per_channel)[1])
            return stmts
        # The padded input's top row of this row of tiles: image n's row ty * m.
        stmts = [Assign(top, add(mul(floordiv(row, th), Hp), mul(mod(row, th), m))),
                 _loop("tx", tw, "serial", per_tile)[1]]
        if Tp > g.tiles:
            # The GEMMs' last row tile reads V rows past the last tile; zeros there keep
            # garbage (denormals, NaN) out of the FMAs. Their results land in M's padding.
            pad_rows = (Tp - g.tiles) * C
            stmts.append(If(Binary("eq", row, Const(g.N * th - 1, "int64")), (_loop(
                "xi", alpha * alpha, "serial", lambda xi: [_loop("i", pad_rows, "serial", lambda i: [Store(
                    v, (add(add(mul(xi, SV), g.tiles * C), i),), Const(0.0, "float32"))])[1]])[1],)))
        return stmts
    return _loop("row", g.N * th, "parallel", per_row)[1]


def _gemm_step(v, u, mt, plan: WinogradPlan, by_tiles: bool, g: TileGeometry) -> For:
    """One job per (tile panel, xi): rows*vecs*lanes register tiles over all K panels."""
    C, P, Tp, Kp, nr, SV, SM = g.C, g.alpha ** 2, g.Tp, g.Kp, g.nr, g.SV, g.SM
    mr = plan.rows
    panels = Tp // mr
    rows = Buffer("wino_rows", (mr,), "int64", "local", "local")
    ks = Buffer("wino_ks", (C,), "int64", "local", "local")
    flops = 2 * P * Tp * Kp * C

    def per_job(job):
        p, xi = Var("panel", None, "index"), Var("xi", None, "index")
        decode = ([Assign(p, floordiv(job, P)), Assign(xi, mod(job, P))] if by_tiles
                  else [Assign(xi, floordiv(job, panels)), Assign(p, mod(job, panels))])
        fill_ks = _loop("k", C, "serial", lambda k: [Store(ks, (k,), k)])[1]
        fill_rows = _loop("i", mr, "serial", lambda i: [Store(rows, (i,), mul(add(mul(p, mr), i), C))])[1]
        # Rows past the last tile read V's zeroed padding rows and land in M's padding
        # columns, never read.
        tiles = _loop("jp", Kp // nr, "serial", lambda jp: [MicroKernel(
            v, mul(xi, SV), u, mul(add(mul(xi, Kp // nr), jp), nr * C), mt, Const(0, "int64"),
            Const(nr, "int64"), Const(C, "int64"), mr, plan.vecs, plan.lanes, False, total_flops=flops,
            a_rows=rows, a_ks=ks, a_ks_off=Const(0, "int64"), epilogue=(), apply=Const(True, "bool"),
            transposed_out=mt, transposed_off=add(add(mul(xi, SM), mul(jp, nr * Tp)), mul(p, mr)),
            transposed_ld=Const(Tp, "int64"))])[1]
        return decode + [fill_ks, fill_rows, tiles]
    _, loop = _loop("job", P * panels, "parallel", per_job)
    return For(loop.var, loop.extent, loop.kind, (Allocate(rows), Allocate(ks)) + loop.body)


def _finisher(finish, op, inputs):
    """None, or for an ElementwiseFinish a function (conv value, n, k, h, w) -> the
    epilogue's value there, reading the kernel's input buffers."""
    if finish is None:
        return None
    buffers = {id(t): b for t, b in zip(op.inputs, inputs)}

    def value(acc, n, k, h, w):
        at = dict(zip((id(a) for a in finish.axes), (n, k, h, w)))

        def swap(node):
            if isinstance(node, Var):
                return at.get(id(node))
            if isinstance(node, Load):
                return acc if node.tensor is finish.acc else Load(buffers[id(node.tensor)], node.indices)
            return None
        return rebuild(finish.body, swap)
    return value


def _output_step(mt, output, bias, relu: bool, by_tiles: bool, g: TileGeometry, finish=None) -> For:
    """One job per (output channel, row of tiles of an image): runs of whole tiles by the
    intrinsic, the tiles at the right and bottom edges in scalar code. An epilogue other
    than bias and relu (`finish`, see _finisher) is applied to each run in place once the
    intrinsic has stored it, and to edge tiles as they are computed."""
    at_ = TRANSFORMS[g.m][2]
    m, alpha, H, W, K, th, tw, Tp, SM = g.m, g.alpha, g.H, g.W, g.K, g.th, g.tw, g.Tp, g.SM
    rows_of_tiles = g.N * th
    full = W // m
    run = next((r for r in RUNS if r <= full and m * r <= 64), 0)

    def per_job(job):
        row, n, ty, k = (Var("row", None, "index"), Var("n", None, "index"), Var("ty", None, "index"),
                         Var("kk", None, "index"))
        b, base, o, done = (Scalar("b", "float32"), Var("base", None, "index"), Var("o", None, "index"),
                            Var("done", None, "index"))
        stmts = [Assign(row, floordiv(job, K)), Assign(k, mod(job, K))] if by_tiles else \
            [Assign(k, floordiv(job, rows_of_tiles)), Assign(row, mod(job, rows_of_tiles))]
        stmts += [Assign(n, floordiv(row, th)), Assign(ty, mod(row, th)),
                  Assign(b, Load(bias, (k,)) if bias is not None else Const(0.0, "float32")),
                  Assign(base, add(mul(k, Tp), mul(row, tw))),
                  Assign(o, mul(add(mul(add(mul(n, K), k), H), mul(ty, m)), W))]
        whole_rows = Binary("le", add(mul(ty, m), m), Const(H, "int64"))
        stmts.append(Assign(done, Const(0, "int64")))
        if run:
            def per_run(r):
                first = Var("first", None, "index")
                stmts = [Assign(first, minimum(mul(r, run), full - run)), WinogradOutput(
                    m, run, relu, mt, add(base, first), Const(SM, "int64"), output,
                    add(o, mul(first, m)), Const(W, "int64"), b)]
                if finish is not None:
                    # Overlapping runs store their tiles afresh before each application, so
                    # every value is finished once.
                    def per_value(i, row):
                        at = (n, k, add(mul(ty, m), row), add(mul(first, m), i))
                        return [Store(output, at, finish(Load(output, at), *at))]
                    for row in range(m):
                        stmts.append(_loop("i", m * run, "serial", lambda i, row=row: per_value(i, row))[1])
                return stmts
            starts = _loop("r", ceildiv(full, run), "serial", per_run)[1]
            stmts.append(If(whole_rows, (starts, Assign(done, Const(full, "int64")))))

        def per_tile(txx):
            tx = Var("tx", None, "index")
            q = add(base, tx)
            loads, vals = _scalars("m_", [Load(mt, (add(q, xi * SM),)) for xi in range(alpha * alpha)])
            inner = [Assign(tx, add(done, txx))] + loads
            for p in range(m):
                rows = [_combination(at_[p], [vals[i * alpha + j] for i in range(alpha)]) for j in range(alpha)]
                srow = _scalars(f"s{p}_", rows)
                inner += srow[0]
                for r in range(m):
                    h, w = add(mul(ty, m), p), add(mul(tx, m), r)
                    value = Binary("add", _combination(at_[r], srow[1]), b)
                    if relu:
                        value = Binary("maximum", value, Const(0.0, "float32"))
                    if finish is not None:
                        value = finish(value, n, k, h, w)
                    inside = Binary("and", Binary("lt", h, Const(H, "int64")), Binary("lt", w, Const(W, "int64")))
                    inner.append(If(inside, (Store(output, (n, k, h, w), value),)))
            return inner
        stmts.append(_loop("txx", sub(tw, done), "serial", per_tile)[1])
        return stmts
    return _loop("job", K * rows_of_tiles, "parallel", per_job)[1]

