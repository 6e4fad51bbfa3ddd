"""Fixed-length features of a lowered LoopNest, in the style of Ansor, for the learned cost model.

Every statement inside the loops contributes its buffer accesses. Runtime knobs are replaced
by their values, loop extents by their nominal (unclamped) values, and index expressions are
expanded down to loop variables, so each access has an exact stride along every loop.

Features (all counts and sizes as log2(1 + x)):
  global   flops, loop count, max depth, parallel extent, threads used, innermost-loop extent,
           innermost loop vectorized, unrolled copies, local (register/accumulator) bytes,
           arithmetic intensity (flops per byte of distinct data touched).
  accesses for reads and for writes separately: number of accesses, number with unit stride
           along the innermost loop, number invariant in it, largest innermost stride.
  levels   for the 6 innermost loop levels (level 0 is the innermost loop): bytes touched by all
           accesses while that loop and the ones inside it run, reuse (iterations per distinct
           element), and the working set as a fraction of the target's L1, L2 and L3 sizes.
"""
from __future__ import annotations

import math

import numpy as np

from schedules.expr import Binary, Const, Load, Var, walk
from schedules.loopnest import (BLOCK_KINDS, Allocate, Assign, Fill, For, If, MicroKernel, Scalar, Store,
                                ThreadReduce, TransposeCopy, VectorCopy, WinogradInput, WinogradOutput)
from schedules.target import DEFAULT_CACHE_BYTES

LEVELS = 6
CACHE_LEVELS = ("L1", "L2", "L3")
_ITEM = {"float32": 4, "float64": 8, "int32": 4, "int64": 8, "bool": 1}


def _names() -> list:
    names = ["flops", "loops", "depth", "parallel_extent", "threads", "inner_extent",
             "inner_vectorized", "unrolled_copies", "local_bytes", "arith_intensity"]
    for kind in ("read", "write"):
        names += [f"{kind}_accesses", f"{kind}_unit_stride", f"{kind}_invariant", f"{kind}_max_stride"]
    for lvl in range(LEVELS):
        names += [f"L{lvl}_bytes", f"L{lvl}_reuse"] + [f"L{lvl}_over_{c}" for c in CACHE_LEVELS]
    return names


FEATURE_NAMES = tuple(_names())


def _lg(x: float) -> float:
    return math.log2(1.0 + max(0.0, float(x)))


