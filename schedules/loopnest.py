"""The LoopNest IR: buffers, loops with kinds, and statements, read by every code generator."""
from __future__ import annotations

from dataclasses import dataclass, field

from .expr import INFIX, Binary, Cast, Const, Expr, Load, Select, Unary, Var, as_expr

LOOP_KINDS = ("serial", "parallel", "vectorized", "unrolled")
# GPU bindings: a loop of one of these kinds is not iterated, its variable is the block or
# thread index. In a GPU nest, each kernel is one top-level nest of block loops around thread
# loops, and every statement inside runs on every thread of every block.
BLOCK_KINDS = ("blockIdx.x", "blockIdx.y", "blockIdx.z")
THREAD_KINDS = ("threadIdx.x", "threadIdx.y", "threadIdx.z")


@dataclass(frozen=True, eq=False)
class Buffer:
    name: str
    shape: tuple          # ints or Exprs over runtime parameters
    dtype: str
    scope: str            # "global", "local" (per thread on a GPU) or "shared" (per GPU block)
    role: str             # "input", "output", "temp" (global scratch) or "local"

    @property
    def ndim(self) -> int:
        return len(self.shape)


class Scalar(Var):
    """A local scalar variable (an accumulator or a fused intermediate value)."""

    __slots__ = ()

    def __init__(self, name: str, dtype: str):
        super().__init__(name, None, "scalar")
        self.dtype = dtype


class Param(Var):
    """A runtime knob: an integer argument of the compiled kernel."""

    __slots__ = ()

    def __init__(self, name: str):
        super().__init__(name, None, "param")


@dataclass(frozen=True, eq=False)
class For:
    var: Var
    extent: Expr
    kind: str
    body: tuple


@dataclass(frozen=True, eq=False)
class Assign:
    """Define (or redefine) a scalar or index variable."""
    var: Var
    value: Expr


@dataclass(frozen=True, eq=False)
class Store:
    buffer: Buffer
    indices: tuple
    value: Expr


@dataclass(frozen=True, eq=False)
class Fill:
    """Set every element of a local buffer to one value."""
    buffer: Buffer
    value: Expr


@dataclass(frozen=True, eq=False)
class Allocate:
    buffer: Buffer
    # Every element starts at this value when set. The lowering then never writes the
    # elements it relies on staying at it (a padded plane's border), so one allocation
    # per thread serves every iteration of a parallel loop.
    fill: object = None


@dataclass(frozen=True, eq=False)
class If:
    cond: Expr
    body: tuple


@dataclass(frozen=True, eq=False)
class VectorCopy:
    """dst[dst_off + t] = src[src_off + t * stride] for t < count, both addressed as flat
    C-contiguous data: one packed panel row read from a run of its operand (every stride-th
    value of it: a strided convolution's pixels), in vector loads."""
    dst: Buffer
    dst_off: Expr
    src: Buffer
    src_off: Expr
    count: int
    stride: int = 1
    length: object = None   # an Expr <= count: copy only that many values (masked vectors)


@dataclass(frozen=True, eq=False)
class TransposeCopy:
    """dst[dst_off + k*width + t] = src[src_off + t*ld + k] for k < kc, t < width (flat,
    C-contiguous addressing): a panel packed from `width` rows that are contiguous along k,
    in 8x8 register transposes. kc must be a multiple of 8 and width of 8."""
    dst: Buffer
    dst_off: Expr
    src: Buffer
    src_off: Expr
    ld: int
    kc: Expr
    width: int


