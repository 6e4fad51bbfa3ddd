"""Schedule primitives on an operator's stages, and knob declaration for spaces and templates."""
from __future__ import annotations

import contextlib
import dataclasses

from .errors import ConfigError, ScheduleError
from .expr import Const, Load, Var, substitute, walk
from .loopnest import Param, ceildiv, mul
from .space import ChoiceKnob, Config, SplitKnob, param_name


class Split:
    __slots__ = ("parent", "outer", "inner", "factor")

    def __init__(self, parent, outer, inner, factor):
        self.parent, self.outer, self.inner, self.factor = parent, outer, inner, factor


class Fuse:
    __slots__ = ("outer", "inner", "fused")

    def __init__(self, outer, inner, fused):
        self.outer, self.inner, self.fused = outer, inner, fused


class StageSchedule:
    """The loops of one compute stage and where it is computed."""

    def __init__(self, schedule: "Schedule", tensor):
        self.schedule = schedule
        self.tensor = tensor
        self.name = tensor.name
        fresh = {}
        self.axis = tuple(self._root(a, fresh) for a in tensor.axes)
        self.reduce_axis = tuple(self._root(a, fresh) for a in tensor.reduce_axes)
        body = substitute(tensor.body, fresh)
        self.body = body
        self.leaves: list = list(self.axis) + list(self.reduce_axis)
        self.relations: list = []
        self.extent = {id(v): Const(v.extent, "int64") for v in self.leaves}
        self.kind = {id(a): "spatial" for a in self.axis} | {id(r): "reduce" for r in self.reduce_axis}
        self.annotations: dict = {}
        self.inlined = False
        self.attach = None        # (consumer StageSchedule, leaf Var) for compute_at
        self.epilogue_of = None   # anchor StageSchedule when fused as an epilogue
        self.cache_local = False  # accumulate in a local tile (cache_write)
        self.microkernel = None   # a MicroKernelPlan once tensorized
        self.window = None        # a WindowPlan once computed as a direct sliding window
        self.winograd = None      # a WinogradPlan once computed by Winograd's algorithm
        self.gpu = None           # a GPU plan (TiledPlan, RowPlan, FlatPlan) for a kernel's root
        self.next_row = False     # computed one row ahead, inside a row loop (compute_next_row)

    def _root(self, axis: Var, fresh: dict) -> Var:
        v = Var(f"{self.tensor.name}_{axis.name}", axis.extent, axis.kind)
        fresh[axis] = v
        return v

    def __repr__(self):
        return f"StageSchedule({self.name})"

    @property
    def is_reduction(self) -> bool:
        return bool(self.reduce_axis)

    def _check_leaf(self, v: Var, primitive: str) -> int:
        for pos, leaf in enumerate(self.leaves):
            if leaf is v:
                return pos
        raise ScheduleError(f"{primitive} on stage {self.name}: {getattr(v, 'name', v)} is not a "
                            f"current loop of this stage; loops are {[l.name for l in self.leaves]}")

    def _new(self, base: Var, suffix: str, kind: str) -> Var:
        v = Var(f"{base.name}_{suffix}", None, "loop")
        self.kind[id(v)] = kind
        return v

    # -- loop structure ------------------------------------------------------------------------
    def split(self, v: Var, factor) -> tuple:
        """Split loop v into (outer, inner) with inner extent `factor` (an int or a runtime knob)."""
        pos = self._check_leaf(v, "split")
        if isinstance(factor, int):
            if factor <= 0:
                raise ScheduleError(f"split on stage {self.name}: factor must be positive, got {factor}")
            factor = Const(factor, "int64")
        elif not isinstance(factor, Param):
            raise ScheduleError(f"split on stage {self.name}: factor must be an int or a runtime "
                                f"knob, got {factor!r}")
        kind = self.kind[id(v)]
        outer, inner = self._new(v, "o", kind), self._new(v, "i", kind)
        self.extent[id(outer)] = ceildiv(self.extent[id(v)], factor)
        self.extent[id(inner)] = factor
        self.relations.append(Split(v, outer, inner, factor))
        self.leaves[pos:pos + 1] = [outer, inner]
        return outer, inner

    def tile(self, v: Var, factors) -> list:
        """Split v into len(factors)+1 nested loops; factors run from outer to inner levels."""
        leaves, rest = [], v
        for f in reversed(list(factors)):
            rest, inner = self.split(rest, f)
            leaves.insert(0, inner)
        return [rest] + leaves

    def fuse(self, *vs: Var) -> Var:
        """Fuse adjacent loops, outermost first, into one loop over their product."""
        if len(vs) < 2:
            return vs[0]
        positions = [self._check_leaf(v, "fuse") for v in vs]
        kinds = {self.kind[id(v)] for v in vs}
        if len(kinds) > 1:
            raise ScheduleError(f"fuse on stage {self.name}: cannot fuse spatial and reduce loops "
                                f"{[v.name for v in vs]}")
        if positions != list(range(positions[0], positions[0] + len(vs))):
            raise ScheduleError(f"fuse on stage {self.name}: loops {[v.name for v in vs]} must be "
                                f"adjacent and in order; reorder them first")
        kind = kinds.pop()
        fused = vs[0]
        for v in vs[1:]:
            new = self._new(fused, "f", kind)
            self.extent[id(new)] = mul(self.extent[id(fused)], self.extent[id(v)])
            self.relations.append(Fuse(fused, v, new))
            pos = self._check_leaf(fused, "fuse")
            self.leaves[pos:pos + 2] = [new]
            fused = new
        return fused

    def reorder(self, *vs: Var) -> None:
        positions = sorted(self._check_leaf(v, "reorder") for v in vs)
        if len({id(v) for v in vs}) != len(vs):
            raise ScheduleError(f"reorder on stage {self.name}: a loop is listed twice")
        for pos, v in zip(positions, vs):
            self.leaves[pos] = v

    def _annotate(self, v: Var, kind: str) -> None:
        self._check_leaf(v, kind)
        self.annotations[id(v)] = kind

    def parallel(self, v: Var) -> None:
        if self.kind[id(v)] == "reduce":
            raise ScheduleError(f"parallel on stage {self.name}: {v.name} is a reduction loop; "
                                f"running it in parallel would race on the accumulator")
        self._annotate(v, "parallel")

    def vectorize(self, v: Var) -> None:
        self._annotate(v, "vectorized")

    def unroll(self, v: Var) -> None:
        self._annotate(v, "unrolled")

    # -- placement -----------------------------------------------------------------------------
    def compute_inline(self) -> None:
        if self.is_reduction:
            raise ScheduleError(f"compute_inline on stage {self.name}: a reduction cannot be "
                                f"inlined; use compute_at or keep it as its own loop nest")
        if self.schedule.op.is_output(self.tensor):
            raise ScheduleError(f"compute_inline on stage {self.name}: it is an output of "
                                f"{self.schedule.op.name} and must be stored")
        self.inlined = True

    def compute_at(self, other: "StageSchedule", leaf: Var) -> None:
        """Compute this stage inside `other`'s loop `leaf`.

        If this stage produces what `other` reads, it is computed there once per point of the
        axes fixed at `leaf` (a row statistic of softmax, say). If it consumes `other`
        element by element, it becomes `other`'s epilogue, applied while the tile is local.
        """
        other._check_leaf(leaf, "compute_at")
        if self.schedule.reads_through_inline(self, other):
            self.epilogue_of = (other, leaf)
        elif self.schedule.reads_through_inline(other, self, through_stored=True):
            self.attach = (other, leaf)
        else:
            raise ScheduleError(f"compute_at: stage {self.name} neither produces for nor consumes "
                                f"stage {other.name}")

    def cache_write(self, scope: str = "local") -> None:
        if scope != "local":
            raise ScheduleError(f"cache_write on stage {self.name}: only 'local' is supported on CPU")
        if not self.is_reduction:
            raise ScheduleError(f"cache_write on stage {self.name}: only reductions accumulate")
        self.cache_local = True

    def compute_next_row(self) -> None:
        """A row reduction of inputs, attached per row (softmax's max), is computed for the
        next row inside its consumer's loops over the current row (softmax's scaling): the
        next row then streams in from memory while the current row's arithmetic runs. The
        first row of each parallel chunk is computed as before. Lowering checks that the
        consumer's loops below the attach point cover one whole row of the reduction's length."""
        if not self.is_reduction or len(self.axis) != 1 or len(self.reduce_axis) != 1:
            raise ScheduleError(f"compute_next_row on stage {self.name}: only a reduction of one "
                                f"axis over one reduce axis (a row statistic) is computed ahead")
        self.next_row = True


    def tensorize(self, rows: int, vecs: int, lanes: int, mc=96, kc=256, nc=2048,
                  parts_m=1, parts_n=1, order: str = "nk", transposed: bool = False,
                  direct: bool = False, b_in_place: bool = False) -> None:
        """Compute this contraction with a rows x (vecs*lanes) SIMD outer-product micro-kernel.

        Blocks of mc rows and nc columns, kc deep, are packed into panels (the `pack`
        decision of a matmul) and the tile stays in vector registers for the whole kc loop;
        epilogues run on each finished tile while it is in L1. The work is split into
        parts_m x parts_n parallel parts. Blocks and parts may be runtime knobs. order "nk"
        packs A per mc block inside each k block (GotoBLAS); "kn" runs k blocks outermost and
        packs all rows of a part once per k block, for short, wide problems. `transposed`
        exchanges rows and columns: the vector lanes run along the output's rows instead.
        `direct` reads the rows' operand unpacked where it is an affine load (a convolution's
        pixels from its padded input, through tables of pixel and tap offsets); elsewhere it
        is packed as usual. `b_in_place` reads the columns' operand where it lies instead of
        packing it, where it is a row-major load along the columns and every tile's columns
        are whole (a batch matmul's per-head B); elsewhere it is packed as usual.
        """
        from .tensorize import MicroKernelPlan
        if not self.is_reduction:
            raise ScheduleError(f"tensorize on stage {self.name}: only a reduction (a contraction) "
                                f"can run on the micro-kernel")
        for label, v in (("rows", rows), ("vecs", vecs)):
            if not isinstance(v, int) or not 1 <= v <= 16:
                raise ScheduleError(f"tensorize on stage {self.name}: {label} must be an int in 1..16, got {v!r}")
        if order not in ("nk", "kn"):
            raise ScheduleError(f"tensorize on stage {self.name}: order must be 'nk' or 'kn', got {order!r}")
        if lanes not in (4, 8, 16):
            raise ScheduleError(f"tensorize on stage {self.name}: lanes must be 4, 8 or 16, got {lanes!r}")
        blocks = []
        for label, v in (("mc", mc), ("kc", kc), ("nc", nc), ("parts_m", parts_m), ("parts_n", parts_n)):
            if isinstance(v, int) and v >= 1:
                v = Const(v, "int64")
            elif not isinstance(v, Param):
                raise ScheduleError(f"tensorize on stage {self.name}: {label} must be a positive int "
                                    f"or a runtime knob, got {v!r}")
            blocks.append(v)
        self.microkernel = MicroKernelPlan(rows, vecs, lanes, *blocks, order=order, transposed=bool(transposed),
                                          direct=bool(direct), b_in_place=bool(b_in_place))

    def winograd_kernel(self, conv, m: int, rows: int, vecs: int, lanes: int, split: str = "auto") -> None:
        """Compute this 3x3 convolution, and the epilogue finishing it, by Winograd's
        F(m x m, 3x3): transformed input tiles times transformed weights on the micro-kernel,
        then the inverse transform (schedules/winograd.py). `conv` is what
        winograd_match.match_winograd found for this stage."""
        from .winograd_match import GEMM_ROWS, GEMM_VECS, SPLITS, TILE_SIZES, WinogradPlan
        for label, value, legal in (("m", m, TILE_SIZES), ("rows", rows, GEMM_ROWS), ("vecs", vecs, GEMM_VECS),
                                    ("lanes", lanes, (4, 8, 16)), ("split", split, SPLITS)):
            if value not in legal:
                raise ScheduleError(f"winograd_kernel on stage {self.name}: {label} must be one of {legal}, "
                                    f"got {value!r}")
        self.winograd = WinogradPlan(conv, m, rows, vecs, lanes, split)

    def window_kernel(self, block=256, planes: bool = False, flat: bool = False) -> None:
        """Compute this sliding-window reduction (depthwise convolution, pooling) directly: taps
        unrolled, the last output axis vectorized in chunks of `block` (an int or a runtime
        knob), border columns peeled, and no padded copy of the input. With `planes`, each
        output plane is instead one flat vectorized loop over a padded copy of its input plane
        (for short rows; unit-stride windows only, see window_plane.plane_layout). With `flat`,
        each output plane is one flat vectorized loop over the input plane in place, reads
        that wrap around a row masked (stride 1 and 'same' padding, see window_flat)."""
        from .window import WindowPlan
        if not self.is_reduction:
            raise ScheduleError(f"window_kernel on stage {self.name}: only a reduction over a window applies")
        if isinstance(block, int) and not isinstance(block, bool) and block >= 1:
            block = Const(block, "int64")
        elif not isinstance(block, Param):
            raise ScheduleError(f"window_kernel on stage {self.name}: block must be a positive int "
                                f"or a runtime knob, got {block!r}")
        if planes and flat:
            raise ScheduleError(f"window_kernel on stage {self.name}: choose planes or flat, not both")
        self.window = WindowPlan(block, bool(planes), bool(flat))


    # -- GPU plans: what a GPU template sets on a kernel's root stage ------------------------
    def gpu_tiled(self, vthread, threads, inner, chunk, shared=(), unroll: int = 4) -> None:
        """GPU: compute this reduction in tiles: per spatial axis a block covers
        vthread * threads * inner points (each thread vthread * inner of them, in registers);
        reduce axes advance `chunk` points per step, with the inputs named in `shared` staged
        in shared memory each step; reduce loops up to `unroll` long are unrolled."""
        from .gpu_sketch import TiledPlan
        if not self.is_reduction:
            raise ScheduleError(f"gpu_tiled on stage {self.name}: only a reduction is tiled; use gpu_flat")
        n, m = len(self.axis), len(self.reduce_axis)
        for label, values, count in (("vthread", vthread, n), ("threads", threads, n), ("inner", inner, n),
                                     ("chunk", chunk, m)):
            values = tuple(values)
            if len(values) != count or not all(isinstance(v, int) and v >= 1 for v in values):
                raise ScheduleError(f"gpu_tiled on stage {self.name}: {label} needs {count} positive "
                                    f"ints (one per {'reduce ' if label == 'chunk' else ''}axis), got {values}")
        for axis, v, t, i in zip(self.tensor.axes, vthread, threads, inner):
            if v * t * i > axis.extent:
                raise ScheduleError(f"gpu_tiled on stage {self.name}: a tile of {v}x{t}x{i} exceeds "
                                    f"axis {axis.name} of {axis.extent}")
        for axis, c in zip(self.tensor.reduce_axes, chunk):
            if c > axis.extent:
                raise ScheduleError(f"gpu_tiled on stage {self.name}: chunk {c} exceeds reduce axis "
                                    f"{axis.name} of {axis.extent}")
        from .gpu_staging import affine_reads
        allowed = {r.tensor.name for r in affine_reads(self.schedule, self)}
        if not set(shared) <= allowed:
            raise ScheduleError(f"gpu_tiled on stage {self.name}: cannot stage {sorted(set(shared) - allowed)} "
                                f"in shared memory; inputs read at one affine index: {sorted(allowed)}")
        self.gpu = TiledPlan(tuple(vthread), tuple(threads), tuple(inner), tuple(chunk), tuple(shared), int(unroll))

    def gpu_rows(self, row_threads: int, rows: int = 1) -> None:
        """GPU: `row_threads` threads per row (a power of two from 32 to 1024) split this
        reduction, or the statistics attached to this stage and then its row, `rows` rows per block."""
        from .gpu_sketch import RowPlan
        if row_threads not in (32, 64, 128, 256, 512, 1024) or not isinstance(rows, int) or rows < 1:
            raise ScheduleError(f"gpu_rows on stage {self.name}: row_threads must be a power of two "
                                f"from 32 to 1024 and rows a positive int, got {row_threads}, {rows}")
        self.gpu = RowPlan(row_threads, rows)

    def gpu_flat(self, threads: int = 256, per_thread: int = 1) -> None:
        """GPU: an elementwise stage over all its points, `per_thread` per thread."""
        from .gpu_sketch import FlatPlan
        if self.is_reduction:
            raise ScheduleError(f"gpu_flat on stage {self.name}: a reduction needs gpu_tiled or gpu_rows")
        if not (isinstance(threads, int) and 1 <= threads and isinstance(per_thread, int) and per_thread >= 1):
            raise ScheduleError(f"gpu_flat on stage {self.name}: threads and per_thread must be positive "
                                f"ints, got {threads}, {per_thread}")
        self.gpu = FlatPlan(threads, per_thread)


