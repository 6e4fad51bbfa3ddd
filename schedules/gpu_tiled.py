"""GPU tiled reductions: block tiles, shared-memory staging of input boxes, register tiles."""
from __future__ import annotations

import math

from .bounds import all_of, guard, in_bounds_condition
from .expr import Binary, Const, Load, Unary, Var, reduce_combine, reduce_init
from .gpu_sketch import TiledPlan
from .gpu_staging import staged_boxes
from .loopnest import Allocate, Barrier, Buffer, Fill, For, If, Store, VectorCopy, add, flat_offset, mul

# Cooperative-fetch loops up to this many iterations are unrolled.
MAX_UNROLLED_FETCH = 8
# Floats per vector load (float4) in cooperative fetches.
VECTOR_WIDTH = 4


def less_than(a, n: int):
    return Binary("lt", a, Const(n, "int64"))


class TiledKernels:
    """The tiled-reduction kernels of the GPU lowering (mixed into it: it provides loop(),
    assign(), decode(), value(), finish(), kernel() and the ranges of index variables)."""

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
            valid = all_of([less_than(c, e) if nb * t != e else None
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
        cond = all_of([less_than(r, e) if e % c else None for r, e, c in zip(rcoords, extents, plan.chunk)])
        n = len(bases)

        def emit(coords, offsets, p):
            local = {}
            for box, buf in zip(boxes, shared):
                local[id(box.tensor)] = Load(buf, self._shared_index(box, offsets, ris, plan), box.default)
            mapping = dict(zip(st.axis, coords))
            mapping.update(zip(st.reduce_axis, rcoords))
            src = self.value(red.source, mapping, local)
            return [Store(acc, (p,), reduce_combine(red.combiner, Load(acc, (p,)), src))]
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
            copy = VectorCopy(buf, flat_offset(buf.shape, local), src, flat_offset(src.shape, index), width)
            cond = in_bounds_condition(read, self.ranges)
            work = assigns + ([copy] if cond is None else [If(cond, (copy,)), If(Unary("not", cond), tuple(
                Store(buf, tuple(local[:-1]) + (add(local[-1], t),), Const(box.default, box.tensor.dtype))
                for t in range(width)))])
        step += [If(less_than(flat, size), tuple(work))] if iters * threads != size else work
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


def _bind_zero(var, stmts):
    """A loop of one iteration, kept as a loop so its variable is defined (as 0)."""
    return For(var, Const(1, "int64"), "serial", tuple(stmts))