@dataclass(frozen=True, eq=False)
class MicroKernel:
    """A register-tile outer product on packed panels (the tensorized inner loops):

        c[c_off + i*ldc + j] (+)= sum_{k < kc} a[a_off + k*rows + i] * b[b_off + k*cols + j]

    for i < rows, j < cols = vecs * lanes, with c addressed as flat C-contiguous data. The
    tile lives in `rows * vecs` vector registers of `lanes` floats for the whole k loop.
    `accumulate` is an Expr (a runtime condition) or a bool: when false the call overwrites
    the tile instead of adding to it.

    With `a_rows` and `a_ks` (int64 tables) A is read unpacked instead:
    a[a_off + a_rows[i] + a_ks[a_ks_off + k]].
    """
    a: Buffer
    a_off: Expr
    b: Buffer
    b_off: Expr
    c: Buffer
    c_off: Expr
    ldc: Expr
    kc: Expr
    rows: int
    vecs: int
    lanes: int
    accumulate: object
    total_flops: int = 0  # of all executions together (exact, for features); 0 for edge tiles
    a_rows: Buffer | None = None
    a_ks: Buffer | None = None
    a_ks_off: Expr | None = None
    # An in-register epilogue (codegen.simd_finish.check_tile_epilogue): applied to the finished
    # values when `apply` holds, reading operand k from buffer epilogue_operands[k][0] at
    # flat offset epilogue_operands[k][1] (the tile's first point).
    epilogue: tuple | None = None
    apply: Expr | None = None
    epilogue_operands: tuple = ()
    # With an epilogue: when `apply` holds, the finished tile goes transposed into this
    # buffer instead of c, value (i, j) at flat offset transposed_off + j * transposed_ld + i
    # (a swapped tile written straight to its NCHW output).
    transposed_out: Buffer | None = None
    transposed_off: Expr | None = None
    transposed_ld: Expr | None = None
    # B read in place instead of from a packed panel: b[b_off + k * ldb + j] (a batch
    # matmul's per-head B, row-major along the tile's columns, which no call can pack once).
    ldb: Expr | None = None

    @property
    def cols(self) -> int:
        return self.vecs * self.lanes

    @property
    def direct(self) -> bool:
        return self.a_rows is not None


@dataclass(frozen=True, eq=False)
class WinogradInput:
    """Winograd F(m x m, 3x3)'s input transform B^T d B of one (m+2)x(m+2) patch for `lanes`
    channels at once: d[i][j] = x[x_off + i*row + j*col + l] and the value at position xi of
    the transformed patch goes to v[v_off + xi*plane + l], for l < lanes (flat addressing;
    codegen/winograd_simd.py's input_tile)."""
    m: int
    lanes: int
    v: Buffer
    v_off: Expr
    plane: Expr
    x: Buffer
    x_off: Expr
    row: Expr
    col: Expr


@dataclass(frozen=True, eq=False)
class WinogradOutput:
    """Winograd F(m x m, 3x3)'s output transform A^T M A of `run` consecutive tiles (tile l's
    value at position xi is mt[q + xi*plane + l]), plus `bias` (an Expr) and a relu when
    `relu`, output row a of the run stored as m*run values at y[o + a*width] (flat
    addressing; codegen/winograd_simd.py's output_run)."""
    m: int
    run: int
    relu: bool
    mt: Buffer
    q: Expr
    plane: Expr
    y: Buffer
    o: Expr
    width: Expr
    bias: Expr


@dataclass(frozen=True, eq=False)
class Barrier:
    """GPU: every thread of the block waits here until all have arrived (__syncthreads). Only
    in control flow that every thread of a block takes alike."""


@dataclass(frozen=True, eq=False)
class ThreadReduce:
    """GPU: `var` = combiner of `value` over each group of `width` consecutive threads (by flat
    thread index); every thread of the group gets the result. Like a Barrier, every thread of
    the block must reach it. width is a power of two that divides the block's thread count."""
    var: Var
    value: Expr
    combiner: str          # "sum", "max" or "min"
    width: int


@dataclass(frozen=True, eq=False)
class LoopNest:
    op_name: str
    inputs: tuple      # Buffers, in the operator's input order
    outputs: tuple     # Buffers, in the operator's output order
    temps: tuple       # global scratch Buffers allocated by the caller
    params: tuple      # Param vars, in argument order
    body: tuple
    notes: tuple = field(default=())  # human-readable decisions, e.g. ignored unroll hints
    # (input name, temp Buffer) for each constant input packed once: the body's first
    # len(prepacked) parallel loops fill those temps and read nothing else that changes.
    prepacked: tuple = field(default=())
    # (view Buffer, base Buffer): a one-dimensional view of an input, output or temp, for
    # loops that walk a whole plane of it as one flat range.
    views: tuple = field(default=())

    def dump(self) -> str:
        lines = [f"# loop nest of {self.op_name}"]
        for b in self.inputs + self.outputs + self.temps:
            lines.append(f"buffer {b.name}{tuple(b.shape)} {b.dtype} {b.role}")
        for view, base in self.views:
            lines.append(f"view {view.name}{tuple(view.shape)} of {base.name}")
        if self.params:
            lines.append("params " + ", ".join(p.name for p in self.params))
        _dump(self.body, 0, lines)
        return "\n".join(lines)


