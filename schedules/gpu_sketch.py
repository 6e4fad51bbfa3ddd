"""GPU sketch rules: block, virtual-thread and thread tiling, shared-memory staging, row kernels."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .gpu_staging import affine_reads, boxes
from .schedule import Schedule
from .sketch import _fits, _knob_name

# Per-thread register tiles above this many accumulators spill on every GPU we target.
MAX_TILE_POINTS = 128
# Registers a thread needs beside its accumulators (addresses, loop counters, operands), for
# the block-level register estimate; ptxas reports the real count after compiling.
REGISTER_OVERHEAD = 24
THREAD_CHOICES = (32, 64, 128, 256, 512, 1024)
ROWS_PER_BLOCK = (1, 2, 4, 8)
PER_THREAD = (1, 2, 4, 8)
UNROLL = (1, 4, 16)


@dataclass(frozen=True)
class TiledPlan:
    """A reduction computed by a grid of blocks, each owning a tile of output points:
    per spatial axis, tile = vthread * threads * inner. Reduce axes advance `chunk` at a time,
    the inputs in `shared` staged into shared memory for each step."""
    vthread: tuple
    threads: tuple
    inner: tuple
    chunk: tuple
    shared: tuple      # names of the staged inputs
    unroll: int

    @property
    def tile(self) -> tuple:
        return tuple(v * t * i for v, t, i in zip(self.vthread, self.threads, self.inner))

    @property
    def thread_count(self) -> int:
        return math.prod(self.threads)

    @property
    def points(self) -> int:
        return math.prod(self.vthread) * math.prod(self.inner)


@dataclass(frozen=True)
class RowPlan:
    """One group of `row_threads` threads per row (the points a stage's attached reductions
    keep, or each output point of a reduction): they split the reduction and combine it with
    warp shuffles, then split the row's elementwise work. `rows` rows per block."""
    row_threads: int
    rows: int


@dataclass(frozen=True)
class FlatPlan:
    """Elementwise work over all points, `per_thread` points per thread, coalesced."""
    threads: int
    per_thread: int


def gpu_sketch(sch: Schedule) -> None:
    from .sketch import fuse_stages
    limits = sch.target.gpu
    fusion = fuse_stages(sch, materialize=False)
    sch.fusion = fusion
    for root in fusion.roots():
        attached = fusion.attached(root)
        if attached:
            root.gpu = _row_plan(sch, root, limits, _row_points(root, fusion))
        elif root.is_reduction:
            root.gpu = _reduction_plan(sch, root, limits)
        else:
            root.gpu = _flat_plan(sch, root, limits)