class _Walker:
    def __init__(self, params: dict, threads: int):
        self.env = dict(params)        # id(var) -> int value, for params and extent variables
        self.defs: dict = {}           # id(var) -> defining index expression (inside loops)
        self.accesses: list = []       # (buffer, flat-index expr, is_write, loop stack)
        self.stmt_flops: list = []     # (flops per execution, loop stack)
        self.loops = 0
        self.depth = 0
        self.parallel = 1
        self.grid = 1
        self.threads = threads
        self.local_bytes = 0
        self.aff_cache: dict = {}

    def value(self, e) -> int:
        """Integer value with every loop variable at 0 (nominal extents, base offsets)."""
        return _eval(e, _LazyEnv(self))

    def affine(self, e):
        """(coefficients by loop-variable id, constant) if e is affine in loop variables."""
        if isinstance(e, Const):
            return ({}, int(e.value))
        if isinstance(e, Var):
            key = id(e)
            if key in self.env:
                return ({}, self.env[key])
            if key in self.defs:
                if key not in self.aff_cache:
                    self.aff_cache[key] = None  # guards against cycles
                    self.aff_cache[key] = self.affine(self.defs[key])
                return self.aff_cache[key]
            return ({key: 1}, 0)
        if isinstance(e, Binary):
            a, b = self.affine(e.a), self.affine(e.b)
            if a is None or b is None:
                return None
            if e.op in ("add", "sub"):
                sign = 1 if e.op == "add" else -1
                coeffs = dict(a[0])
                for k, v in b[0].items():
                    coeffs[k] = coeffs.get(k, 0) + sign * v
                return (coeffs, a[1] + sign * b[1])
            if e.op == "mul":
                if not a[0]:
                    a, b = b, a
                if not b[0]:
                    return ({k: v * b[1] for k, v in a[0].items()}, a[1] * b[1])
                return None
            if not a[0] and not b[0]:
                return ({}, _eval(Binary(e.op, Const(a[1], "int64"), Const(b[1], "int64")), {}))
            # A division or min of loop variables (a fused loop's decode): not affine, but it
            # still moves with every loop variable inside it; count each with stride 1.
            return ({k: 1 for k in set(a[0]) | set(b[0])}, 0)
        return None

    def run(self, stmts, stack=()):
        for s in stmts:
            if isinstance(s, For):
                try:
                    extent = max(1, self.value(s.extent))
                except KeyError:
                    extent = 1
                self.loops += 1
                self.depth = max(self.depth, len(stack) + 1)
                if s.kind == "parallel":
                    self.parallel = extent
                elif s.kind in BLOCK_KINDS:  # GPU blocks: the largest grid of the kernels
                    grid = extent if not stack or stack[-1][2] not in BLOCK_KINDS else self.grid * extent
                    self.grid = grid
                    self.parallel = max(self.parallel, grid)
                self.run(s.body, stack + ((s.var, extent, s.kind),))
            elif isinstance(s, If):
                self.run(s.body, stack)
            elif isinstance(s, Assign):
                if isinstance(s.var, Scalar):
                    self._statement(s.value, None, stack)
                elif stack:
                    self.defs[id(s.var)] = s.value
                else:
                    try:
                        self.env[id(s.var)] = self.value(s.value)
                    except KeyError:
                        self.defs[id(s.var)] = s.value
            elif isinstance(s, Store):
                self._statement(s.value, s, stack)
            elif isinstance(s, Allocate):
                try:
                    n = math.prod(self.value(d) if not isinstance(d, int) else d for d in s.buffer.shape)
                except KeyError:
                    n = 0
                self.local_bytes += n * _ITEM.get(s.buffer.dtype, 4)
            elif isinstance(s, Fill):
                pass
            elif isinstance(s, MicroKernel):
                self._microkernel(s, stack)
            elif isinstance(s, VectorCopy):
                self._vector_copy(s, stack)
            elif isinstance(s, TransposeCopy):
                self._transpose_copy(s, stack)
            elif isinstance(s, (WinogradInput, WinogradOutput)):
                self._winograd(s, stack)
            elif isinstance(s, ThreadReduce):  # GPU: a warp/block combine, one op per step
                self._statement(s.value, None, stack)

    def _transpose_copy(self, s, stack):
        """A k loop over `width` rows read at stride ld and written as contiguous k-rows."""
        try:
            kc = max(1, self.value(s.kc))
        except KeyError:
            kc = 1
        self._copy(s, stack, [("copy_k", kc, "serial", 1, s.width), ("copy_t", s.width, "vectorized", s.ld, 1)])

    def _vector_copy(self, s, stack):
        """A copy of `count` values: a read at the copy's source stride and a unit-stride
        write per value."""
        self._copy(s, stack, [("copy_t", s.count, "vectorized", s.stride, 1)])

    def _copy(self, s, stack, loops):
        """A copy statement as loops (name, extent, kind, source stride, destination stride)
        with no arithmetic; both buffers are addressed as flat data from their offsets."""
        vars_ = [Var(name, None, "loop") for name, *_ in loops]
        inner = stack + tuple((v, ext, kind) for v, (_, ext, kind, _, _) in zip(vars_, loops))
        self.loops += len(loops)
        self.depth = max(self.depth, len(inner))
        self.stmt_flops.append((0, inner))
        for buf, off, write, col in ((s.src, s.src_off, False, 3), (s.dst, s.dst_off, True, 4)):
            base = (self._flat(buf, (off,)) if len(buf.shape) == 1 else self._offset(off)) or {}
            strides = {id(v): loop[col] for v, loop in zip(vars_, loops)}
            self.accesses.append((buf, {**base, **strides}, write, inner))

    def _microkernel(self, s, stack):
        """A micro-kernel call is a vectorized k loop of rows * cols FMAs (2 flops each) over
        two unit-stride panels, with the C tile read and written once around it. Calls into
        a local edge tile repeat the work of the guarded full-tile call, so add no flops; the
        full-tile call carries the exact total, as its nominal loop extents round up."""
        try:
            kc = max(1, self.value(s.kc))
        except KeyError:
            kc = 1
        k = Var("mk_k", None, "loop")
        inner = stack + ((k, kc, "vectorized"),)
        self.loops += 1
        self.depth = max(self.depth, len(inner))
        self.local_bytes = max(self.local_bytes, s.rows * s.cols * 4)
        self.stmt_flops.append((0, inner))
        self.stmt_flops.append((s.total_flops, ()))
        if s.epilogue is not None:  # the tile's epilogue steps, once per call
            self.stmt_flops.append((len(s.epilogue) * s.rows * s.cols, stack))
            for buf, off in s.epilogue_operands:
                self.accesses.append((buf, self._flat_offset(buf, off), False, stack))
        if s.transposed_out is not None:  # one column of the tile per store, rows contiguous
            self.accesses.append((s.transposed_out, self._flat_offset(s.transposed_out, s.transposed_off), True, stack))
        for buf, off, step in ((s.a, s.a_off, s.rows), (s.b, s.b_off, s.cols)):
            # An unpacked A (read through its tables) is taken as walking its buffer along k;
            # a B read in place steps ldb along k.
            in_place = buf is s.b and s.ldb is not None
            unpacked = (buf is s.a and s.direct) or in_place
            base = (self._offset(off) if unpacked else self._flat(buf, (off,))) or {}
            k_step = self.value(s.ldb) if in_place else 1
            self.accesses.append((buf, {**base, id(k): k_step}, False, inner))
        c = self._flat_offset(s.c, s.c_off)
        self.accesses.append((s.c, c, False, stack))
        self.accesses.append((s.c, c, True, stack))

    def _winograd(self, s, stack):
        """A Winograd transform call is a vectorized loop over its lanes (channels, or tiles
        of a run) of (m+2)^2 reads and the transform's adds and multiplies, counted as one
        read stream and one write stream per lane."""
        alpha = s.m + 2
        if isinstance(s, WinogradInput):
            lanes, flops = s.lanes, 4 * alpha ** 3      # B^T d, then (B^T d) B
            src, src_off, dst, dst_off = s.x, s.x_off, s.v, s.v_off
        else:
            lanes, flops = s.run, 2 * alpha * alpha * s.m + 2 * alpha * s.m * s.m + 2 * s.m * s.m
            src, src_off, dst, dst_off = s.mt, s.q, s.y, s.o
        lane = Var("wino_lane", None, "loop")
        inner = stack + ((lane, lanes, "vectorized"),)
        self.loops += 1
        self.depth = max(self.depth, len(inner))
        self.stmt_flops.append((flops, inner))
        # An output run's tiles sit m values apart in each row it stores.
        lane_step = 1 if isinstance(s, WinogradInput) else s.m
        for buf, off, write, step in ((src, src_off, False, 1), (dst, dst_off, True, lane_step)):
            self.accesses.append((buf, {**(self._flat_offset(buf, off) or {}), id(lane): step}, write, inner))

    def _flat_offset(self, buf, off):
        """Strides of an access at flat element offset `off` into buf's C-contiguous data."""
        return self._flat(buf, (off,)) if len(buf.shape) == 1 else self._offset(off)

    def _offset(self, off):
        aff = self.affine(off)
        return None if aff is None else dict(aff[0])

    def _statement(self, value, store, stack):
        flops = sum(1 for n in walk(value) if isinstance(n, Binary) and n.dtype.startswith("float"))
        self.stmt_flops.append((flops, stack))
        for n in walk(value):
            if isinstance(n, Load) and hasattr(n.tensor, "scope"):
                self.accesses.append((n.tensor, self._flat(n.tensor, n.indices), False, stack))
        if store is not None:
            self.accesses.append((store.buffer, self._flat(store.buffer, store.indices), True, stack))

    def _flat(self, buf, indices):
        """Element strides of the access along loop variables, or None when not affine."""
        strides, acc = [], 1
        for d in reversed(buf.shape):
            strides.insert(0, acc)
            try:
                acc *= d if isinstance(d, int) else self.value(d)
            except KeyError:
                acc *= 1
        coeffs = {}
        for i, st in zip(indices, strides):
            aff = self.affine(i)
            if aff is None:
                return None
            for k, v in aff[0].items():
                coeffs[k] = coeffs.get(k, 0) + v * st
        return coeffs


