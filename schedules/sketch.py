"""CPU sketch rules: derive a schedule space for any te operator (inline, fuse, tile, parallel)."""
from __future__ import annotations

import contextlib
import math

from .bounds import affine_coefficient
from .contraction import expand_inlined, find_contraction
from .errors import ScheduleError
from .expr import Load, Unary, Var, substitute, walk
from .loopnest import flat_offset
from .schedule import Schedule
from .space import Space
from .window import is_window
from .winograd_match import GEMM_ROWS, GEMM_VECS, SPLITS, TILE_SIZES, default_tile_size, match_winograd
from .window_flat import flat_geometry
from .window_plane import plane_layout
from .target import as_target
from .templates import template_for

_SPACES: dict = {}


def space_for(op, target) -> Space:
    tgt = as_target(target)
    if tgt.kind not in ("cpu", "cuda", "cuda-sim"):
        raise ValueError(f"no schedule rules for target kind {tgt.kind!r}; use 'cpu', 'cuda' or 'cuda-sim'")
    family = "cuda" if tgt.is_gpu else "cpu"
    template = template_for(op.name, family)
    key = (op.workload_key, tgt.key, id(template.fn) if template else None)
    if key in _SPACES:
        return _SPACES[key]

    def schedule_fn(sch: Schedule):
        if template is None or template.mode == "extend":
            if family == "cuda":
                from .gpu_sketch import gpu_sketch
                gpu_sketch(sch)
            else:
                cpu_sketch(sch)
        elif family == "cuda":
            # Which stages share a kernel is not a choice: a replacing GPU template sets the
            # plans of the kernels' roots (sch.fusion.roots()) with gpu_tiled/rows/flat.
            sch.fusion = fuse_stages(sch, materialize=False)
        if template is not None:
            template.fn(sch)

    def apply(config) -> Schedule:
        sch = Schedule(op, tgt, config)
        schedule_fn(sch)
        return sch

    recording = Schedule(op, tgt, None)
    schedule_fn(recording)
    origin = f"template:{template.mode}:{template.fn.__qualname__}" if template else "generated"

    def constraint(config):
        violations = apply(config).violations
        return "; ".join(violations) if violations else None

    space = Space(op.name, op.workload_key, tgt.kind, tuple(recording.knobs), apply, origin,
                  constraint if family == "cuda" else None)
    if family == "cuda" and recording.violations:
        raise ScheduleError(f"the default GPU schedule of {op.name} ({op.workload_key}) breaks the "
                            f"limits of {tgt.model}: {'; '.join(recording.violations)}")
    _SPACES[key] = space
    return space


def expanded_loads(sch: Schedule, st) -> list:
    """(tensor, indices) read by stage st once inlined stages are substituted, in st's vars."""
    out = []

    def visit(body):
        for node in walk(body):
            if isinstance(node, Load):
                t = node.tensor
                if not t.is_placeholder and sch[t].inlined:
                    prod = sch[t]
                    visit(substitute(prod.body, dict(zip(prod.axis, node.indices))))
                else:
                    out.append((t, node.indices))
    visit(st.body)
    return out


class Fusion:
    """Which stages keep loop nests of their own and what is fused into them (rules 1-3)."""

    def __init__(self, live, epilogue_of, attach_to, positions, mapped_axes):
        self.live = live                # stages that are not inlined, in topological order
        self.epilogue_of = epilogue_of  # id(stage) -> the root stage whose tile it finishes
        self.attach_to = attach_to      # id(stage) -> the stage in whose row loop it is computed
        self.positions = positions      # id(attached stage) -> the root axis of each of its axes
        self.mapped_axes = mapped_axes  # id(root) -> positions of axes its attached stages keep

    def roots(self) -> list:
        return [st for st in self.live if id(st) not in self.epilogue_of and id(st) not in self.attach_to]

    def epilogues(self, root) -> list:
        return [e for e in self.live if self.epilogue_of.get(id(e)) is root]

    def attached(self, root) -> list:
        return [p for p in self.live if self.attach_to.get(id(p)) is root]


