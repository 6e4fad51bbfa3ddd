"""A hand-written Winograd F(2x2, 3x3) conv2d for probing: four steps on the kernel thread pool."""
from __future__ import annotations

import numpy as np

# F(2x2, 3x3): a 4x4 input patch gives a 2x2 output tile with 16 multiplies per channel pair
# instead of 36, so the 16 GEMMs in the middle do 2.25x fewer FLOPs than a direct 3x3 conv.
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
# V's and M's 16 planes start one cache line apart modulo 4 KiB: planes of a whole number of
# pages put all 16 streams of a transform in one L1 set, more than its 8 ways.
SKEW = 16


class WinogradConv:
    """y = relu(conv2d(x, w, pad 1, stride 1) + bias) for x (C, H, W), w (K, C, 3, 3), one image.

    Steps, each split over the pool's threads: (1) pad the input and move channels last;
    (2) transform each 4x4 patch (B^T d B), vectorized over channels, into V (16, tiles, C);
    (3) 16 GEMMs V[xi] (tiles x C) @ U[xi] (C x K) by the outer-product micro-kernel, each
    tile stored transposed into M (16, K, tiles); (4) A^T m A for each tile, plus the bias and
    the relu, written to the NCHW output. The weights are transformed (U = G w G^T) and packed
    once, when the kernel is made, as a deployed model's weights would be.

    by_tiles=True splits steps (3) and (4) between the threads by tiles, as step (2) is, so
    each thread reads back only what it wrote; False splits them by planes (3) and output
    channels (4), so each thread reads half of U. None picks tiles where V and M are larger
    than U. Split by planes, 64x56x56 took 1.5 ms instead of 0.63 in half of the processes:
    the cores handing V and M to each other, in this machine's slow state."""

    def __init__(self, weight, bias, H: int, W: int, relu: bool = True, mr: int = 8, nvec: int = 2,
                 lanes: int = 16, by_tiles: bool | None = None):
        K, C, R, S = weight.shape
        if (R, S) != (3, 3) or H < 1 or W < 1 or bias.shape != (K,):
            raise ValueError(f"WinogradConv: needs a 3x3 filter, a bias of K values and an image; got "
                             f"weight {weight.shape}, bias {bias.shape}, H={H}, W={W}")
        self.shape = (C, H, W, K)
        th, tw = (H + 1) // 2, (W + 1) // 2
        nr = nvec * lanes
        self.T, self.Tp = th * tw, (th * tw + mr - 1) // mr * mr
        self.Kp = (K + nr - 1) // nr * nr
        if by_tiles is None:
            by_tiles = self.Tp * (C + self.Kp) > C * self.Kp
        self.by_tiles = bool(by_tiles)
        self.u = self._packed_weights(weight, nr)
        self.bias = np.ascontiguousarray(bias, np.float32)
        Hp, Wp = 2 * th + 2, 2 * tw + 2
        self.scratch = (np.zeros((Hp, Wp, C), np.float32), np.zeros(16 * (self.Tp * C + SKEW), np.float32),
                        np.zeros(16 * (self.Kp * self.Tp + SKEW), np.float32))
        steps = _compile_steps(C, H, W, K, th, tw, self.Tp, self.Kp, mr, nvec, lanes, relu, by_tiles)
        panels = self.Tp // mr
        self.steps = [(steps[0].address, Hp), (steps[1].address, th), (steps[2].address, 16 * panels),
                      (steps[3].address, K * th)]
        self.params = np.empty(0, np.int64)

    def _packed_weights(self, weight, nr: int):
        K, C = weight.shape[:2]
        u = np.einsum("ar,kcrs,bs->abck", G, weight.astype(np.float64), G).reshape(16, C, K)
        padded = np.zeros((16, C, self.Kp))
        padded[:, :, :K] = u
        # the micro-kernel's B panels: [xi][column panel][c][nr]
        panels = padded.reshape(16, C, self.Kp // nr, nr).transpose(0, 2, 1, 3)
        return np.ascontiguousarray(panels, np.float32).reshape(-1)

    def __call__(self, x, out=None, steps=None):
        from codegen.parallel import run_step, thread_count
        C, H, W, K = self.shape
        x = np.ascontiguousarray(x, np.float32).reshape(C, H, W)
        out = np.empty((K, H, W), np.float32) if out is None else out
        if out.shape != (K, H, W) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"WinogradConv: out must be a C-contiguous float32 array of shape {(K, H, W)}, "
                             f"got {out.dtype} {out.shape}")
        arrays = (x, *self.scratch, self.u, self.bias, out)
        threads = thread_count()
        for entry, extent in (self.steps if steps is None else [self.steps[k] for k in steps]):
            run_step(entry, extent, arrays, self.params, threads)
        return out