def _pow2_floor(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def _row_points(root, fusion) -> int:
    rows = fusion.mapped_axes.get(id(root), set())
    return math.prod(root.tensor.shape[d] for d in rows)


def _flat_plan(sch, st, limits) -> FlatPlan:
    threads = sch.knob(f"{st.name}.threads", THREAD_CHOICES, default=256)
    per = sch.knob(f"{st.name}.per_thread", PER_THREAD, default=4)
    sch.require(threads <= limits.max_threads,
                f"{st.name}: {threads} threads per block exceed the limit of {limits.max_threads}")
    return FlatPlan(threads, per)


def _row_plan(sch, st, limits, rows: int, reduce_points: int | None = None, use: bool = True) -> RowPlan:
    inner = math.prod(st.tensor.shape) // max(rows, 1) if reduce_points is None else reduce_points
    default_threads = min(1024, max(32, _pow2_floor(max(inner, 1) // 4)))
    row_threads = sch.knob(f"{st.name}.row_threads", THREAD_CHOICES, default=default_threads)
    per_block = sch.knob(f"{st.name}.rows_per_block", ROWS_PER_BLOCK,
                         default=max(1, min(8, 128 // default_threads)))
    sch.require(not use or row_threads * per_block <= limits.max_threads,
                f"{st.name}: {row_threads} threads per row x {per_block} rows per block exceed "
                f"{limits.max_threads} threads per block")
    return RowPlan(row_threads, per_block)


def _reduction_plan(sch, st, limits):
    reduce_points = math.prod(a.extent for a in st.tensor.reduce_axes)
    outputs = math.prod(st.tensor.shape)
    # Few outputs over long reductions: one thread per output leaves the GPU idle.
    rows_default = reduce_points >= 256 and outputs < 64 * limits.sm_count
    kind = sch.knob(f"{st.name}.kernel", ("tiled", "rows"), default="rows" if rows_default else "tiled")
    with sch.only_when(f"{st.name}.kernel", ("tiled",)):
        tiled = _tiled_plan(sch, st, limits, use=kind == "tiled")
    with sch.only_when(f"{st.name}.kernel", ("rows",)):
        rows = _row_plan(sch, st, limits, outputs, reduce_points, use=kind == "rows")
    return tiled if kind == "tiled" else rows


def _tiled_defaults(shape) -> list:
    """Per spatial axis (vthread, threads, inner): up to 256 threads with 4x4 points each on
    the last two axes where they are long enough, fewer where they are short. On the last
    axis a thread's points are virtual threads, a warp apart: neighbouring threads then read
    neighbouring shared-memory words (no bank conflicts) and store neighbouring outputs."""
    defaults = [(1, 1, 1)] * len(shape)
    thread_budget, point_budget = 256, 16
    last = len(shape) - 1
    for d in reversed(range(len(shape))):
        ext = shape[d]
        t = min(_pow2_floor(ext), 32 if d == last else thread_budget, thread_budget)
        p = min(4, point_budget, _pow2_floor(max(1, ext // t)))
        defaults[d] = _fits((p, t, 1) if d == last else (1, t, p), ext)
        thread_budget = max(1, thread_budget // defaults[d][1])
        point_budget = max(1, point_budget // (defaults[d][0] * defaults[d][2]))
    return defaults


def _tiled_plan(sch, st, limits, use: bool) -> TiledPlan:
    name = st.name
    reads = affine_reads(sch, st)
    defaults = _tiled_defaults(st.tensor.shape)
    vthread, threads, inner = [], [], []
    for te_axis, default in zip(st.tensor.axes, defaults):
        v, t, i = sch.split_knob(_knob_name(sch, name, te_axis.name), te_axis.extent,
                                 (False, False, False), default, max_innermost=16)
        vthread.append(v)
        threads.append(t)
        inner.append(i)
    chunk = []
    reduce_extents = [a.extent for a in st.tensor.reduce_axes]
    budget = 16
    chunk_defaults = [1] * len(reduce_extents)
    for j in reversed(range(len(reduce_extents))):
        ext = reduce_extents[j]
        c = ext if ext <= budget else _fits((budget,), ext)[0]
        chunk_defaults[j] = c
        budget = max(1, budget // c)
    for te_axis, default in zip(st.tensor.reduce_axes, chunk_defaults):
        (c,) = sch.split_knob(_knob_name(sch, name, te_axis.name), te_axis.extent, (False,),
                              (default,), max_innermost=64)
        chunk.append(c)
    staged = []
    fits = _default_staging(reads, defaults, chunk_defaults, limits)
    for read in reads:
        default = "shared" if read.tensor.name in fits else "global"
        if sch.knob(f"{name}.cache_{read.tensor.name}", ("shared", "global"), default=default) == "shared":
            staged.append(read.tensor.name)
    unroll = sch.knob(f"{name}.unroll", UNROLL, default=4)
    plan = TiledPlan(tuple(vthread), tuple(threads), tuple(inner), tuple(chunk), tuple(staged), unroll)
    if use:
        _check_tiled(sch, st, plan, reads, limits)
    return plan


def _default_staging(reads, defaults, chunk_defaults, limits) -> set:
    """The inputs the default config stages: all that can be, less the largest boxes until
    the rest fit the block's shared memory (a wide strided window's box may not)."""
    candidates = [r.tensor.name for r in reads]
    vthread, threads, inner = (tuple(d[k] for d in defaults) for k in range(3))
    plan = TiledPlan(vthread, threads, inner, tuple(chunk_defaults), tuple(candidates), 1)
    largest_first = sorted(boxes(reads, plan), key=lambda b: b.nbytes, reverse=True)
    total = sum(b.nbytes for b in largest_first)
    keep = set(candidates)
    for box in largest_first:
        if total <= limits.shared_per_block:
            break
        keep.discard(box.tensor.name)
        total -= box.nbytes
    return keep


def _check_tiled(sch, st, plan: TiledPlan, reads, limits) -> None:
    name = st.name
    sch.require(plan.thread_count <= limits.max_threads,
                f"{name}: {plan.thread_count} threads per block exceed {limits.max_threads}")
    sch.require(plan.points <= MAX_TILE_POINTS,
                f"{name}: {plan.points} accumulators per thread exceed {MAX_TILE_POINTS} (registers)")
    regs = plan.thread_count * (plan.points + REGISTER_OVERHEAD)
    sch.require(regs <= limits.regs_per_block,
                f"{name}: about {regs} registers per block exceed {limits.regs_per_block}")
    shared = sum(box.nbytes for box in boxes(reads, plan))
    sch.require(shared <= limits.shared_per_block,
                f"{name}: {shared} bytes of shared memory per block exceed {limits.shared_per_block}")