# -- constant-folding constructors used while lowering -------------------------------------------
def c(value) -> Expr:
    return as_expr(value)


def is_const(e, value=None) -> bool:
    return isinstance(e, Const) and (value is None or e.value == value)


def add(a, b) -> Expr:
    a, b = c(a), c(b)
    if is_const(a) and is_const(b):
        return Const(a.value + b.value, a.dtype)
    if is_const(a, 0):
        return b
    if is_const(b, 0):
        return a
    return Binary("add", a, b)


def sub(a, b) -> Expr:
    a, b = c(a), c(b)
    if is_const(a) and is_const(b):
        return Const(a.value - b.value, a.dtype)
    if is_const(b, 0):
        return a
    return Binary("sub", a, b)


def mul(a, b) -> Expr:
    a, b = c(a), c(b)
    if is_const(a) and is_const(b):
        return Const(a.value * b.value, a.dtype)
    if is_const(a, 0) or is_const(b, 0):
        return Const(0, "int64")
    if is_const(a, 1):
        return b
    if is_const(b, 1):
        return a
    return Binary("mul", a, b)


def flat_offset(shape, indices) -> Expr:
    """Row-major flat position of `indices` in a C-contiguous buffer of constant `shape`."""
    out, stride = Const(0, "int64"), 1
    for idx, ext in reversed(list(zip(indices, shape))):
        out = add(out, mul(idx, Const(stride, "int64")))
        stride *= ext.value if isinstance(ext, Const) else int(ext)
    return out