class Schedule:
    """Primitives applied to an operator. Knob calls return config values (or defaults while a
    space is being recorded), so sketch rules and expert templates share one mechanism."""

    def __init__(self, op, target, config: Config | None = None):
        self.op = op
        self.target = target
        self.config = config
        self.recording = config is None
        self.knobs: list = []
        self.params: list = []          # (Param, value) in declaration order
        self.packs: list = []           # (input tensor, axis, factor)
        self._conditions: list = []     # (knob name, allowed values) for knobs declared now
        self.violations: list = []      # device limits this config breaks (GPU spaces)
        self.fusion = None              # GPU sketches: which stages share a kernel
        self.stage_list = [StageSchedule(self, t) for t in op.stages]
        self._by_id = {id(s.tensor): s for s in self.stage_list}

    def __getitem__(self, key) -> StageSchedule:
        if isinstance(key, str):
            key = self.op.stage(key)
        try:
            return self._by_id[id(key)]
        except KeyError:
            raise ScheduleError(f"{key!r} is not a compute stage of {self.op.name}") from None

    def reads_through_inline(self, consumer: StageSchedule, producer: StageSchedule,
                             through_stored: bool = False) -> bool:
        """Whether consumer reads producer's values, directly or through inlined stages (or,
        with through_stored, through any intermediate stage: a row max read by an exp that
        is itself computed inside the consumer's loops)."""
        for node in walk(consumer.body):
            if isinstance(node, Load) and not node.tensor.is_placeholder:
                inner = self._by_id.get(id(node.tensor))
                if inner is producer or (inner is not None and (inner.inlined or through_stored)
                                         and self.reads_through_inline(inner, producer, through_stored)):
                    return True
        return False

    # -- knobs ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def only_when(self, knob_name: str, values):
        """Knobs declared inside matter only when `knob_name` takes one of `values`; search
        then treats configs differing only in them as the same kernel."""
        self._conditions.append((knob_name, tuple(values)))
        try:
            yield
        finally:
            self._conditions.pop()

    def _declare(self, knob):
        if self._conditions:
            knob = dataclasses.replace(knob, active_when=tuple(self._conditions))
        if any(k.name == knob.name for k in self.knobs):
            raise ScheduleError(f"knob {knob.name} is declared twice for {self.op.name}")
        self.knobs.append(knob)
        if self.recording:
            return knob.default()
        if knob.name not in self.config:
            raise ConfigError(f"config for {self.op.name} lacks knob {knob.name}")
        value = knob.canonical(self.config[knob.name])
        if value is None:
            raise ConfigError(f"knob {knob.name}={self.config[knob.name]!r} is not legal for {self.op.name}")
        return value

    def _runtime(self, name: str, value: int) -> Param:
        p = Param(param_name(name))
        self.params.append((p, int(value)))
        return p

    def knob(self, name: str, choices, default=None, runtime: bool = False):
        """Declare a categorical knob and return its value for this schedule."""
        choices = tuple(choices)
        if not choices:
            raise ScheduleError(f"knob {name}: needs at least one choice")
        value = self._declare(ChoiceKnob(name, choices, default, runtime))
        if runtime:
            if not all(isinstance(c, int) and not isinstance(c, bool) for c in choices):
                raise ScheduleError(f"knob {name}: runtime knobs must be integers")
            return self._runtime(name, value)
        return value

    def split_knob(self, name: str, extent: int, runtime, default, max_innermost: int = 64) -> list:
        """Declare split factors for an axis; runtime levels come back as kernel parameters."""
        knob = SplitKnob(name, int(extent), tuple(bool(r) for r in runtime), tuple(default), max_innermost)
        value = self._declare(knob)
        return [self._runtime(f"{name}_{lvl}", f) if rt else f
                for lvl, (f, rt) in enumerate(zip(value, knob.runtime))]

    def require(self, ok: bool, message: str) -> None:
        """A limit of the target (threads, shared memory, registers) that this config must
        respect; a config breaking one is illegal, and the space never samples it."""
        if not ok:
            self.violations.append(message)

    def param_values(self) -> tuple:
        return tuple(v for _, v in self.params)

    # -- layout --------------------------------------------------------------------------------
    def pack(self, tensor, axis: int, factor: int) -> None:
        """Store input `tensor` with `axis` split into panels of `factor`, panels outermost.

        A (K, N) matrix packed on axis 1 by 16 becomes (ceil(N/16), K, 16): each panel is
        contiguous, so an inner loop over 16 columns walks memory with unit stride.
        """
        if not any(tensor is t for t in self.op.inputs):
            raise ScheduleError(f"pack: {getattr(tensor, 'name', tensor)} is not an input of {self.op.name}")
        if not 0 <= axis < tensor.ndim:
            raise ScheduleError(f"pack {tensor.name}: axis {axis} out of range for shape {tensor.shape}")
        if not isinstance(factor, int) or factor < 1:
            raise ScheduleError(f"pack {tensor.name}: factor must be a positive int, got {factor!r}")
        if any(t is tensor for t, _, _ in self.packs):
            raise ScheduleError(f"pack {tensor.name}: already packed")
        self.packs.append((tensor, axis, factor))