def cpu_sketch(sch: Schedule) -> None:
    fusion = fuse_stages(sch, materialize=True)
    live, epilogue_of, attach_to = fusion.live, fusion.epilogue_of, fusion.attach_to
    for st in live:
        if id(st) in epilogue_of or id(st) in attach_to:
            continue
        if st.is_reduction:
            _tile_reduction(sch, st, [e for e in live if epilogue_of.get(id(e)) is st])
        else:
            _tile_elementwise(sch, st, [e for e in live if epilogue_of.get(id(e)) is st],
                              [p for p in live if attach_to.get(id(p)) is st],
                              fusion.mapped_axes.get(id(st), set()))


def fuse_stages(sch: Schedule, materialize: bool) -> Fusion:
    """Rules 1-3, shared by the CPU and GPU sketches. With `materialize`, a costly
    intermediate read by several stages gets a knob to be computed once per row."""
    op = sch.op
    stages = sch.stage_list
    # Rule 1: elementwise intermediates are recomputed where they are read, except that a
    # costly one (a transcendental) read by several stages may be computed once per row.
    for st in stages:
        if not st.is_reduction and not op.is_output(st.tensor):
            if not (materialize and _materialize_rows(sch, st, stages)):
                st.compute_inline()
    live = [st for st in stages if not st.inlined]
    loads = {id(st): expanded_loads(sch, st) for st in live}
    consumers = {id(st): [c for c in live if any(t is st.tensor for t, _ in loads[id(c)])] for st in live}

    # Rule 2: an elementwise consumer reading a stage point-for-point becomes its epilogue,
    # unless something else it reads is itself computed from that stage (no cycle of nests).
    def depends_on(x, producer, seen=()):
        return any(t is producer.tensor or (not t.is_placeholder and id(t) not in seen and
                                             depends_on(sch[t], producer, seen + (id(t),)))
                   for t, _ in loads[id(x)])

    epilogue_of = {}
    for st in live:
        if st.is_reduction:
            continue
        for producer in live:
            reads = [idx for t, idx in loads[id(st)] if t is producer.tensor]
            if not reads or producer.tensor.shape != st.tensor.shape or not all(
                    all(i is a for i, a in zip(idx, st.axis)) for idx in reads):
                continue
            others = {id(t): sch[t] for t, _ in loads[id(st)]
                      if not t.is_placeholder and t is not producer.tensor}
            if any(depends_on(o, producer) for o in others.values()):
                continue
            root = producer
            while id(root) in epilogue_of:
                root = epilogue_of[id(root)]
            epilogue_of[id(st)] = root
            break

    # Rule 3: a reduction read as a broadcast statistic (a row max, a mean) is computed
    # inside the loop of the stage that consumes it, once per point of the axes it keeps.
    attach_to, positions = {}, {}
    for st in reversed(live):
        if id(st) in epilogue_of or not (st.is_reduction or not op.is_output(st.tensor)):
            continue
        targets = {id(attach_to.get(id(c), epilogue_of.get(id(c), c))) for c in consumers[id(st)]}
        if len(targets) != 1:
            continue
        target_id = targets.pop()
        target = next(s for s in live if id(s) == target_id)
        if target.is_reduction or target.tensor.ndim < st.tensor.ndim + st.is_reduction \
                or id(target) in epilogue_of:
            continue
        pattern = _read_pattern(st, target, consumers[id(st)], loads, positions,
                                partial=not st.is_reduction)
        if pattern is None:
            continue  # a kept intermediate then gets its own nest and a buffer
        attach_to[id(st)] = target
        positions[id(st)] = pattern

    mapped_axes = {}
    for pid, target in attach_to.items():
        mapped_axes.setdefault(id(target), set()).update(p for p in positions[pid] if p is not None)
    return Fusion(live, epilogue_of, attach_to, positions, mapped_axes)