def _input_tile(lanes: int):
    """A Numba intrinsic `tile(v, v_off, plane, xt, x_off, row, col)`: B^T d B for `lanes`
    channels at once, d[i][j] = xt[x_off + i * row + j * col + lane], written to
    v[v_off + xi * plane + lane] for the 16 positions xi. Loops over channels stay scalar
    otherwise: 16 load and 16 store streams are more than LLVM checks for overlap."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def tile(typingctx, v, v_off, plane, xt, x_off, row, col):
        sig = types.void(v, v_off, plane, xt, x_off, row, col)

        def codegen(context, builder, signature, args):
            vec = ir.VectorType(ir.FloatType(), lanes)
            v_ptr, x_ptr = (context.make_array(signature.args[i])(context, builder, args[i]).data for i in (0, 3))
            v_off, plane, x_off, row, col = (context.cast(builder, args[i], signature.args[i], types.int64)
                                             for i in (1, 2, 4, 5, 6))

            def at(ptr, offset):
                return builder.bitcast(builder.gep(ptr, [offset]), vec.as_pointer())

            d = [[builder.load(at(x_ptr, builder.add(x_off, builder.add(builder.mul(row, ir.Constant(row.type, i)),
                                                                          builder.mul(col, ir.Constant(col.type, j))))),
                               align=4) for j in range(4)] for i in range(4)]
            add, sub = builder.fadd, builder.fsub
            w = [[sub(d[0][j], d[2][j]) for j in range(4)], [add(d[1][j], d[2][j]) for j in range(4)],
                 [sub(d[2][j], d[1][j]) for j in range(4)], [sub(d[1][j], d[3][j]) for j in range(4)]]
            for a in range(4):
                out = (sub(w[a][0], w[a][2]), add(w[a][1], w[a][2]), sub(w[a][2], w[a][1]), sub(w[a][1], w[a][3]))
                for b, value in enumerate(out):
                    offset = builder.add(v_off, builder.mul(plane, ir.Constant(plane.type, 4 * a + b)))
                    builder.store(value, at(v_ptr, offset), align=4)
            return context.get_dummy_value()
        return sig, codegen
    return tile


_compiled: dict = {}


def _compile_steps(*shape_and_tile):
    """The four steps for one shape and register tile, compiled once per process."""
    if shape_and_tile not in _compiled:
        _compiled[shape_and_tile] = _steps(*shape_and_tile)
    return _compiled[shape_and_tile]


def _steps(C, H, W, K, th, tw, Tp, Kp, mr, nvec, lanes, relu, by_tiles):
    from numba import cfunc

    from codegen.simd import outer_product_kernel
    from codegen.step_abi import STEP_SIGNATURE, array_at
    Hp, Wp = 2 * th + 2, 2 * tw + 2
    nr = nvec * lanes
    panels = Tp // mr
    S = Kp * Tp + SKEW
    SV = Tp * C + SKEW
    VL = 16
    vtile = _input_tile(VL)
    floor = np.float32(0.0) if relu else np.float32(-np.inf)
    mk = outer_product_kernel(mr, nvec, lanes, accumulate=False, direct=True, epilogue=(), transposed_out=True)
    opts = dict(fastmath=True, error_model="numpy", boundscheck=False)

    @cfunc(STEP_SIGNATURE, **opts)
    def pad_step(lo, hi, a):
        x = array_at(a[0], (C, H, W), np.float32)
        xt = array_at(a[1], (Hp, Wp, C), np.float32)
        for hp in range(lo, hi):
            h = hp - 1
            if h < 0 or h >= H:
                for wp in range(Wp):
                    for c in range(C):
                        xt[hp, wp, c] = 0.0
                continue
            for c in range(C):
                xt[hp, 0, c] = 0.0
            for wp in range(W + 1, Wp):
                for c in range(C):
                    xt[hp, wp, c] = 0.0
            for w0 in range(0, W, 8):  # 8 pixels at a time: reads stay within a few lines
                for c in range(C):
                    for w in range(w0, min(w0 + 8, W)):
                        xt[hp, w + 1, c] = x[c, h, w]
        return 1

    @cfunc(STEP_SIGNATURE, **opts)
    def input_step(lo, hi, a):
        xt = array_at(a[1], (Hp, Wp, C), np.float32)
        v = array_at(a[2], (16, SV), np.float32)
        xf = array_at(a[1], (Hp * Wp * C,), np.float32)
        vf = array_at(a[2], (16 * SV,), np.float32)
        for ty in range(lo, hi):
            r0 = 2 * ty
            for tx in range(tw):
                t = ty * tw + tx
                c0 = 2 * tx
                for cv in range(0, C - C % VL, VL):
                    vtile(vf, t * C + cv, SV, xf, (r0 * Wp + c0) * C + cv, Wp * C, C)
                for c in range(C - C % VL, C):
                    d00 = xt[r0, c0, c]; d01 = xt[r0, c0 + 1, c]; d02 = xt[r0, c0 + 2, c]; d03 = xt[r0, c0 + 3, c]  # noqa: E702
                    d10 = xt[r0 + 1, c0, c]; d11 = xt[r0 + 1, c0 + 1, c]; d12 = xt[r0 + 1, c0 + 2, c]; d13 = xt[r0 + 1, c0 + 3, c]  # noqa: E702
                    d20 = xt[r0 + 2, c0, c]; d21 = xt[r0 + 2, c0 + 1, c]; d22 = xt[r0 + 2, c0 + 2, c]; d23 = xt[r0 + 2, c0 + 3, c]  # noqa: E702
                    d30 = xt[r0 + 3, c0, c]; d31 = xt[r0 + 3, c0 + 1, c]; d32 = xt[r0 + 3, c0 + 2, c]; d33 = xt[r0 + 3, c0 + 3, c]  # noqa: E702
                    w00 = d00 - d20; w01 = d01 - d21; w02 = d02 - d22; w03 = d03 - d23  # noqa: E702
                    w10 = d10 + d20; w11 = d11 + d21; w12 = d12 + d22; w13 = d13 + d23  # noqa: E702
                    w20 = d20 - d10; w21 = d21 - d11; w22 = d22 - d12; w23 = d23 - d13  # noqa: E702
                    w30 = d10 - d30; w31 = d11 - d31; w32 = d12 - d32; w33 = d13 - d33  # noqa: E702
                    v[0, t * C + c] = w00 - w02; v[1, t * C + c] = w01 + w02; v[2, t * C + c] = w02 - w01; v[3, t * C + c] = w01 - w03  # noqa: E702
                    v[4, t * C + c] = w10 - w12; v[5, t * C + c] = w11 + w12; v[6, t * C + c] = w12 - w11; v[7, t * C + c] = w11 - w13  # noqa: E702
                    v[8, t * C + c] = w20 - w22; v[9, t * C + c] = w21 + w22; v[10, t * C + c] = w22 - w21; v[11, t * C + c] = w21 - w23  # noqa: E702
                    v[12, t * C + c] = w30 - w32; v[13, t * C + c] = w31 + w32; v[14, t * C + c] = w32 - w31; v[15, t * C + c] = w31 - w33  # noqa: E702
        return 1

    @cfunc(STEP_SIGNATURE, **opts)
    def gemm_step(lo, hi, a):
        v = array_at(a[2], (16 * SV,), np.float32)
        mt = array_at(a[3], (16 * S,), np.float32)
        u = array_at(a[4], (16 * Kp * C,), np.float32)
        rows = np.empty(mr, np.int64)
        ks = np.empty(C, np.int64)
        for k in range(C):
            ks[k] = k
        for job in range(lo, hi):
            if by_tiles:
                p, xi = job // 16, job % 16
            else:
                xi, p = job // panels, job % panels
            for i in range(mr):
                rows[i] = (p * mr + i) * C
            for jp in range(Kp // nr):
                # rows past the last tile read stale V and land in M's padding, never read
                mk(v, xi * SV, rows, ks, 0, u, (xi * Kp + jp * nr) * C, mt, 0, nr, C,
                   True, mt, xi * S + jp * nr * Tp + p * mr, Tp)
        return 1

    @cfunc(STEP_SIGNATURE, **opts)
    def output_step(lo, hi, a):
        mf = array_at(a[3], (16 * S,), np.float32)
        bias = array_at(a[5], (K,), np.float32)
        yf = array_at(a[6], (K * H * W,), np.float32)
        for job in range(lo, hi):
            if by_tiles:
                ty, k = job // K, job % K
            else:
                k, ty = job // th, job % th
            b = bias[k]
            base = k * Tp + ty * tw
            o0 = (k * H + 2 * ty) * W
            o1 = o0 + W
            whole = 2 * ty + 1 < H and W % 2 == 0
            for tx in range(tw):
                q = base + tx
                s00 = mf[np.uint64(q)] + mf[np.uint64(q + 4 * S)] + mf[np.uint64(q + 8 * S)]
                s01 = mf[np.uint64(q + S)] + mf[np.uint64(q + 5 * S)] + mf[np.uint64(q + 9 * S)]
                s02 = mf[np.uint64(q + 2 * S)] + mf[np.uint64(q + 6 * S)] + mf[np.uint64(q + 10 * S)]
                s03 = mf[np.uint64(q + 3 * S)] + mf[np.uint64(q + 7 * S)] + mf[np.uint64(q + 11 * S)]
                s10 = mf[np.uint64(q + 4 * S)] - mf[np.uint64(q + 8 * S)] - mf[np.uint64(q + 12 * S)]
                s11 = mf[np.uint64(q + 5 * S)] - mf[np.uint64(q + 9 * S)] - mf[np.uint64(q + 13 * S)]
                s12 = mf[np.uint64(q + 6 * S)] - mf[np.uint64(q + 10 * S)] - mf[np.uint64(q + 14 * S)]
                s13 = mf[np.uint64(q + 7 * S)] - mf[np.uint64(q + 11 * S)] - mf[np.uint64(q + 15 * S)]
                p = 2 * tx
                yf[np.uint64(o0 + p)] = max(s00 + s01 + s02 + b, floor)
                if whole:  # the branch-free common case, which LLVM vectorizes
                    yf[np.uint64(o0 + p + 1)] = max(s01 - s02 - s03 + b, floor)
                    yf[np.uint64(o1 + p)] = max(s10 + s11 + s12 + b, floor)
                    yf[np.uint64(o1 + p + 1)] = max(s11 - s12 - s13 + b, floor)
                    continue
                if p + 1 < W:
                    yf[np.uint64(o0 + p + 1)] = max(s01 - s02 - s03 + b, floor)
                if 2 * ty + 1 < H:
                    yf[np.uint64(o1 + p)] = max(s10 + s11 + s12 + b, floor)
                    if p + 1 < W:
                        yf[np.uint64(o1 + p + 1)] = max(s11 - s12 - s13 + b, floor)
        return 1

    return pad_step, input_step, gemm_step, output_step
