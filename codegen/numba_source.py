"""LoopNest -> Python source for one Numba @njit function."""
from __future__ import annotations

import builtins
import hashlib
import keyword
import math

from schedules.expr import INFIX, MATH_FUNCTION, Binary, Cast, Const, Load, Select, Unary, Var
from codegen.numba_math import FAST_FLOAT32, FAST_MIN_MAX
from schedules.loopnest import (Allocate, Assign, Fill, For, If, LoopNest, MicroKernel, Param, Store,
                                TransposeCopy, VectorCopy, WinogradInput, WinogradOutput)

# Total copies of a loop body that textual unrolling may create under one unrolled nest.
MAX_UNROLL_COPIES = 256

# Names the generated module uses itself; tensors named like these get a prefix.
_RESERVED = frozenset({"np", "math", "njit", "cfunc", "array_at", "lo_", "hi_", "args_", "STEPS",
                       *FAST_FLOAT32.values(),
                       *FAST_MIN_MAX.values(), *dir(builtins)})


class _Printer:
    def __init__(self, fastmath: bool = False):
        self.fastmath = fastmath
        self.hoisted: set = set()  # ids of Allocate statements emitted before their loop
        self.names: dict = {}
        self.taken: set = set()
        self.lines: list = []

    def name(self, obj) -> str:
        if id(obj) not in self.names:
            base = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in obj.name) or "v"
            if base[0].isdigit() or base in _RESERVED or keyword.iskeyword(base) \
                    or base.startswith(("step_", "extent_", "mk_", "vcopy_", "wino_in_", "wino_out_")):
                base = "v_" + base
            name, k = base, 1
            while name in self.taken:
                k += 1
                name = f"{base}_{k}"
            self.taken.add(name)
            self.names[id(obj)] = (name, obj)  # keep obj alive so ids stay unique
        return self.names[id(obj)][0]

    def expr(self, e) -> str:
        if isinstance(e, Const):
            return _const(e)
        if isinstance(e, Var):
            return self.name(e)
        if isinstance(e, Binary):
            a, b = self.expr(e.a), self.expr(e.b)
            if e.op == "div":
                if e.a.dtype != e.dtype:
                    a = f"np.{e.dtype}({a})"
                if e.b.dtype != e.dtype:
                    b = f"np.{e.dtype}({b})"
                return f"({a} / {b})"
            if e.op in ("maximum", "minimum"):
                if self.fastmath and (e.op, e.dtype) in FAST_MIN_MAX:
                    return f"{FAST_MIN_MAX[e.op, e.dtype]}({a}, {b})"
                return f"{'max' if e.op == 'maximum' else 'min'}({a}, {b})"
            return f"({a} {INFIX[e.op]} {b})"
        if isinstance(e, Unary):
            a = self.expr(e.a)
            if e.fn == "neg":
                return f"(-{a})"
            if e.fn == "not":
                return f"(not {a})"
            if e.fn == "abs":
                return f"abs({a})"
            if e.dtype == "float32" and e.fn in FAST_FLOAT32:
                return f"{FAST_FLOAT32[e.fn]}({a})"
            if e.fn == "sigmoid":
                one = _const(Const(1.0, e.dtype))
                return f"({one} / ({one} + math.exp(-{a})))"
            return f"math.{MATH_FUNCTION.get(e.fn, e.fn)}({a})"
        if isinstance(e, Cast):
            return f"{'bool' if e.dtype == 'bool' else 'np.' + e.dtype}({self.expr(e.a)})"
        if isinstance(e, Select):
            return f"({self.expr(e.a)} if {self.expr(e.cond)} else {self.expr(e.b)})"
        if isinstance(e, Load):
            return f"{self.name(e.tensor)}[{self.subscript(e.indices)}]"
        raise TypeError(f"cannot generate code for {type(e).__name__}")

    def subscript(self, indices) -> str:
        # Unsigned indices: Numba then skips its negative-index wraparound, whose branches
        # stop LLVM from vectorizing (2.9 -> 13.7 GFLOPS on a 512^3 matmul tile). Every index
        # is non-negative where it is evaluated: padding reads sit behind a bounds select.
        return ", ".join(f"np.uint64({self.expr(i)})" if not isinstance(i, Const)
                         else str(int(i.value)) for i in indices)

    def stmts(self, stmts, depth: int, budget: int = MAX_UNROLL_COPIES):
        pad = "    " * depth
        for s in stmts:
            if isinstance(s, For):
                extent = self.expr(s.extent)
                if s.kind == "unrolled" and isinstance(s.extent, Const) and s.extent.value <= budget:
                    copies = s.extent.value
                    for k in range(copies):
                        self.lines.append(f"{pad}{self.name(s.var)} = {k}")
                        self.stmts(s.body, depth, max(1, budget // max(copies, 1)))
                    continue
                if s.kind == "parallel":
                    # Scratch buffers are allocated once per step call (one per thread), not
                    # once per iteration: a row buffer allocated per softmax row cost ~40%.
                    hoisted = _hoistable_allocations(s.body)
                    for a in hoisted:
                        self.stmts((a,), depth, budget)
                    self.hoisted.update(id(a) for a in hoisted)
                    # The step function runs [lo, hi) of this loop; threads split the range.
                    self.lines.append(f"{pad}for {self.name(s.var)} in range(lo_, min(hi_, {extent})):")
                    self.stmts(s.body, depth + 1, budget)
                    continue
                rng = "range"
                note = "  # vectorized by LLVM" if s.kind == "vectorized" else ""
                self.lines.append(f"{pad}for {self.name(s.var)} in {rng}({extent}):{note}")
                self.stmts(s.body, depth + 1, budget)
            elif isinstance(s, If):
                self.lines.append(f"{pad}if {self.expr(s.cond)}:")
                self.stmts(s.body, depth + 1, budget)
            elif isinstance(s, Assign):
                self.lines.append(f"{pad}{self.name(s.var)} = {self.expr(s.value)}")
            elif isinstance(s, Store):
                self.lines.append(f"{pad}{self.name(s.buffer)}[{self.subscript(s.indices)}] = {self.expr(s.value)}")
            elif isinstance(s, Allocate):
                if id(s) in self.hoisted:
                    continue
                shape = ", ".join(self.expr(d) if not isinstance(d, int) else str(d) for d in s.buffer.shape)
                dtype = _NUMPY_DTYPES[s.buffer.dtype]
                if s.fill is None:
                    self.lines.append(f"{pad}{self.name(s.buffer)} = np.empty(({shape},), dtype={dtype})")
                else:
                    self.lines.append(f"{pad}{self.name(s.buffer)} = np.full(({shape},), {self.expr(s.fill)}, "
                                      f"dtype={dtype})")
            elif isinstance(s, Fill):
                self.lines.append(f"{pad}{self.name(s.buffer)}.fill({self.expr(s.value)})")
            elif isinstance(s, TransposeCopy):
                self.lines.append(f"{pad}{copy_name(s)}({self.name(s.dst)}, {self.expr(s.dst_off)}, "
                                  f"{self.name(s.src)}, {self.expr(s.src_off)}, {s.ld}, {self.expr(s.kc)})")
            elif isinstance(s, VectorCopy):
                length = "" if s.length is None else f", {self.expr(s.length)}"
                self.lines.append(f"{pad}{copy_name(s)}({self.name(s.dst)}, {self.expr(s.dst_off)}, "
                                  f"{self.name(s.src)}, {self.expr(s.src_off)}{length})")
            elif isinstance(s, MicroKernel):
                tables = [self.name(s.a_rows), self.name(s.a_ks), self.expr(s.a_ks_off)] if s.direct else []
                args = [self.name(s.a), self.expr(s.a_off), *tables, self.name(s.b), self.expr(s.b_off),
                        self.name(s.c), self.expr(s.c_off), self.expr(s.ldc), self.expr(s.kc)]
                if not isinstance(s.accumulate, bool):
                    args.append(self.expr(s.accumulate))
                if s.epilogue is not None:  # apply, then the transposed output, then the operands
                    args.append(self.expr(s.apply))
                    if s.transposed_out is not None:
                        args += [self.name(s.transposed_out), self.expr(s.transposed_off),
                                 self.expr(s.transposed_ld)]
                    for buf, off in s.epilogue_operands:
                        args += [self.name(buf), self.expr(off)]
                if s.ldb is not None:
                    args.append(self.expr(s.ldb))
                self.lines.append(f"{pad}{microkernel_name(s)}({', '.join(args)})")
            elif isinstance(s, WinogradInput):
                self.lines.append(f"{pad}{winograd_name(s)}({self.name(s.v)}, {self.expr(s.v_off)}, "
                                  f"{self.expr(s.plane)}, {self.name(s.x)}, {self.expr(s.x_off)}, "
                                  f"{self.expr(s.row)}, {self.expr(s.col)})")
            elif isinstance(s, WinogradOutput):
                self.lines.append(f"{pad}{winograd_name(s)}({self.name(s.mt)}, {self.expr(s.q)}, "
                                  f"{self.expr(s.plane)}, {self.name(s.y)}, {self.expr(s.o)}, "
                                  f"{self.expr(s.width)}, {self.expr(s.bias)})")
            else:
                raise TypeError(f"cannot generate code for {type(s).__name__}")
        if not stmts:
            self.lines.append(f"{pad}pass")


def microkernel_name(s: MicroKernel) -> str:
    mode = "acc" if s.accumulate is True else "set" if s.accumulate is False else "flag"
    name = f"mk_{s.rows}x{s.vecs}x{s.lanes}_{mode}" + ("_direct" if s.direct else "")
    if s.epilogue is not None:
        name += "_ep" + hashlib.sha1(repr(s.epilogue).encode()).hexdigest()[:8]
    if s.transposed_out is not None:
        name += "_t"
    if s.ldb is not None:
        name += "_bs"
    return name


def _hoistable_allocations(stmts, found=None) -> list:
    """Allocations whose shapes are constants or runtime knobs (not loop values); every
    lowering writes such a buffer (or fills it) before reading it, or allocates it filled and
    never writes the part it relies on, so one per thread serves."""
    found = [] if found is None else found
    for s in stmts:
        if isinstance(s, Allocate) and all(
                isinstance(d, (int, Const, Param)) for d in s.buffer.shape):
            found.append(s)
        elif isinstance(s, (For, If)):
            _hoistable_allocations(s.body, found)
    return found


def copy_name(s) -> str:
    if isinstance(s, TransposeCopy):
        return f"vcopy_t{s.width}"
    return f"vcopy_{s.count}" + (f"_s{s.stride}" if s.stride != 1 else "") + ("_m" if s.length is not None else "")


def winograd_name(s) -> str:
    if isinstance(s, WinogradInput):
        return f"wino_in_{s.m}x{s.lanes}"
    return f"wino_out_{s.m}x{s.run}" + ("_relu" if s.relu else "")


def _binding(s) -> str:
    """The module-level line creating the intrinsic that statement s calls."""
    if isinstance(s, WinogradInput):
        return f"{winograd_name(s)} = input_tile({s.m}, {s.lanes})"
    if isinstance(s, WinogradOutput):
        return f"{winograd_name(s)} = output_run({s.m}, {s.run}, {s.relu})"
    if isinstance(s, VectorCopy):
        options = (f", stride={s.stride}" if s.stride != 1 else "") + (", masked=True" if s.length is not None else "")
        return f"{copy_name(s)} = vector_copy({s.count}{options})"
    if isinstance(s, TransposeCopy):
        return f"{copy_name(s)} = transpose_copy({s.width})"
    mode = s.accumulate if isinstance(s.accumulate, bool) else repr("runtime")
    direct = ", direct=True" if s.direct else ""
    epilogue = f", epilogue={s.epilogue!r}" if s.epilogue is not None else ""
    epilogue += ", transposed_out=True" if s.transposed_out is not None else ""
    epilogue += ", b_strided=True" if s.ldb is not None else ""
    return f"{microkernel_name(s)} = outer_product_kernel({s.rows}, {s.vecs}, {s.lanes}, {mode}{direct}{epilogue})"


def _intrinsics(stmts, found: dict) -> dict:
    """Statements calling intrinsics, by the module-level name the intrinsic is bound to."""
    for s in stmts:
        if isinstance(s, MicroKernel):
            found[microkernel_name(s)] = s
        elif isinstance(s, (VectorCopy, TransposeCopy)):
            found[copy_name(s)] = s
        elif isinstance(s, (WinogradInput, WinogradOutput)):
            found[winograd_name(s)] = s
        elif isinstance(s, (For, If)):
            _intrinsics(s.body, found)
    return found


def _const(e: Const) -> str:
    v = e.value
    if e.dtype == "bool":
        return "True" if v else "False"
    if e.dtype.startswith("float"):
        text = "np.inf" if v == math.inf else "-np.inf" if v == -math.inf else \
            "np.nan" if v != v else repr(float(v))
        return f"np.{e.dtype}({text})"
    if e.dtype == "int32":
        return f"np.int32({int(v)})"
    return str(int(v))


def split_steps(body) -> list:
    """Top-level statements as steps: each parallel loop with the assignments just before it
    (its extents), and serial steps for everything else, in order."""
    steps, pending, serial = [], [], []
    for stmt in body:
        if isinstance(stmt, Assign):
            pending.append(stmt)
        elif isinstance(stmt, For) and stmt.kind == "parallel":
            if serial:
                steps.append((tuple(serial), None))
                serial = []
            steps.append((tuple(pending) + (stmt,), stmt))
            pending = []
        else:
            serial += pending + [stmt]
            pending = []
    serial += pending
    if serial:
        steps.append((tuple(serial), None))
    return steps


_NUMPY_DTYPES = {"float32": "np.float32", "float64": "np.float64", "int32": "np.int32",
                 "int64": "np.int64", "bool": "np.bool_"}


def _position(buffers, buffer) -> int:
    return next(k for k, b in enumerate(buffers) if b is buffer)


def generate(nest: LoopNest, fastmath: bool = True) -> str:
    """Module source defining STEPS; it depends only on structural decisions.

    Each step is a serial Numba cfunc with the one C signature of codegen/step_abi.py: it
    unpacks every buffer and runtime knob from its argument block, and returns 1. A parallel
    step runs over [lo, hi) of its outermost loop, and `extent_k` (plain Python, over the
    buffers and knobs) gives that loop's trip count, so the caller can split it across
    threads; a serial step ignores lo and hi.
    """
    options = f"fastmath={fastmath}, cache=CACHE, error_model='numpy', boundscheck=False"
    p = _Printer(bool(fastmath))
    buffers = nest.inputs + nest.outputs + nest.temps
    args = [p.name(b) for b in buffers] + [p.name(x) for x in nest.params]
    unpack = [f"    {p.name(b)} = array_at(args_[{k}], {tuple(b.shape) or (1,)}, {_NUMPY_DTYPES[b.dtype]})"
              for k, b in enumerate(buffers)]
    unpack += [f"    {p.name(view)} = array_at(args_[{_position(buffers, base)}], {tuple(view.shape)}, "
               f"{_NUMPY_DTYPES[view.dtype]})" for view, base in nest.views]
    unpack += [f"    {p.name(x)} = args_[{len(buffers) + k}]" for k, x in enumerate(nest.params)]
    out = [f'"""Generated by autosched for operator {nest.op_name}."""', "import math",
           "import numpy as np", "from numba import cfunc",
           "from codegen.step_abi import STEP_SIGNATURE, array_at",
           f"from codegen.numba_math import "
           f"{', '.join(sorted(FAST_FLOAT32.values()) + sorted(FAST_MIN_MAX.values()))}", ""]
    kernels = _intrinsics(nest.body, {})
    if kernels:
        out.insert(-1, "from codegen.simd import outer_product_kernel, transpose_copy, vector_copy")
        if any(isinstance(s, (WinogradInput, WinogradOutput)) for s in kernels.values()):
            out.insert(-1, "from codegen.winograd_simd import input_tile, output_run")
        out += [_binding(s) for _, s in sorted(kernels.items())]
    out += [f"# {n}" for n in nest.notes]
    entries = []
    for k, (stmts, loop) in enumerate(split_steps(nest.body)):
        p.lines = []
        p.stmts(stmts, 1)
        out += ["", f"@cfunc(STEP_SIGNATURE, {options})", f"def step_{k}(lo_, hi_, args_):"] + unpack + \
            p.lines + ["    return 1"]
        if loop is None:
            entries.append(f"(step_{k}, None)")
            continue
        p.lines = []
        prologue = tuple(s for s in stmts if s is not loop)
        p.stmts(prologue, 1) if prologue else None
        out += ["", f"def extent_{k}({', '.join(args)}):"] + p.lines + \
               [f"    return {p.expr(loop.extent)}"]
        entries.append(f"(step_{k}, extent_{k})")
    out += ["", "", f"STEPS = [{', '.join(entries)}]"]
    return "\n".join(out) + "\n"