def _read_pattern(producer, target, readers, loads, positions, partial=False):
    """The target axes (by position) at which every reader reads `producer`, if they all agree.

    A reader is the target itself or a stage already attached to it (whose own axes map to
    the target's through `positions`). Each producer axis must map to a distinct target axis
    of the same extent, so computing the producer inside the target's loops covers it exactly.
    With `partial`, axes read at other points (a reduction's k) are None: the producer is
    then computed whole along them, into a row buffer, once per point of the mapped axes.
    """
    pattern = None
    for c in readers:
        for t, idx in loads[id(c)]:
            if t is not producer.tensor:
                continue
            pos = []
            for i in idx:
                hits = [k for k, a in enumerate(c.axis) if i is a]
                mapped = (hits[0] if c is target else positions[id(c)][hits[0]]) if hits else None
                if mapped is None and not partial:
                    return None
                pos.append(mapped)
            if pattern is not None and pos != pattern:
                if not partial:
                    return None
                pos = [a if a == b else None for a, b in zip(pos, pattern)]
            pattern = pos
    if pattern is None:
        return None
    known = [p for p in pattern if p is not None]
    if len(set(known)) != len(known) or (partial and (not known or len(known) == len(pattern))):
        return None
    if any(p is not None and producer.tensor.shape[d] != target.tensor.shape[p]
           for d, p in enumerate(pattern)):
        return None
    return pattern


# Calls costly enough that computing them twice per element shows (softmax's exp).
COSTLY_CALLS = ("exp", "log", "tanh", "erf", "sigmoid")


def _materialize_rows(sch: Schedule, st, stages) -> bool:
    """Knob: a costly elementwise intermediate read by two or more stages is computed once
    per row into a buffer that stays in L1, instead of being recomputed by every reader."""
    if not any(isinstance(n, Unary) and n.fn in COSTLY_CALLS for n in walk(st.body)):
        return False
    readers = [o for o in stages if o is not st and any(
        isinstance(n, Load) and n.tensor is st.tensor for n in walk(o.body))]
    if len(readers) < 2 or st.tensor.ndim < 2:
        return False
    return sch.knob(f"{st.name}.compute", ("rows", "inline"), default="rows") == "rows"


def _knob_name(sch, stage: str, axis: str) -> str:
    """stage.axis, made unique when two axes of a stage share a name."""
    base = f"{stage}.{axis}"
    taken = {k.name for k in sch.knobs}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}#{n}"
    return name


