"""GPU lowering: each kernel root's plan becomes one kernel of block and thread loops."""
from __future__ import annotations

import math

from .bounds import guard, in_bounds_condition, interval
from .errors import ScheduleError
from .expr import Binary, Const, Load, Unary, Var, rebuild, reduce_init, substitute
from .gpu_sketch import FlatPlan, RowPlan, TiledPlan
from .gpu_staging import staged_boxes
from .loopnest import (Allocate, Assign, Barrier, Buffer, Fill, For, If, LoopNest, Scalar, Store,
                       ThreadReduce, VectorCopy, add, ceildiv, floordiv, mod, mul)
from .schedule import Schedule
from .sketch import expanded_loads

# Index arithmetic on the GPU is 32-bit; larger tensors would need 64-bit indices.
MAX_INDEX = 2 ** 31 - 1
# Cooperative-fetch loops up to this many iterations are unrolled.
MAX_UNROLLED_FETCH = 8
# Floats per vector load (float4) in cooperative fetches.
VECTOR_WIDTH = 4


def lower_gpu(sch: Schedule) -> LoopNest:
    return _GpuLowering(sch).run()


def _combine(combiner: str, acc, value):
    return Binary({"sum": "add", "max": "maximum", "min": "minimum"}[combiner], acc, value)


def _all(conds):
    conds = [c for c in conds if c is not None]
    if not conds:
        return None
    out = conds[0]
    for c in conds[1:]:
        out = Binary("and", out, c)
    return out


def _lt(a, n: int):
    return Binary("lt", a, Const(n, "int64"))