class _LazyEnv(dict):
    """Variable values for _eval: knobs and extents, definitions on demand, loops at 0."""

    def __init__(self, walker):
        super().__init__()
        self.walker = walker

    def __missing__(self, key):
        w = self.walker
        if key in w.env:
            return w.env[key]
        if key in w.defs:
            value = _eval(w.defs[key], self)
            self[key] = value
            return value
        return 0


def _eval(e, env) -> int:
    if isinstance(e, Const):
        return int(e.value)
    if isinstance(e, Var):
        return env[id(e)]
    if isinstance(e, Binary):
        a, b = _eval(e.a, env), _eval(e.b, env)
        op = e.op
        if op == "add":
            return a + b
        if op == "sub":
            return a - b
        if op == "mul":
            return a * b
        if op == "floordiv":
            return a // b if b else 0
        if op == "mod":
            return a % b if b else 0
        if op == "minimum":
            return min(a, b)
        if op == "maximum":
            return max(a, b)
    raise KeyError(type(e).__name__)


def featurize(nest, params: dict, threads: int = 1, cache_bytes: tuple = DEFAULT_CACHE_BYTES) -> np.ndarray:
    """The feature vector of a LoopNest; params maps id(Param) -> its runtime value, and
    cache_bytes gives the target's L1, L2 and L3 sizes."""
    w = _Walker(params, threads)
    w.run(nest.body)
    f = dict.fromkeys(FEATURE_NAMES, 0.0)
    total_flops = sum(fl * math.prod(e for _, e, _ in stack) for fl, stack in w.stmt_flops)
    f["flops"] = _lg(total_flops)
    f["loops"] = _lg(w.loops)
    f["depth"] = float(w.depth)
    f["parallel_extent"] = _lg(w.parallel)
    f["threads"] = _lg(min(w.parallel, threads))
    f["local_bytes"] = _lg(w.local_bytes)
    inner_extents, vectorized, unrolled = [], 0, 1
    level_bytes = [0.0] * LEVELS
    level_iters = [0.0] * LEVELS
    distinct_outer = 0.0
    counts = {True: [0, 0, 0, 0], False: [0, 0, 0, 0]}
    for buf, flat, is_write, stack in w.accesses:
        item = _ITEM.get(buf.dtype, 4)
        strides = []
        strides = [1] * len(stack) if flat is None else [abs(flat.get(id(var), 0)) for var, _, _ in stack]
        c = counts[is_write]
        c[0] += 1
        if stack:
            inner = strides[-1]
            c[1] += inner == 1
            c[2] += inner == 0
            c[3] = max(c[3], inner)
        distinct, iters = 1.0, 1.0
        for lvl in range(min(LEVELS, len(stack))):
            _, extent, _ = stack[-1 - lvl]
            iters *= extent
            if strides[-1 - lvl] != 0:
                distinct *= extent
            level_bytes[lvl] += distinct * item
            level_iters[lvl] += iters
        all_distinct = math.prod(e for (_, e, _), s in zip(stack, strides) if s != 0)
        distinct_outer += all_distinct * item
    for is_write, prefix in ((False, "read"), (True, "write")):
        c = counts[is_write]
        f[f"{prefix}_accesses"] = _lg(c[0])
        f[f"{prefix}_unit_stride"] = _lg(c[1])
        f[f"{prefix}_invariant"] = _lg(c[2])
        f[f"{prefix}_max_stride"] = _lg(c[3])
    for _, stack in w.stmt_flops:
        if stack:
            inner_extents.append(stack[-1][1])
            vectorized = max(vectorized, int(stack[-1][2] == "vectorized"))
            unrolled = max(unrolled, math.prod(e for _, e, k in stack if k == "unrolled"))
    f["inner_extent"] = _lg(max(inner_extents, default=0))
    f["inner_vectorized"] = float(vectorized)
    f["unrolled_copies"] = _lg(unrolled)
    f["arith_intensity"] = _lg(total_flops / distinct_outer) if distinct_outer else 0.0
    for lvl in range(LEVELS):
        f[f"L{lvl}_bytes"] = _lg(level_bytes[lvl])
        f[f"L{lvl}_reuse"] = _lg(level_iters[lvl] / max(1.0, level_bytes[lvl] / 4))
        for cache, size in zip(CACHE_LEVELS, cache_bytes):
            f[f"L{lvl}_over_{cache}"] = level_bytes[lvl] / size if level_bytes[lvl] else 0.0
    return np.array([f[n] for n in FEATURE_NAMES], dtype=np.float32)


