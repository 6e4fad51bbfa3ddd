"""cuda-sim: a GPU LoopNest rewritten as a CPU LoopNest, to check GPU schedules with no GPU.

Block loops become (parallel) loops. The threads of a block run one after another, so the
thread loop is split at every barrier (loop fission, as MCUDA does): each barrier-free stretch
of the kernel runs for all threads before the next starts, and a loop holding a barrier, which
every thread runs alike, is run once around its split body. Values that live from one stretch
into another, and per-thread buffers, get one slot per thread; shared buffers one per block.
A ThreadReduce becomes a store of every thread's value and a serial combine per thread group.
"""
from __future__ import annotations

from dataclasses import replace

from schedules.errors import ScheduleError
from schedules.expr import Binary, Const, Load, Var, rebuild, reduce_combine, reduce_init, walk
from schedules.loopnest import (BLOCK_KINDS, THREAD_KINDS, Allocate, Assign, Barrier, Buffer, Fill,
                                For, If, LoopNest, Scalar, Store, ThreadReduce, VectorCopy, add, mul)


def simulate(nest: LoopNest) -> LoopNest:
    """The CPU LoopNest that computes what the GPU nest computes."""
    body = []
    for stmt in nest.body:
        if isinstance(stmt, For) and stmt.kind in BLOCK_KINDS:
            body.append(_Kernel(stmt).lower())
        else:
            raise ScheduleError(f"cuda-sim: {nest.op_name}: top-level statement {type(stmt).__name__} "
                                f"is not a kernel (a loop bound to blockIdx)")
    return LoopNest(nest.op_name, nest.inputs, nest.outputs, nest.temps, nest.params, tuple(body),
                    nest.notes + ("simulated on the CPU (cuda-sim)",))


def _syncs(stmt) -> bool:
    if isinstance(stmt, (Barrier, ThreadReduce)):
        return True
    if isinstance(stmt, (For, If)):
        return any(_syncs(s) for s in stmt.body)
    return False


def _const(e, what: str) -> int:
    if not isinstance(e, Const):
        raise ScheduleError(f"cuda-sim: {what} must be a constant, got {e!r}")
    return int(e.value)