def ceildiv(a, b) -> Expr:
    a, b = c(a), c(b)
    if is_const(a) and is_const(b):
        return Const(-(-a.value // b.value), "int64")
    if is_const(b, 1):
        return a
    return Binary("floordiv", add(a, sub(b, 1)), b)


def floordiv(a, b) -> Expr:
    a, b = c(a), c(b)
    if is_const(a) and is_const(b):
        return Const(a.value // b.value, "int64")
    if is_const(b, 1):
        return a
    return Binary("floordiv", a, b)


def mod(a, b) -> Expr:
    a, b = c(a), c(b)
    if is_const(a) and is_const(b):
        return Const(a.value % b.value, "int64")
    if is_const(b, 1):
        return Const(0, "int64")
    return Binary("mod", a, b)


def minimum(a, b) -> Expr:
    a, b = c(a), c(b)
    if is_const(a) and is_const(b):
        return Const(min(a.value, b.value), "int64")
    return Binary("minimum", a, b)


def maximum(a, b) -> Expr:
    a, b = c(a), c(b)
    if is_const(a) and is_const(b):
        return Const(max(a.value, b.value), "int64")
    return Binary("maximum", a, b)


def fmt(e: Expr) -> str:
    """Readable infix form, used by dump() and error messages."""
    if isinstance(e, Const):
        return repr(e.value)
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Binary):
        sym = INFIX.get(e.op)
        if sym:
            return f"({fmt(e.a)} {sym} {fmt(e.b)})"
        return f"{e.op}({fmt(e.a)}, {fmt(e.b)})"
    if isinstance(e, Unary):
        return f"{e.fn}({fmt(e.a)})"
    if isinstance(e, Cast):
        return f"{e.dtype}({fmt(e.a)})"
    if isinstance(e, Select):
        return f"({fmt(e.a)} if {fmt(e.cond)} else {fmt(e.b)})"
    if isinstance(e, Load):
        return f"{e.tensor.name}[{', '.join(fmt(i) for i in e.indices)}]"
    return repr(e)


def _dump(stmts, depth, lines):
    pad = "  " * depth
    for s in stmts:
        if isinstance(s, For):
            lines.append(f"{pad}for {s.var.name} in {s.kind}({fmt(s.extent)}):")
            _dump(s.body, depth + 1, lines)
        elif isinstance(s, If):
            lines.append(f"{pad}if {fmt(s.cond)}:")
            _dump(s.body, depth + 1, lines)
        elif isinstance(s, Assign):
            lines.append(f"{pad}{s.var.name} = {fmt(s.value)}")
        elif isinstance(s, Store):
            lines.append(f"{pad}{s.buffer.name}[{', '.join(fmt(i) for i in s.indices)}] = {fmt(s.value)}")
        elif isinstance(s, Fill):
            lines.append(f"{pad}{s.buffer.name}[...] = {fmt(s.value)}")
        elif isinstance(s, MicroKernel):
            op = "+=" if s.accumulate is True else "=" if s.accumulate is False else f"(+ if {fmt(s.accumulate)})="
            a = (f"{s.a.name}@{fmt(s.a_off)}[{s.a_rows.name}[i] + {s.a_ks.name}[{fmt(s.a_ks_off)} + k]]"
                 if s.direct else f"{s.a.name}@{fmt(s.a_off)}")
            lines.append(f"{pad}microkernel {s.rows}x{s.cols} {s.c.name}@{fmt(s.c_off)} ldc={fmt(s.ldc)} {op} "
                         f"{a} * {s.b.name}@{fmt(s.b_off)}" + (f" ldb={fmt(s.ldb)}" if s.ldb is not None else "")
                         + f" over k<{fmt(s.kc)}"
                         + (f", then {s.epilogue} on " + ", ".join(f"{b.name}@{fmt(o)}" for b, o in s.epilogue_operands)
                            + f" if {fmt(s.apply)}" if s.epilogue is not None else "")
                         + (f", stored transposed to {s.transposed_out.name}@{fmt(s.transposed_off)} "
                            f"ld={fmt(s.transposed_ld)}" if s.transposed_out is not None else ""))
        elif isinstance(s, TransposeCopy):
            lines.append(f"{pad}{s.dst.name}@{fmt(s.dst_off)}[k<{fmt(s.kc)}, t<{s.width}] = "
                         f"{s.src.name}@{fmt(s.src_off)}[t*{s.ld} + k]")
        elif isinstance(s, VectorCopy):
            step = f"[::{s.stride}]" if s.stride != 1 else ""
            count = s.count if s.length is None else f"{fmt(s.length)} <= {s.count}"
            lines.append(f"{pad}{s.dst.name}@{fmt(s.dst_off)}[:{count}] = {s.src.name}@{fmt(s.src_off)}{step}")
        elif isinstance(s, WinogradInput):
            lines.append(f"{pad}{s.v.name}@{fmt(s.v_off)}[xi*{fmt(s.plane)} + l] = winograd F({s.m}x{s.m}) input "
                         f"of {s.x.name}@{fmt(s.x_off)}[i*{fmt(s.row)} + j*{fmt(s.col)} + l], l<{s.lanes}")
        elif isinstance(s, WinogradOutput):
            act = " then relu" if s.relu else ""
            lines.append(f"{pad}{s.y.name}@{fmt(s.o)}[a*{fmt(s.width)} + :{s.m * s.run}] = winograd F({s.m}x{s.m}) "
                         f"output of {s.run} tiles {s.mt.name}@{fmt(s.q)}[xi*{fmt(s.plane)} + l] + {fmt(s.bias)}{act}")
        elif isinstance(s, Barrier):
            lines.append(f"{pad}barrier")
        elif isinstance(s, ThreadReduce):
            lines.append(f"{pad}{s.var.name} = {s.combiner} over {s.width} threads of {fmt(s.value)}")
        elif isinstance(s, Allocate):
            fill = "" if s.fill is None else f" filled with {fmt(s.fill)}"
            lines.append(f"{pad}allocate {s.buffer.name}{tuple(fmt(c(d)) for d in s.buffer.shape)} "
                         f"{s.buffer.dtype} {s.buffer.scope}{fill}")