class FeatureExtractor:
    """Features of many configs of one operator. Configs that share their structural knobs
    share one lowered loop nest (runtime knobs are kernel parameters), so each structure is
    scheduled and lowered once and only the parameter values change between candidates."""

    def __init__(self, op, target="cpu", max_structures: int = 4096):
        self.op = op
        self.space = op.space(target)
        self.target = target
        self.max_structures = max_structures
        self.nests: dict = {}   # structure key -> (LoopNest, threads)

    def __call__(self, config) -> np.ndarray:
        config = self.space.check(config)
        key = self.space.structure_key(config)
        entry = self.nests.get(key)
        if entry is None:
            sch = self.space.apply(config)
            threads = getattr(self.space, "threads", None) or sch.target.cores
            entry = (_lowered(sch), threads, sch.target.cache_bytes)
            if len(self.nests) >= self.max_structures:
                self.nests.pop(next(iter(self.nests)))
            self.nests[key] = entry
        nest, threads, cache_bytes = entry
        values = self.space.runtime_values(config)
        try:
            params = {id(p): values[p.name] for p in nest.params}
        except KeyError:  # a template named its parameters its own way: bind them by applying
            sch = self.space.apply(config)
            params = {id(p): v for p, v in sch.params}
            nest = _lowered(sch)
        return featurize(nest, params, threads, cache_bytes)

    def many(self, configs) -> np.ndarray:
        if not configs:
            return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
        return np.stack([self(c) for c in configs])


def _lowered(sch):
    """The loop nest features are read from: the GPU nest (block and thread loops, shared
    memory) on GPU targets, where blocks count as the parallel extent and SMs as threads."""
    if sch.target.is_gpu:
        from schedules.gpu_lower import lower_gpu
        return lower_gpu(sch)
    from schedules import lower
    return lower(sch)


def featurize_config(op, config, target="cpu") -> np.ndarray:
    return FeatureExtractor(op, target)(config)


def featurize_many(op, configs, target="cpu") -> np.ndarray:
    return FeatureExtractor(op, target).many(list(configs))