def _divisor_or_pow2(extent: int, cap: int) -> int:
    """The largest factor <= cap that divides extent, if it is at least cap/2; else cap."""
    cap = min(cap, extent)
    for f in range(cap, max(1, cap // 2) - 1, -1):
        if extent % f == 0:
            return f
    return 1 << (cap.bit_length() - 1)


def _fits(factors, extent):
    out, budget = [], extent
    for f in reversed(factors):
        f = max(1, min(f, budget))
        f = 1 << (f.bit_length() - 1) if extent % f else f
        out.insert(0, f)
        budget //= f
    return tuple(out)


def _tile_reduction(sch: Schedule, st, epilogues) -> None:
    body = expand_inlined(sch, st)
    con = find_contraction(st.axis, st.reduce_axis, body, st.tensor.dtype)
    window = con is None and is_window(st.axis, st.reduce_axis, body)
    winograd = match_winograd(sch, st, body, epilogues) if con is not None else None
    if con is not None:
        kernel = _kernel_choice(sch, st, con, winograd is not None)
    elif window:
        kernel = sch.knob(f"{st.name}.kernel", ("window", "tiled"), default="window")
    else:
        kernel = "tiled"
    with sch.only_when(f"{st.name}.kernel", ("tiled",)) if con is not None or window else contextlib.nullcontext():
        _tiled_reduction(sch, st, epilogues)
    if con is not None:
        with sch.only_when(f"{st.name}.kernel", ("micro",)):
            _micro_kernel_rule(sch, st, con, kernel == "micro")
    if winograd is not None:
        with sch.only_when(f"{st.name}.kernel", ("winograd",)):
            _winograd_rule(sch, st, winograd, kernel == "winograd")
    if window:
        with sch.only_when(f"{st.name}.kernel", ("window",)):
            layout = _window_layout(sch, st, body)
            with sch.only_when(f"{st.name}.win_layout", ("rows",)) if layout else contextlib.nullcontext():
                # Only the chunk of the vectorized column loop is tuned, and it is a runtime
                # knob: every row-layout config shares one compile.
                block = sch.knob(f"{st.name}.win_block", WINDOW_BLOCKS, default=256, runtime=True)
        if kernel == "window":
            st.window_kernel(block, planes=layout == "planes", flat=layout == "flat")


WINDOW_BLOCKS = (16, 32, 64, 128, 256)
# Output rows narrower than this start as whole planes: their rows fill few vectors.
PLANE_ROWS_BELOW = 64
# 'Same'-padded windows with rows at least this wide start in place (window_flat). On Zen 4,
# 3x3 depthwise on 2 threads: 112-wide rows 0.079 ms flat against 0.099 by rows, 56-wide
# 0.090 flat against 0.109 as padded planes; 14-wide rows lost (0.027 against 0.022), their
# border rows and corners being a large share of a plane.
FLAT_ROWS_FROM = 32


def _window_layout(sch: Schedule, st, body):
    """The win_layout knob where a plane layout applies: "rows", "planes" (a padded copy of
    each plane) and, for 'same'-padded windows, "flat" (each plane in place); None (no knob,
    so the space of a strided window keeps its version) where no plane layout applies."""
    layout = plane_layout(st.axis, st.reduce_axis, body.source)
    if layout is None:
        return None
    narrow = st.axis[-1].extent < PLANE_ROWS_BELOW
    if flat_geometry(layout) is not None:
        default = "planes" if st.axis[-1].extent < FLAT_ROWS_FROM else "flat"
        return sch.knob(f"{st.name}.win_layout", ("rows", "planes", "flat"), default=default)
    return sch.knob(f"{st.name}.win_layout", ("rows", "planes"), default="planes" if narrow else "rows")


def _kernel_choice(sch: Schedule, st, con, winograd: bool) -> str:
    lanes = sch.target.vector_lanes(st.tensor.dtype)
    _, m, n = con.extents(st.axis)
    if winograd:
        # Only 3x3 stride-1 'same' NCHW convs get the choice, so other spaces keep
        # their version. The direct kernels of ResNet's 3x3 layers sit at the FMA peak, level
        # with ONNX Runtime; Winograd's 2.25-4x fewer multiplies won 1.4-2.6x (the probe,
        # benchmarks/winograd_probe.py), but it pays only with enough channels to fill its GEMMs.
        channels_in, channels_out = st.reduce_axis[0].extent, m
        return sch.knob(f"{st.name}.kernel", ("micro", "tiled", "winograd"),
                        default="winograd" if min(channels_in, channels_out) >= WINOGRAD_CHANNELS_FROM else
                        "micro" if m >= 4 and n >= lanes else "tiled")
    return sch.knob(f"{st.name}.kernel", ("micro", "tiled"),
                    default="micro" if m >= 4 and n >= lanes else "tiled")


# Channels (in and out) from which Winograd is the default kernel of an eligible conv.
WINOGRAD_CHANNELS_FROM = 32


def _winograd_rule(sch: Schedule, st, conv, use: bool) -> None:
    """Winograd's knobs: the tile size (neither wins everywhere), the GEMM register tile and
    the threads' split of the GEMMs and the output transform; all structural."""
    lanes = sch.target.vector_lanes(st.tensor.dtype)
    m = sch.knob(f"{st.name}.wino_m", TILE_SIZES, default=default_tile_size(conv))
    rows = sch.knob(f"{st.name}.wino_rows", GEMM_ROWS, default=8)
    vecs = sch.knob(f"{st.name}.wino_vecs", GEMM_VECS, default=2 if conv.K >= 2 * lanes else 1)
    split = sch.knob(f"{st.name}.wino_split", SPLITS, default="auto")
    if use:
        st.winograd_kernel(conv, m, rows, vecs, lanes, split)


def _tiled_reduction(sch: Schedule, st, epilogues) -> None:
    name = st.name
    lanes = sch.target.vector_lanes(st.tensor.dtype)
    # Which loop should be innermost: the one that walks most inputs with unit stride. A read
    # like data[..., ow*s + rs] moves with both; the spatial loop wins it, since it is the
    # vectorized one and reduce axes are often tiny (3x3 windows).
    last_s, last_r = st.axis[-1], st.reduce_axis[-1]
    spatial_contig = reduce_contig = 0
    for _, idx in expanded_loads(sch, st):
        used = {id(v) for v in walk(idx[-1])} if idx else set()
        if id(last_s) in used:
            spatial_contig += 1
        elif id(last_r) in used:
            reduce_contig += 1
    long_reduction = st.tensor.reduce_axes[-1].extent >= 16
    default_order = "SSRSSR" if reduce_contig > spatial_contig and long_reduction else "SSRSRS"
    order = sch.knob(f"{name}.order", ("SSRSRS", "SSRSSR"), default=default_order)
    unroll = sch.knob(f"{name}.unroll", (0, 16, 64), default=16)

    # The innermost loop of the last axis is LLVM's vectorization target. Its trip count is a
    # runtime knob: a small constant trip count gets fully unrolled and then left scalar.
    levels = []
    n = len(st.axis)
    for d, (axis, te_axis) in enumerate(zip(st.axis, st.tensor.axes)):
        ext = te_axis.extent
        last = d == n - 1
        if last:
            inner = _divisor_or_pow2(ext, 8 * lanes) if default_order == "SSRSRS" else 1
            default = _fits((1, 1, inner), ext)
        elif d == n - 2:
            default = _fits((1, 8, 4), ext)
        else:
            default = (1, 1, 1)
        factors = sch.split_knob(_knob_name(sch, name, te_axis.name), ext, (True, True, last), default,
                                 max_innermost=256 if last else 16)
        levels.append(st.tile(axis, factors))
    rlevels = []
    for axis, te_axis in zip(st.reduce_axis, st.tensor.reduce_axes):
        ext = te_axis.extent
        default = (_fits((64 if default_order == "SSRSRS" else 256,), ext)
                   if axis is last_r else (ext,) if ext <= 16 else _fits((16,), ext))
        factors = sch.split_knob(_knob_name(sch, name, te_axis.name), ext, (True,), default, max_innermost=4096)
        rlevels.append(st.tile(axis, factors))
    s0, s1, s2, s3 = ([lv[k] for lv in levels] for k in range(4))
    r0, r1 = ([lv[k] for lv in rlevels] for k in range(2))
    inner = s3 + r1 if order == "SSRSSR" else r1 + s3
    st.reorder(*(s0 + s1 + r0 + s2 + inner))
    st.parallel(st.fuse(*s0))
    st.cache_write("local")
    _unroll_constant_tail(st, s3, unroll, vector_last=order == "SSRSRS")
    for e in epilogues:
        e.compute_at(st, s1[-1])


# Micro-kernel knob choices. Register tiles: rows x vecs vectors of accumulators, plus vecs
# B vectors and one broadcast, must fit the 16 vector registers of AVX2 to avoid spills.
MICRO_ROWS = (4, 6, 8)
MICRO_VECS = (1, 2, 3)
MICRO_MC = (24, 48, 96, 144, 192, 288)
MICRO_KC = (64, 128, 192, 256, 384, 512)
# Deeper k blocks, offered only where the reduction is at least DEEP_KC_FROM long (matmul
# 2048, dense 128x768x3072, conv 3x3 from 256 channels; other spaces keep their version):
# matmul 2048^3 at its tuned tile took 84.3 ms at kc 256, 82.1 at 512 and 80.8 at 768 and
# 1024 (one process, median of 5 alternating rounds).
MICRO_KC_DEEP = (768, 1024)
DEEP_KC_FROM = 2048
MICRO_NC = (256, 512, 1024, 2048, 4096)
MICRO_PARTS = (1, 2, 4, 8, 16)


def _micro_kernel_rule(sch: Schedule, st, con, use: bool) -> None:
    """A contraction may run on the SIMD outer-product micro-kernel over packed panels
    (the tiled loops above stay as the alternative). Only the tile shape, vector width and
    loop order change the code; block sizes and the parallel split are runtime knobs."""
    name = st.name
    lanes = sch.target.vector_lanes(st.tensor.dtype)
    batch, m, n = con.extents(st.axis)
    transposed, row_choices = False, MICRO_ROWS
    windows = _sliding_windows(st, con)
    if _lane_fill(m, lanes) > _lane_fill(n, lanes) or windows:
        # Declared only here, so other spaces keep their version. Transposed, a conv's pixels
        # are read from the padded input unpacked, where packing copied each value once per
        # tap: 128x28x28 3x3 1.25 -> 1.09 ms and 64x56x56 1.22 -> 1.15 ms at untuned tiles.
        # Strided windows joined once swapped tiles stored their output from registers (the
        # 7x7 stride-2 stem, untuned: 1.425 -> 1.14 ms; it had lost, 1.36 -> 1.54, while the
        # whole output went through the swapped scratch). 1x1 convs, no window, measured the
        # same either way (0.535 -> 0.540 ms) and keep their space.
        gain = _lane_fill(m, lanes) - _lane_fill(n, lanes)
        transposed = sch.knob(f"{name}.mk_transposed", (False, True), default=gain > TRANSPOSE_GAIN or windows)
        if n % 8 and n % 7 == 0:
            # Pixels in rows of 7 (7x7, 14x14 outputs) tile whole at 7 rows: 49 pixels leave
            # one ragged 8-row tile, 12% of the work (512x7x7: 1.24-1.31 -> 1.09-1.17 ms).
            row_choices = tuple(sorted(MICRO_ROWS + (7,)))
        if transposed:
            m, n = n, m
    rows = sch.knob(f"{name}.mk_rows", row_choices, default=7 if transposed and 7 in row_choices
                    else 6 if m >= 6 else 4)
    vecs = sch.knob(f"{name}.mk_vecs", MICRO_VECS, default=2 if n >= 2 * lanes else 1)
    width = sch.knob(f"{name}.mk_lanes", (lanes, lanes // 2) if lanes >= 8 else (lanes,), default=lanes)
    order = sch.knob(f"{name}.mk_order", ("nk", "kn"), default="kn" if m <= 256 else "nk")
    b_in_place = False
    if _b_may_stay_in_place(sch, st, con, lanes):
        # Declared only here (a batch matmul's per-head B), so other spaces keep their version:
        # such a B is packed on every call, 32 KB per BERT head against 18 us of FMAs. Swapped
        # tiles read their B (the original A) packed whatever this says.
        b_in_place = sch.knob(f"{name}.mk_b_in_place", (False, True), default=False)
    cores = max(1, sch.target.cores)
    split_m = batch < cores and m >= n
    mc = sch.knob(f"{name}.mc", MICRO_MC, default=96, runtime=True)
    depth = math.prod(r.extent for r in st.reduce_axis)
    kc = sch.knob(f"{name}.kc", MICRO_KC + (MICRO_KC_DEEP if depth >= DEEP_KC_FROM else ()), default=256,
                  runtime=True)
    nc = sch.knob(f"{name}.nc", MICRO_NC, default=2048, runtime=True)
    parts_m = sch.knob(f"{name}.parts_m", MICRO_PARTS, runtime=True,
                       default=_nearest(MICRO_PARTS, cores) if split_m else 1)
    parts_n = sch.knob(f"{name}.parts_n", MICRO_PARTS, runtime=True,
                       default=_nearest(MICRO_PARTS, cores) if batch < cores and not split_m else 1)
    if use:
        # Swapped, the rows are a convolution's pixels: read from the padded input, unpacked
        # (13% off conv 256x14x14's call, which spent that long packing them).
        st.tensorize(rows, vecs, width, mc, kc, nc, parts_m, parts_n, order, transposed, direct=transposed,
                     b_in_place=b_in_place)


def _b_may_stay_in_place(sch, st, con, lanes: int) -> bool:
    """Whether B can be read where it lies (tensorize's _b_in_place decides per config): an
    input of the operator read at one batch axis or more (so no call can pack it once),
    row-major along the single column axis, one reduce axis, and N a multiple of the
    narrowest tile."""
    b = con.b
    if not (len(con.n) == 1 and len(st.reduce_axis) == 1 and isinstance(b, Load)
            and any(b.tensor is t for t in sch.op.inputs) and all(isinstance(d, int) for d in b.tensor.shape)):
        return False
    batch = {id(st.axis[d]) for d in con.batch}
    if not any(isinstance(v, Var) and id(v) in batch for v in walk(b)):
        return False
    flat = flat_offset(b.tensor.shape, b.indices)
    column, depth = affine_coefficient(flat, st.axis[con.n[0]]), affine_coefficient(flat, st.reduce_axis[0])
    return column == 1 and (depth or 0) > 0 and st.axis[con.n[0]].extent % max(1, lanes // 2) == 0


# Lanes on the output's rows by default when that fills this much more of the vectors.
TRANSPOSE_GAIN = 0.1


def _sliding_windows(st, con) -> bool:
    """Whether the column operand is a sliding window (a conv's pixels, at any stride): one of
    its indices moves with an output column axis and also moves with a reduce axis (a tap), so
    an im2col packing would copy each value once per tap (stride 1) or gather it strided."""
    cols = [st.axis[d] for d in con.n]
    for load in (x for x in walk(con.b) if isinstance(x, Load)):
        for index in load.indices:
            if any((affine_coefficient(index, a) or 0) > 0 for a in cols) and \
                    any(r.extent > 1 and affine_coefficient(index, r) not in (0, None) for r in st.reduce_axis):
                return True
    return False


def _lane_fill(extent: int, lanes: int) -> float:
    """The share of vector lanes holding real values when `extent` points fill vectors."""
    return extent / (-(-extent // lanes) * lanes)


def _nearest(choices, value):
    return min(choices, key=lambda c: (abs(c - value), c))


def _unroll_constant_tail(st, loops, budget: int, vector_last: bool) -> None:
    if vector_last and loops:
        st.vectorize(loops[-1]) if st.leaves[-1] is loops[-1] else None
        loops = loops[:-1]
    product = 1
    for leaf in reversed(loops):
        ext = st.extent[id(leaf)]
        if not hasattr(ext, "value") or ext.value * product > budget:
            break
        product *= ext.value
        if ext.value > 1:
            st.unroll(leaf)


def _tile_elementwise(sch: Schedule, st, epilogues, attached, prefix_axes) -> None:
    name = st.name
    lanes = sch.target.vector_lanes(st.tensor.dtype)
    levels = []
    n = len(st.axis)
    for d, (axis, te_axis) in enumerate(zip(st.axis, st.tensor.axes)):
        ext = te_axis.extent
        last = d == n - 1
        default = (_divisor_or_pow2(ext, 32 * lanes),) if last else (1,)
        factors = sch.split_knob(_knob_name(sch, name, te_axis.name), ext, (True,), default,
                                 max_innermost=1024 if last else 4096)
        levels.append(st.tile(axis, factors))
    pre = [levels[d] for d in range(n) if d in prefix_axes]
    rest = [levels[d] for d in range(n) if d not in prefix_axes]
    if pre:
        order = [lv[0] for lv in pre] + [lv[1] for lv in pre] + \
            [lv[k] for k in range(2) for lv in rest]
        outer = [lv[0] for lv in pre]
    else:
        order = [lv[0] for lv in rest] + [lv[1] for lv in rest]
        outer = [lv[0] for lv in rest]
    st.reorder(*order)
    fused = st.fuse(*outer)
    st.parallel(fused)
    if st.leaves[-1] is levels[-1][1]:
        st.vectorize(levels[-1][1])
    attach_leaf = pre[-1][1] if pre else None
    for p in attached:
        for axis, te_axis in zip(p.reduce_axis, p.tensor.reduce_axes):
            # Unsplit by default: the row is contiguous and a constant trip count lets LLVM
            # vectorize the reduction (a runtime split inner loop stayed scalar: 3.1 vs 2.4 ms
            # for softmax 4096x1000).
            f = sch.split_knob(_knob_name(sch, p.name, te_axis.name), te_axis.extent, (True,),
                               (min(te_axis.extent, 4096),), max_innermost=4096)
            p.tile(axis, f)
        p.compute_at(st, attach_leaf)
        if _ahead_candidate(sch, p, st, prefix_axes) and \
                sch.knob(f"{p.name}.next_row", (False, True), default=True):
            p.compute_next_row()
    for e in epilogues:
        e.compute_at(st, st.leaves[-1])


def _ahead_candidate(sch: Schedule, red, consumer, prefix_axes) -> bool:
    """Knob: a row statistic of inputs only (softmax's max) is computed for the next row
    inside the consumer's loop over the current row, whose light arithmetic then overlaps
    the next row's loads (softmax 4096x1000: 0.68 -> 0.64 ms)."""
    if not red.is_reduction or len(red.axis) != 1 or len(red.reduce_axis) != 1 or \
            not all(t.is_placeholder for t, _ in expanded_loads(sch, red)):
        return False
    rest = [a for d, a in enumerate(consumer.axis) if d not in prefix_axes]
    return len(rest) == 1 and rest[0].extent == red.reduce_axis[0].extent
