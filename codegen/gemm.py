"""A packed, cache-blocked fp32 matmul on the SIMD micro-kernel: the loop structure matmul
schedules are to be tensorized onto, and a measure of what the micro-kernel reaches at size.

Blocking follows the usual GotoBLAS order: an nc-wide block of B and a kc-deep slice are
packed into nr-wide panels, an mc-tall block of A into mr-tall panels, and the micro-kernel
walks the panels. Edge tiles are computed into a scratch tile from zero-padded panels and
only their valid part is added to C, so any shape is correct.
"""
from __future__ import annotations

import functools

import numpy as np

from .simd import outer_product_kernel


@functools.lru_cache(maxsize=16)
def _row_block_step(mr: int, nvec: int, lanes: int):
    from numba import njit
    kernel = outer_product_kernel(mr, nvec, lanes)
    nr = nvec * lanes

    @njit(nogil=True, cache=False)
    def step(lo, hi, A, B, C, mc, kc, nc):
        # Rows [lo*mr, min(hi*mr, M)) of C = A @ B.
        M, K = A.shape
        N = B.shape[1]
        r0, r1 = lo * mr, min(hi * mr, M)
        if r0 >= r1:
            return
        rows, cols, depth = min(mc, r1 - r0), min(nc, N), min(kc, K)
        apack = np.empty(((rows + mr - 1) // mr) * mr * depth, np.float32)
        bpack = np.empty(((cols + nr - 1) // nr) * nr * depth, np.float32)
        tile = np.zeros(mr * nr, np.float32)
        for i in range(r0, r1):
            for j in range(N):
                C[i, j] = 0.0
        for j0 in range(0, N, nc):
            ncur = min(nc, N - j0)
            jpanels = (ncur + nr - 1) // nr
            for p0 in range(0, K, kc):
                kcur = min(kc, K - p0)
                for jb in range(jpanels):
                    base = jb * kcur * nr
                    for k in range(kcur):
                        for jj in range(nr):
                            j = j0 + jb * nr + jj
                            bpack[base + k * nr + jj] = B[p0 + k, j] if j < j0 + ncur else 0.0
                for i0 in range(r0, r1, mc):
                    mcur = min(mc, r1 - i0)
                    ipanels = (mcur + mr - 1) // mr
                    for ib in range(ipanels):
                        base = ib * kcur * mr
                        for k in range(kcur):
                            for ii in range(mr):
                                i = i0 + ib * mr + ii
                                apack[base + k * mr + ii] = A[i, p0 + k] if i < i0 + mcur else 0.0
                    for jb in range(jpanels):
                        j = j0 + jb * nr
                        for ib in range(ipanels):
                            i = i0 + ib * mr
                            if i + mr <= i0 + mcur and j + nr <= j0 + ncur:
                                kernel(apack, ib * kcur * mr, bpack, jb * kcur * nr, C, i * N + j, N, kcur)
                            else:
                                tile[:] = 0.0
                                kernel(apack, ib * kcur * mr, bpack, jb * kcur * nr, tile, 0, nr, kcur)
                                for ii in range(min(mr, i0 + mcur - i)):
                                    for jj in range(min(nr, j0 + ncur - j)):
                                        C[i + ii, j + jj] += tile[ii * nr + jj]

    return step


def packed_matmul(A, B, mr: int = 6, nvec: int = 2, lanes: int = 8, mc: int = 96, kc: int = 256,
                  nc: int = 2048, threads: int | None = None, out=None):
    """C = A @ B for float32 matrices, through the micro-kernel. Row blocks of C run on
    `threads` threads (default: the kernel thread count)."""
    from .parallel import run_parallel, thread_count
    A = np.ascontiguousarray(A, dtype=np.float32)
    B = np.ascontiguousarray(B, dtype=np.float32)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        raise ValueError(f"packed_matmul: shapes {A.shape} and {B.shape} do not multiply")
    if min(mc, kc, nc) < 1:
        raise ValueError(f"packed_matmul: blocks mc={mc}, kc={kc}, nc={nc} must be >= 1")
    M, N = A.shape[0], B.shape[1]
    C = np.empty((M, N), np.float32) if out is None else out
    if C.shape != (M, N) or C.dtype != np.float32 or not C.flags.c_contiguous:
        raise ValueError(f"packed_matmul: out must be a C-contiguous float32 array of shape {(M, N)}")
    step = _row_block_step(mr, nvec, lanes)
    mc = max(mr, mc - mc % mr)
    row_blocks = (M + mr - 1) // mr
    run_parallel(step, row_blocks, (A, B, C, mc, kc, nc), threads or thread_count())
    return C
