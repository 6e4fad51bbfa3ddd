"""GPU lowering: each kernel root's plan becomes one kernel of block and thread loops."""
from __future__ import annotations

import math

from .bounds import all_of, guard, interval
from .errors import ScheduleError
from .expr import Binary, Const, Load, Var, rebuild, reduce_combine, reduce_init, substitute
from .gpu_sketch import FlatPlan, RowPlan, TiledPlan
from .gpu_tiled import TiledKernels, less_than
from .loopnest import (Assign, Buffer, For, If, LoopNest, Scalar, Store, ThreadReduce, add, floordiv,
                       mod, mul)
from .schedule import Schedule
from .sketch import expanded_loads

# Index arithmetic on the GPU is 32-bit; larger tensors would need 64-bit indices.
MAX_INDEX = 2 ** 31 - 1


def lower_gpu(sch: Schedule) -> LoopNest:
    return _GpuLowering(sch).run()


class _GpuLowering(TiledKernels):
    def __init__(self, sch: Schedule):
        self.sch, self.op, self.fusion = sch, sch.op, sch.fusion
        if self.fusion is None:
            raise ScheduleError(f"{self.op.name}: the schedule has no GPU plan; build it from "
                                f"op.space('cuda')")
        for t in list(self.op.inputs) + list(self.op.stages):
            if math.prod(t.shape) > MAX_INDEX:
                raise ScheduleError(f"{self.op.name}: tensor {t.name}{t.shape} has more than 2^31 "
                                    f"elements; the CUDA backend indexes with 32-bit integers")
        self.buffers = {}
        self.inputs = tuple(self._global(t, "input") for t in self.op.inputs)
        self.outputs = tuple(self._global(t, "output") for t in self.op.outputs)
        self.temps: list = []
        self.ranges: dict = {}
        self.notes: list = []

    def _global(self, t, role):
        b = Buffer(t.name, t.shape, t.dtype, "global", role)
        self.buffers[id(t)] = b
        return b

    # -- which stage goes in which kernel ---------------------------------------------------
    def run(self) -> LoopNest:
        fusion = self.fusion
        roots = fusion.roots()
        self.group = {}
        for root in roots:
            members = [root] + fusion.epilogues(root) + fusion.attached(root)
            for p in fusion.attached(root):
                members += fusion.epilogues(p)
            for m in members:
                self.group[id(m)] = root
        reads = {id(st): [t for t, _ in expanded_loads(self.sch, st)] for st in fusion.live}
        self.stored = set()
        depends = {id(r): set() for r in roots}
        for st in fusion.live:
            if self.op.is_output(st.tensor):
                self.stored.add(id(st))
            for t in reads[id(st)]:
                if t.is_placeholder:
                    continue
                producer = self.sch[t]
                if self.group[id(producer)] is not self.group[id(st)]:
                    self.stored.add(id(producer))
                    depends[id(self.group[id(st)])].add(id(self.group[id(producer)]))
        for st in fusion.live:
            if id(st) in self.stored and id(st.tensor) not in self.buffers:
                self.temps.append(self._global(st.tensor, "temp"))
        kernels = []
        for root in _topological(roots, depends):
            plan = root.gpu
            if isinstance(plan, TiledPlan):
                kernels.append(self._tiled(root, plan))
            elif isinstance(plan, RowPlan):
                kernels.append(self._rows(root, plan))
            elif isinstance(plan, FlatPlan):
                kernels.append(self._flat(root, plan))
            else:
                raise ScheduleError(f"{self.op.name}: stage {root.name} computes a kernel of its own "
                                    f"but has no GPU plan; a GPU template sets one with "
                                    f"sch[{root.name!r}].gpu_tiled(...), .gpu_rows(...) or .gpu_flat(...)")
        return LoopNest(self.op.name, self.inputs, self.outputs, tuple(self.temps), (),
                        tuple(kernels), tuple(self.notes))

    # -- expressions ----------------------------------------------------------------------
    def value(self, body, mapping: dict, local: dict):
        """A stage expression at one point: axes replaced, inlined stages substituted, values
        already in registers or shared memory taken from `local` (by id of tensor), and every
        read that may leave its tensor guarded to yield its default, as te defines it."""
        body = substitute(body, mapping)

        def rewrite(node):
            if not isinstance(node, Load):
                return None
            t = node.tensor
            if id(t) in local:
                return local[id(t)]
            if not t.is_placeholder and self.sch[t].inlined:
                prod = self.sch[t]
                inner = self.value(prod.body, dict(zip(prod.axis, node.indices)), local)
                return guard(node, inner, self.ranges)
            buf = self.buffers[id(t)]
            return guard(node, Load(buf, node.indices, node.default), self.ranges)
        return rebuild(body, rewrite)

    def assign(self, var, value, known=None) -> Assign:
        self.ranges[id(var)] = known if known is not None else interval(value, self.ranges)
        return Assign(var, value)

    def loop(self, name: str, extent: int) -> Var:
        v = Var(name, None, "loop")
        self.ranges[id(v)] = (0, max(0, extent - 1))
        return v

    def decode(self, flat, extents, names, prefix: str) -> tuple:
        """Row-major coordinates of `flat` over `extents` (last fastest), as assignments. The
        coordinates are taken to be in range: callers use them only where flat is."""
        stmts, coords, stride = [], [], math.prod(extents)
        for k, (ext, name) in enumerate(zip(extents, names)):
            stride //= ext
            e = floordiv(flat, stride)
            if k > 0:
                e = mod(e, ext)
            v = Var(f"{prefix}{name}", None, "index")
            stmts.append(self.assign(v, e, (0, ext - 1)))
            coords.append(v)
        return stmts, coords

    def kernel(self, name: str, blocks: int, threads: int, bx, tx, body) -> For:
        if threads > self.sch.target.gpu.max_threads:
            raise ScheduleError(f"{self.op.name}: kernel {name} needs {threads} threads per block, "
                                f"more than {self.sch.target.gpu.max_threads}")
        return For(bx, Const(blocks, "int64"), "blockIdx.x",
                   (For(tx, Const(threads, "int64"), "threadIdx.x", tuple(body)),))

    def finish(self, root, coords, value, local) -> list:
        """Store the root's value at one point and apply its epilogue chain while it is local."""
        vals = dict(local)
        v = Scalar(f"{root.name}_v", root.tensor.dtype)
        stmts = [Assign(v, value)]
        vals[id(root.tensor)] = v
        if id(root) in self.stored:
            stmts.append(Store(self.buffers[id(root.tensor)], tuple(coords), v))
        for e in self.fusion.epilogues(root):
            ev = Scalar(f"{e.name}_v", e.tensor.dtype)
            stmts.append(Assign(ev, self.value(e.body, dict(zip(e.axis, coords)), vals)))
            vals[id(e.tensor)] = ev
            if id(e) in self.stored:
                stmts.append(Store(self.buffers[id(e.tensor)], tuple(coords), ev))
        return stmts

    # -- elementwise ----------------------------------------------------------------------
    def _flat(self, st, plan: FlatPlan) -> For:
        shape = st.tensor.shape
        n = math.prod(shape)
        per_block = plan.threads * plan.per_thread
        blocks = -(-n // per_block)
        bx, tx = self.loop("bx", blocks), self.loop("tx", plan.threads)
        j = self.loop("j", plan.per_thread)
        q = Var("q", None, "index")
        body = [self.assign(q, add(mul(add(mul(bx, plan.per_thread), j), plan.threads), tx))]
        assigns, coords = self.decode(q, shape, [a.name for a in st.tensor.axes], f"{st.name}_")
        work = assigns + self.finish(st, coords, self.value(st.body, dict(zip(st.axis, coords)), {}), {})
        body += [If(less_than(q, n), tuple(work))] if blocks * per_block != n else work
        return self.kernel(st.name, blocks, plan.threads, bx, tx,
                           (For(j, Const(plan.per_thread, "int64"), "unrolled", tuple(body)),))

    # -- row kernels: attached reductions, or a reduction split across threads --------------
    def _rows(self, root, plan: RowPlan) -> For:
        fusion = self.fusion
        attached = fusion.attached(root)
        if not attached and not root.is_reduction:
            raise ScheduleError(f"{self.op.name}: gpu_rows on stage {root.name}, which neither "
                                f"reduces nor has row statistics; use gpu_flat")
        shape = root.tensor.shape
        if attached:
            row_axes = sorted(fusion.mapped_axes[id(root)])
            stats = attached
        else:
            row_axes = list(range(len(shape)))
            stats = [root]
        inner_axes = [d for d in range(len(shape)) if d not in row_axes]
        rows = math.prod(shape[d] for d in row_axes)
        width, per_block = plan.row_threads, plan.rows
        blocks = -(-rows // per_block)
        bx, tx = self.loop("bx", blocks), self.loop("tx", width * per_block)
        lane, row = Var("lane", None, "index"), Var("row", None, "index")
        body = [self.assign(lane, mod(tx, width)),
                self.assign(row, add(mul(bx, per_block), floordiv(tx, width)),
                            (0, blocks * per_block - 1))]
        valid = less_than(row, rows) if blocks * per_block != rows else None
        assigns, row_coords = self.decode(row, [shape[d] for d in row_axes],
                                          [root.tensor.axes[d].name for d in row_axes], f"{root.name}_")
        body += assigns
        coord_of = dict(zip(row_axes, row_coords))
        local = {}
        for p in stats:
            pos = fusion.positions[id(p)] if p is not root else list(range(len(shape)))
            mapping = {ax: coord_of[pos[e]] for e, ax in enumerate(p.axis)}
            body += self._row_reduction(p, plan, mapping, lane, valid, local)
            res = local[id(p.tensor)]
            point = [coord_of[pos[e]] for e in range(len(p.axis))]
            first = all_of([Binary("eq", lane, Const(0, "int64")), valid])
            if p is root:
                body.append(If(first, tuple(self.finish(root, point, res, local))))
            elif id(p) in self.stored or fusion.epilogues(p):
                body.append(If(first, tuple(self.finish(p, point, res, local))))
        if not root.is_reduction:
            inner = math.prod(shape[d] for d in inner_axes)
            iters = -(-inner // width)
            it = self.loop("it", iters)
            qv = Var("q", None, "index")
            step = [self.assign(qv, add(mul(it, width), lane), (0, iters * width - 1))]
            assigns, inner_coords = self.decode(qv, [shape[d] for d in inner_axes],
                                                [root.tensor.axes[d].name for d in inner_axes], f"{root.name}_")
            coord_of.update(zip(inner_axes, inner_coords))
            coords = [coord_of[d] for d in range(len(shape))]
            work = assigns + self.finish(root, coords, self.value(root.body, dict(zip(root.axis, coords)), local), local)
            cond = all_of([less_than(qv, inner) if iters * width != inner else None, valid])
            step += [If(cond, tuple(work))] if cond is not None else work
            body.append(For(it, Const(iters, "int64"), "serial", tuple(step)))
        return self.kernel(root.name, blocks, width * per_block, bx, tx, body)

    def _row_reduction(self, p, plan: RowPlan, mapping, lane, valid, local) -> list:
        """p's reduction over its reduce axes, split across the row's threads, into local."""
        width = plan.row_threads
        red = p.body
        extents = [a.extent for a in p.tensor.reduce_axes]
        total = math.prod(extents)
        iters = -(-total // width)
        part = Scalar(f"{p.name}_part", p.tensor.dtype)
        init = Const(reduce_init(red.combiner, p.tensor.dtype), p.tensor.dtype)
        it = self.loop(f"{p.name}_it", iters)
        r = Var(f"{p.name}_r", None, "index")
        step = [self.assign(r, add(mul(it, width), lane), (0, iters * width - 1))]
        assigns, rcoords = self.decode(r, extents, [a.name for a in p.tensor.reduce_axes], f"{p.name}_")
        full = dict(mapping)
        full.update(zip(p.reduce_axis, rcoords))
        src = self.value(red.source, full, local)
        work = assigns + [Assign(part, reduce_combine(red.combiner, part, src))]
        cond = all_of([less_than(r, total) if iters * width != total else None, valid])
        step += [If(cond, tuple(work))] if cond is not None else work
        result = Scalar(f"{p.name}_val", p.tensor.dtype)
        local[id(p.tensor)] = result
        return [Assign(part, init), For(it, Const(iters, "int64"), "serial", tuple(step)),
                ThreadReduce(result, part, red.combiner, width)]

    # -- tiled reductions ----------------------------------------------------------------
def _topological(roots, depends) -> list:
    order, done = [], set()

    def visit(r, active=()):
        if id(r) in done:
            return
        if id(r) in active:
            raise ScheduleError(f"kernels depend on each other in a cycle at stage {r.name}")
        for other in roots:
            if id(other) in depends[id(r)]:
                visit(other, active + (id(r),))
        done.add(id(r))
        order.append(r)
    for r in roots:
        visit(r)
    return order