class _Kernel:
    def __init__(self, kernel: For):
        self.blocks = []
        node = kernel
        while isinstance(node, For) and node.kind in BLOCK_KINDS:
            self.blocks.append(node)
            if len(node.body) != 1:
                break
            node = node.body[0]
        threads = []
        while isinstance(node, For) and node.kind in THREAD_KINDS:
            threads.append(node)
            if len(node.body) != 1 or not isinstance(node.body[0], For) or node.body[0].kind not in THREAD_KINDS:
                break
            node = node.body[0]
        if not threads:
            raise ScheduleError("cuda-sim: a kernel's block loops must enclose its thread loops")
        self.thread_loops = threads
        self.body = threads[-1].body
        self.count = 1
        for t in threads:
            self.count *= _const(t.extent, "a thread count")
        self.tid = Var("sim_tid", None, "loop")
        self.expanded: dict = {}   # id(var or buffer) -> per-thread Buffer
        self.shared: list = []
        self.reduce_inputs: list = []

    # -- which values cross from one barrier-free stretch to another ---------------------
    def _segments(self, stmts, out):
        """Lists of statements that run without a barrier between them (by identity)."""
        current = []
        for s in stmts:
            if _syncs(s):
                if current:
                    out.append(current)
                current = []
                if isinstance(s, ThreadReduce):
                    out.append([s])
                elif isinstance(s, For):
                    self._segments(s.body, out)
                elif isinstance(s, If):
                    raise ScheduleError("cuda-sim: a barrier inside a conditional is not supported "
                                        "(every thread of a block must reach it)")
            else:
                current.append(s)
        if current:
            out.append(current)
        return out

    def _plan(self):
        segs = self._segments(self.body, [])
        where: dict = {}

        def note(obj, k):
            where.setdefault(id(obj), (obj, set()))[1].add(k)

        def visit_expr(e, k):
            for n in walk(e):
                if isinstance(n, Var):
                    note(n, k)
                elif isinstance(n, Load):
                    note(n.tensor, k)

        def visit(stmts, k, defined):
            for s in stmts:
                if isinstance(s, For):
                    visit_expr(s.extent, k)
                    visit(s.body, k, defined)
                elif isinstance(s, If):
                    visit_expr(s.cond, k)
                    visit(s.body, k, defined)
                elif isinstance(s, Assign):
                    defined[id(s.var)] = s.var
                    note(s.var, k)
                    visit_expr(s.value, k)
                elif isinstance(s, Store):
                    note(s.buffer, k)
                    for i in s.indices:
                        visit_expr(i, k)
                    visit_expr(s.value, k)
                elif isinstance(s, Fill):
                    note(s.buffer, k)
                    visit_expr(s.value, k)
                elif isinstance(s, Allocate):
                    note(s.buffer, k)
                elif isinstance(s, VectorCopy):
                    note(s.dst, k)
                    note(s.src, k)
                    visit_expr(s.dst_off, k)
                    visit_expr(s.src_off, k)
                elif isinstance(s, ThreadReduce):
                    defined[id(s.var)] = s.var
                    note(s.var, k)
                    visit_expr(s.value, k)
        defined: dict = {}
        for k, seg in enumerate(segs):
            visit(seg, k, defined)
        for key, (obj, segments) in where.items():
            if isinstance(obj, Buffer) and obj.scope == "local":
                self.expanded[key] = Buffer(f"{obj.name}_t", (self.count,) + tuple(obj.shape), obj.dtype,
                                            "local", "local")
            elif key in defined and (len(segments) > 1 or _reduced(self.body, obj)):
                self.expanded[key] = Buffer(f"{obj.name}_t", (self.count,), obj.dtype
                                            if isinstance(obj, Scalar) else "int64", "local", "local")

    # -- rewriting ------------------------------------------------------------------------
    def expr(self, e):
        def rewrite(n):
            if isinstance(n, Var) and id(n) in self.expanded:
                return Load(self.expanded[id(n)], (self.tid,))
            if isinstance(n, Load) and id(n.tensor) in self.expanded:
                return Load(self.expanded[id(n.tensor)], (self.tid,) + tuple(n.indices), n.default)
            return None
        return rebuild(e, rewrite)

    def stmts(self, stmts) -> list:
        out = []
        for s in stmts:
            if isinstance(s, For):
                # Unrolling is for the GPU's registers; on the CPU it would only make the
                # source (and Numba's compile) as large as the register tile.
                out.append(For(s.var, self.expr(s.extent), "serial", tuple(self.stmts(s.body))))
            elif isinstance(s, If):
                out.append(If(self.expr(s.cond), tuple(self.stmts(s.body))))
            elif isinstance(s, Assign):
                if id(s.var) in self.expanded:
                    out.append(Store(self.expanded[id(s.var)], (self.tid,), self.expr(s.value)))
                else:
                    out.append(Assign(s.var, self.expr(s.value)))
            elif isinstance(s, Store):
                buf, idx = s.buffer, tuple(self.expr(i) for i in s.indices)
                if id(buf) in self.expanded:
                    buf, idx = self.expanded[id(buf)], (self.tid,) + idx
                out.append(Store(buf, idx, self.expr(s.value)))
            elif isinstance(s, Fill):
                out += self._fill(s)
            elif isinstance(s, Allocate):
                if s.buffer.scope == "shared":
                    self.shared.append(s.buffer)
            elif isinstance(s, VectorCopy):
                if id(s.dst) in self.expanded or id(s.src) in self.expanded:
                    raise ScheduleError("cuda-sim: a vector copy of a per-thread buffer")
                out.append(replace(s, dst_off=self.expr(s.dst_off), src_off=self.expr(s.src_off)))
            else:
                raise ScheduleError(f"cuda-sim: unexpected {type(s).__name__} between barriers")
        return out

    def _fill(self, s: Fill) -> list:
        buf = self.expanded.get(id(s.buffer), s.buffer)
        lead = (self.tid,) if id(s.buffer) in self.expanded else ()
        idx = [Var(f"fill{d}", None, "loop") for d in range(len(s.buffer.shape))]
        nest = [Store(buf, lead + tuple(idx), self.expr(s.value))]
        for v, ext in reversed(list(zip(idx, s.buffer.shape))):
            nest = [For(v, Const(ext, "int64") if isinstance(ext, int) else ext, "serial", tuple(nest))]
        return nest

    def thread_head(self) -> list:
        """Each thread loop's variable, decoded from the simulated flat thread index."""
        head, rest = [], self.count
        for k, t in enumerate(self.thread_loops):
            rest //= _const(t.extent, "a thread count")
            e = Binary("floordiv", self.tid, Const(rest, "int64")) if rest > 1 else self.tid
            head.append(Assign(t.var, e if k == 0 else Binary("mod", e, t.extent)))
        return head

    def threads(self, stmts) -> list:
        """Run stmts for every thread of the block, one thread after another."""
        rewritten = self.stmts(stmts)
        if not rewritten:
            return []
        return [For(self.tid, Const(self.count, "int64"), "serial", tuple(self.thread_head() + rewritten))]

    def fission(self, stmts) -> list:
        out, current = [], []
        for s in stmts:
            if not _syncs(s):
                current.append(s)
                continue
            out += self.threads(current)
            current = []
            if isinstance(s, Barrier):
                continue
            if isinstance(s, ThreadReduce):
                out += self._reduce(s)
            else:  # a loop that every thread runs alike, around barriers
                out.append(For(s.var, self.expr(s.extent), "serial", tuple(self.fission(s.body))))
        return out + self.threads(current)

    def _reduce(self, s: ThreadReduce) -> list:
        if self.count % s.width:
            raise ScheduleError(f"cuda-sim: a reduction over {s.width} threads needs a multiple of "
                                f"{s.width} threads per block, got {self.count}")
        values = Buffer(f"{s.var.name}_in", (self.count,), s.var.dtype, "local", "local")
        self.reduce_inputs.append(values)
        out = [For(self.tid, Const(self.count, "int64"), "serial",
                   tuple(self.thread_head()) + (Store(values, (self.tid,), self.expr(s.value)),))]
        group, lane = Var("sim_group", None, "loop"), Var("sim_lane", None, "loop")
        acc = Scalar(f"{s.var.name}_acc", s.var.dtype)
        member = add(mul(group, s.width), lane)
        target = self.expanded[id(s.var)]
        out.append(For(group, Const(self.count // s.width, "int64"), "serial", (
            Assign(acc, Const(reduce_init(s.combiner, s.var.dtype), s.var.dtype)),
            For(lane, Const(s.width, "int64"), "serial",
                (Assign(acc, reduce_combine(s.combiner, acc, Load(values, (member,)))),)),
            For(lane, Const(s.width, "int64"), "serial", (Store(target, (member,), acc),)),
        )))
        return out

    def lower(self) -> For:
        self._plan()
        body = self.fission(self.body)
        allocs = [Allocate(b) for b in self.shared + list(self.expanded.values()) + self.reduce_inputs]
        # Blocks are independent, so the outermost block loop runs in parallel on the CPU too.
        inner = allocs + body
        for k, loop in reversed(list(enumerate(self.blocks))):
            inner = [For(loop.var, loop.extent, "parallel" if k == 0 else "serial", tuple(inner))]
        return inner[0]


def _reduced(stmts, var) -> bool:
    for s in stmts:
        if isinstance(s, ThreadReduce) and s.var is var:
            return True
        if isinstance(s, (For, If)) and _reduced(s.body, var):
            return True
    return False