class _GpuLowering:
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

    def loop(self, name: str, extent: int, kind: str = "serial") -> Var:
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
        body += [If(_lt(q, n), tuple(work))] if blocks * per_block != n else work
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
        valid = _lt(row, rows) if blocks * per_block != rows else None
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
            first = _all([Binary("eq", lane, Const(0, "int64")), valid])
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
            cond = _all([_lt(qv, inner) if iters * width != inner else None, valid])
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
        work = assigns + [Assign(part, _combine(red.combiner, part, src))]
        cond = _all([_lt(r, total) if iters * width != total else None, valid])
        step += [If(cond, tuple(work))] if cond is not None else work
        result = Scalar(f"{p.name}_val", p.tensor.dtype)
        local[id(p.tensor)] = result
        return [Assign(part, init), For(it, Const(iters, "int64"), "serial", tuple(step)),
                ThreadReduce(result, part, red.combiner, width)]

    # -- tiled reductions ----------------------------------------------------------------
    def _tiled(self, st, plan: TiledPlan) -> For:
        shape = st.tensor.shape
        red = st.body
        dtype = st.tensor.dtype
        extents = [a.extent for a in st.tensor.reduce_axes]
        tile = plan.tile
        nblk = [-(-e // t) for e, t in zip(shape, tile)]
        blocks, threads = math.prod(nblk), plan.thread_count
        bx, tx = self.loop("bx", blocks), self.loop("tx", threads)
        names = [a.name for a in st.tensor.axes]
        body, bcoords = self.decode(bx, nblk, names, "blk_")
        tstmts, tcoords = self.decode(tx, list(plan.threads), names, "t_")
        body += tstmts
        bases = []
        for d, (b, t) in enumerate(zip(bcoords, tile)):
            base = Var(f"base_{names[d]}", None, "index")
            body.append(self.assign(base, mul(b, t)))
            bases.append(base)
        points = plan.points
        acc = Buffer(f"{st.name}_acc", (points,), dtype, "local", "local")
        body += [Allocate(acc), Fill(acc, Const(reduce_init(red.combiner, dtype), dtype))]
        boxes = staged_boxes(self.sch, st, plan)
        shared = []
        for box in boxes:
            buf = Buffer(f"{box.tensor.name}_shared", box.extent, box.tensor.dtype, "shared", "local")
            shared.append(buf)
            body.append(Allocate(buf))

        steps = [-(-e // c) for e, c in zip(extents, plan.chunk)]
        ro_vars = [self.loop(f"ro_{a.name}", s) if s > 1 else None
                   for a, s in zip(st.tensor.reduce_axes, steps)]
        ro_base = [mul(v, c) if v is not None else Const(0, "int64") for v, c in zip(ro_vars, plan.chunk)]
        step_body = []
        for box, buf in zip(boxes, shared):
            step_body += self._fetch(st, box, buf, bases, ro_base, plan, tx, threads)
        if boxes:
            step_body.append(Barrier())
        step_body += self._accumulate(st, plan, acc, bases, tcoords, ro_base, boxes, shared)
        if boxes:
            step_body.append(Barrier())
        nest = step_body
        for v, s in reversed(list(zip(ro_vars, steps))):
            if v is not None:
                nest = [For(v, Const(s, "int64"), "serial", tuple(nest))]
        body += nest

        def store(coords, offsets, p):
            valid = _all([_lt(c, e) if nb * t != e else None
                          for c, e, nb, t in zip(coords, shape, nblk, tile)])
            work = self.finish(st, coords, Load(acc, (p,)), {})
            return [If(valid, tuple(work))] if valid is not None else work
        body += self._points(plan, bases, tcoords, store)
        return self.kernel(st.name, blocks, threads, bx, tx, body)

    def _points(self, plan: TiledPlan, bases, tcoords, emit) -> list:
        """Unrolled loops over a thread's register tile (vthreads outside, inner points inside);
        emit(coords, offsets within the block tile, flat accumulator index) gives the
        statements for one point."""
        n = len(bases)
        vs = [self.loop(f"v{d}", plan.vthread[d]) for d in range(n)]
        ins = [self.loop(f"i{d}", plan.inner[d]) for d in range(n)]
        coords, offsets, p = [], [], Const(0, "int64")
        for d in range(n):
            stride = plan.threads[d] * plan.inner[d]
            local = add(add(mul(vs[d], stride), mul(tcoords[d], plan.inner[d])), ins[d])
            offsets.append(local)
            coords.append(add(bases[d], local))
        for v, ext in zip(vs + ins, list(plan.vthread) + list(plan.inner)):
            p = add(mul(p, ext), v)
        nest = emit(coords, offsets, p)
        for v, ext in reversed(list(zip(vs + ins, list(plan.vthread) + list(plan.inner)))):
            nest = [For(v, Const(ext, "int64"), "unrolled", tuple(nest))] if ext > 1 else \
                [_bind_zero(v, nest)]
        return nest

    def _accumulate(self, st, plan, acc, bases, tcoords, ro_base, boxes, shared) -> list:
        red = st.body
        extents = [a.extent for a in st.tensor.reduce_axes]
        ris = [self.loop(f"ri_{a.name}", c) for a, c in zip(st.tensor.reduce_axes, plan.chunk)]
        rcoords = [add(b, ri) for b, ri in zip(ro_base, ris)]
        cond = _all([_lt(r, e) if e % c else None for r, e, c in zip(rcoords, extents, plan.chunk)])
        n = len(bases)

        def emit(coords, offsets, p):
            local = {}
            for box, buf in zip(boxes, shared):
                local[id(box.tensor)] = Load(buf, self._shared_index(box, offsets, ris, plan), box.default)
            mapping = dict(zip(st.axis, coords))
            mapping.update(zip(st.reduce_axis, rcoords))
            src = self.value(red.source, mapping, local)
            return [Store(acc, (p,), _combine(red.combiner, Load(acc, (p,)), src))]
        nest = self._points(plan, bases, [t for t in tcoords[:n]], emit)
        if cond is not None:
            nest = [If(cond, tuple(nest))]
        for ri, c in reversed(list(zip(ris, plan.chunk))):
            kind = "unrolled" if c <= plan.unroll else "serial"
            nest = [For(ri, Const(c, "int64"), kind, tuple(nest))] if c > 1 else [_bind_zero(ri, nest)]
        return nest

    def _shared_index(self, box, offsets, ris, plan) -> tuple:
        """Where a point's read of a staged input sits in its box: the index minus the box
        origin, in the point's offsets within the block tile and reduce step."""
        offsets = list(offsets) + list(ris)
        spans = list(plan.tile) + list(plan.chunk)
        out = []
        for coefs in box.coefs:
            e = Const(0, "int64")
            shift = 0
            for c, off, span in zip(coefs, offsets, spans):
                if c:
                    e = add(e, mul(off, c))
                    if c < 0:
                        shift += -c * (span - 1)
            out.append(add(e, shift))
        return tuple(out)

    def _fetch(self, st, box, buf, bases, ro_base, plan, tx, threads) -> list:
        """Every thread of the block copies its share of the input's box into shared memory,
        consecutive threads taking consecutive elements of the box's last dimension: four
        at a time, as one 128-bit load and store, where the box's rows start 16-byte aligned
        for every block and step (a vector is then wholly inside the tensor or wholly in its
        padding), one at a time elsewhere."""
        width = VECTOR_WIDTH if self._aligned(st, box, plan) else 1
        extents = list(box.extent[:-1]) + [box.extent[-1] // width]
        size = math.prod(extents)
        iters = -(-size // threads)
        f = self.loop(f"f_{box.tensor.name}", iters)
        flat = Var(f"flat_{box.tensor.name}", None, "index")
        step = [self.assign(flat, add(mul(f, threads), tx), (0, iters * threads - 1))]
        assigns, local = self.decode(flat, extents, [f"c{k}" for k in range(len(extents))],
                                     f"{box.tensor.name}_")
        if width > 1:
            last = Var(f"{box.tensor.name}_c{len(extents) - 1}x{width}", None, "index")
            assigns.append(self.assign(last, mul(local[-1], width), (0, box.extent[-1] - width)))
            local = local[:-1] + [last]
        index = self._box_origin(box, bases, ro_base, plan)
        index = [add(o, c) for o, c in zip(index, local)]
        src = self.buffers[id(box.tensor)]
        read = Load(src, tuple(index), box.default)
        if width == 1:
            work = assigns + [Store(buf, tuple(local), guard(read, read, self.ranges))]
        else:
            copy = VectorCopy(buf, _flat_offset(buf.shape, local), src, _flat_offset(src.shape, index), width)
            cond = in_bounds_condition(read, self.ranges)
            work = assigns + ([copy] if cond is None else [If(cond, (copy,)), If(Unary("not", cond), tuple(
                Store(buf, tuple(local[:-1]) + (add(local[-1], t),), Const(box.default, box.tensor.dtype))
                for t in range(width)))])
        step += [If(_lt(flat, size), tuple(work))] if iters * threads != size else work
        kind = "unrolled" if iters <= MAX_UNROLLED_FETCH else "serial"
        return [For(f, Const(iters, "int64"), kind, tuple(step))] if iters > 1 else \
            [_bind_zero(f, step)]

    def _box_origin(self, box, bases, ro_base, plan) -> list:
        """Per index dimension, where this block's box starts in the input at this step."""
        spans = list(plan.tile) + list(plan.chunk)
        origins = list(bases) + list(ro_base)
        out = []
        for const, coefs in zip(box.const, box.coefs):
            e = Const(const, "int64")
            for co, o, span in zip(coefs, origins, spans):
                if co:
                    e = add(e, mul(o, co))
                    if co < 0:
                        e = add(e, co * (span - 1))
            out.append(e)
        return out

    def _aligned(self, st, box, plan) -> bool:
        """Whether the box's last index starts at a multiple of four for every block and step,
        its rows are whole vectors, and the tensor's rows are too (float32 only)."""
        if box.tensor.dtype != "float32" or box.extent[-1] % VECTOR_WIDTH or box.tensor.shape[-1] % VECTOR_WIDTH:
            return False
        spans = list(plan.tile) + list(plan.chunk)
        extents = list(st.tensor.shape) + [a.extent for a in st.tensor.reduce_axes]
        steps = [-(-e // span) for e, span in zip(extents, spans)]
        offset = box.const[-1]
        for co, span, n in zip(box.coefs[-1], spans, steps):
            if co and (co * span) % VECTOR_WIDTH and n > 1:
                return False
            if co < 0:
                offset += co * (span - 1)
        return offset % VECTOR_WIDTH == 0


def _flat_offset(shape, indices):
    """Row-major flat position of indices in a buffer of constant shape."""
    out, stride = Const(0, "int64"), 1
    for idx, ext in reversed(list(zip(indices, shape))):
        out = add(out, mul(idx, stride))
        stride *= ext.value if isinstance(ext, Const) else int(ext)
    return out


def _bind_zero(var, stmts):
    """A loop of one iteration, kept as a loop so its variable is defined (as 0)."""
    return For(var, Const(1, "int64"), "serial", tuple(stmts))


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
