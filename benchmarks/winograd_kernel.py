"""A hand-written Winograd F(m x m, 3x3) conv2d for probing (m 2 or 4): four steps on the kernel thread pool."""
from __future__ import annotations

import numpy as np

from codegen.winograd_simd import TRANSFORMS, input_tile, output_run
from schedules.winograd_match import TileGeometry


class WinogradConv:
    """y = relu(conv2d(x, w, pad 1, stride 1) + bias) for x (C, H, W), w (K, C, 3, 3), one image.

    Steps, each split over the pool's threads: (1) pad the input and move channels last;
    (2) transform each (m+2)x(m+2) patch (B^T d B), 16 channels at a time, into P = (m+2)^2
    planes V (P, tiles, C); (3) P GEMMs V[xi] (tiles x C) @ U[xi] (C x K) by the
    outer-product micro-kernel, each tile stored transposed into M (P, K, tiles); (4) A^T m A
    for runs of tiles at once, plus the bias and the relu, written to the NCHW output. The
    weights are transformed (U = G w G^T) and packed once, when the kernel is made, as a
    deployed model's weights would be.

    by_tiles=True splits steps (3) and (4) between the threads by tiles, as step (2) is, so
    each thread reads back only what it wrote; False splits them by planes (3) and output
    channels (4), so each thread reads half of U. None picks tiles where V and M are larger
    than U. Split by planes, 64x56x56 took 1.5 ms instead of 0.63 in half of the processes:
    the cores handing V and M to each other, in this machine's slow state."""

    def __init__(self, weight, bias, H: int, W: int, relu: bool = True, m: int = 2, mr: int = 8, nvec: int = 2,
                 lanes: int = 16, by_tiles: bool | None = None):
        K, C, R, S = weight.shape
        if (R, S) != (3, 3) or H < 1 or W < 1 or bias.shape != (K,) or m not in TRANSFORMS:
            raise ValueError(f"WinogradConv: needs a 3x3 filter, a bias of K values, an image and m in "
                             f"{sorted(TRANSFORMS)}; got weight {weight.shape}, bias {bias.shape}, H={H}, W={W}, m={m}")
        self.shape, self.m = (C, H, W, K), m
        g = TileGeometry(m, C, H, W, K, mr, nvec * lanes)
        P = g.alpha ** 2
        self.Tp, self.Kp = g.Tp, g.Kp
        self.by_tiles = bool(g.tiles_outweigh_weights() if by_tiles is None else by_tiles)
        self.u = self._packed_weights(weight, g.nr)
        self.bias = np.ascontiguousarray(bias, np.float32)
        self.scratch = (np.zeros((g.Hp, g.Wp, C), np.float32), np.zeros(P * g.SV, np.float32),
                        np.zeros(P * g.SM, np.float32))
        steps = _compile_steps(g, nvec, lanes, relu, self.by_tiles)
        self.steps = [(steps[0].address, g.Hp), (steps[1].address, g.th), (steps[2].address, P * (g.Tp // mr)),
                      (steps[3].address, K * g.th)]
        self.params = np.empty(0, np.int64)

    def _packed_weights(self, weight, nr: int):
        K, C = weight.shape[:2]
        g = TRANSFORMS[self.m][1]
        alpha = self.m + 2
        u = np.einsum("ar,kcrs,bs->abck", g, weight.astype(np.float64), g).reshape(alpha * alpha, C, K)
        padded = np.zeros((alpha * alpha, C, self.Kp))
        padded[:, :, :K] = u
        # the micro-kernel's B panels: [xi][column panel][c][nr]
        panels = padded.reshape(alpha * alpha, C, self.Kp // nr, nr).transpose(0, 2, 1, 3)
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


_compiled: dict = {}


def _compile_steps(*shape_and_tile):
    """The four steps for one geometry and register tile, compiled once per process."""
    if shape_and_tile not in _compiled:
        _compiled[shape_and_tile] = _steps(*shape_and_tile)
    return _compiled[shape_and_tile]


def _steps(g, nvec, lanes, relu, by_tiles):
    from numba import cfunc

    from codegen.simd import outer_product_kernel
    from codegen.step_abi import STEP_SIGNATURE, array_at
    C, H, W, K, m, alpha, th, tw, Hp, Wp = g.C, g.H, g.W, g.K, g.m, g.alpha, g.th, g.tw, g.Hp, g.Wp
    Tp, Kp, mr, nr, S, SV = g.Tp, g.Kp, g.rows, g.nr, g.SM, g.SV
    bt, _, at_ = (np.ascontiguousarray(t, np.float32) for t in TRANSFORMS[m])
    P = alpha * alpha
    panels = Tp // mr
    VL = 16
    vtile = input_tile(m, VL)
    # runs of tiles for the output transform: the widest that fits a row of tiles; the last
    # run of a row overlaps the one before (it writes the same values again)
    run = next((r for r in (16, 8, 4) if r <= tw and m * r <= 64), 0)
    whole_columns = W % m == 0 and run > 0
    vout = output_run(m, run, relu) if run else None
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
        v = array_at(a[2], (P, SV), np.float32)
        xf = array_at(a[1], (Hp * Wp * C,), np.float32)
        vf = array_at(a[2], (P * SV,), np.float32)
        for ty in range(lo, hi):
            r0 = m * ty
            for tx in range(tw):
                t = ty * tw + tx
                c0 = m * tx
                for cv in range(0, C - C % VL, VL):
                    vtile(vf, t * C + cv, SV, xf, (r0 * Wp + c0) * C + cv, Wp * C, C)
                for c in range(C - C % VL, C):   # channels past the last vector: scalar
                    for p in range(alpha):
                        for q in range(alpha):
                            acc = np.float32(0.0)
                            for i in range(alpha):
                                for j in range(alpha):
                                    acc += bt[p, i] * bt[q, j] * xt[r0 + i, c0 + j, c]
                            v[p * alpha + q, t * C + c] = acc
        return 1

    @cfunc(STEP_SIGNATURE, **opts)
    def gemm_step(lo, hi, a):
        v = array_at(a[2], (P * SV,), np.float32)
        mt = array_at(a[3], (P * S,), np.float32)
        u = array_at(a[4], (P * Kp * C,), np.float32)
        rows = np.empty(mr, np.int64)
        ks = np.empty(C, np.int64)
        for k in range(C):
            ks[k] = k
        for job in range(lo, hi):
            if by_tiles:
                p, xi = job // P, job % P
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
        mf = array_at(a[3], (P * S,), np.float32)
        bias = array_at(a[5], (K,), np.float32)
        yf = array_at(a[6], (K * H * W,), np.float32)
        for job in range(lo, hi):
            if by_tiles:
                ty, k = job // K, job % K
            else:
                k, ty = job // th, job % th
            b = bias[k]
            base = k * Tp + ty * tw
            o = (k * H + m * ty) * W
            done = 0
            if whole_columns and m * ty + m <= H:
                for tx in range(0, tw, run):
                    start = min(tx, tw - run)
                    vout(mf, base + start, S, yf, o + m * start, W, b)
                done = tw
            for tx in range(done, tw):   # tiles at the bottom or right edge: scalar
                q = base + tx
                for p in range(m):
                    for r in range(m):
                        h, w = m * ty + p, m * tx + r
                        if h < H and w < W:
                            acc = np.float32(0.0)
                            for i in range(alpha):
                                for j in range(alpha):
                                    acc += at_[p, i] * at_[r, j] * mf[np.uint64(q + (i * alpha + j) * S)]
                            yf[np.uint64(o + p * W + m * tx + r)] = max(acc + b, floor)
        return 1

    return pad_step, input_step, gemm_step, output_step
