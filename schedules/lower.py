"""Lowering: a Schedule becomes a LoopNest (loops, guards, accumulators, fused epilogues)."""
from __future__ import annotations

import math

from . import padding
from .bounds import guard, in_bounds_condition
from .errors import ScheduleError
from .exp_bounds import mark_nonpositive_exps
from .expr import Binary, Const, Load, Select, Var, rebuild, reduce_combine, reduce_init, substitute, walk
from .loopnest import (Allocate, Assign, Buffer, Fill, For, If, LoopNest, Scalar, Store, add,
                       ceildiv, floordiv, is_const, minimum, mod, mul, sub)
from .passes import hoist_invariant_loads
from .row_ahead import next_row_or_now
from .row_buffers import OutputRow, emit_rows
from .schedule import Schedule, Split
from .tensorize import emit_microkernel
from .window import emit_window

# Above this many copies of a loop body, an unroll hint is ignored (and noted).
MAX_UNROLLED_BODIES = 512


def lower(sch: Schedule, constants=()) -> LoopNest:
    """`constants` names inputs that stay the same across calls (a layer's weights): a
    micro-kernel operand read straight from one is packed by a loop of its own, placed first,
    which a kernel bound to that input runs once (codegen.Kernel.bind)."""
    names = {t.name for t in sch.op.inputs}
    unknown = sorted(set(constants) - names)
    if unknown:
        raise ScheduleError(f"constants {unknown} are not inputs of operator {sch.op.name} "
                            f"(inputs: {', '.join(t.name for t in sch.op.inputs)})")
    winograd = [st.winograd for st in sch.stage_list if st.winograd is not None]
    if winograd:
        from .winograd import lower_winograd
        return lower_winograd(sch, winograd[0], frozenset(constants))
    return _Lowering(sch, frozenset(constants)).run()


class _LoopPlan:
    """Leaf loops of one stage: hoisted extents, named intermediate values, remainder guards."""

    def __init__(self, st):
        self.st = st
        self.pos = {id(l): k for k, l in enumerate(st.leaves)}
        self.prologue: list = []   # extent variables, computed once before the nest
        self.ext = {}
        for v in list(st.axis) + list(st.reduce_axis):
            self.ext[id(v)] = Const(v.extent, "int64")
        self.defs: list = []       # (var, value over its children, set of leaf positions)
        deps = {id(l): {k} for k, l in enumerate(st.leaves)}
        for rel in st.relations:
            if isinstance(rel, Split):
                self.ext[id(rel.outer)] = self._hoist(rel.outer, ceildiv(self.ext[id(rel.parent)], rel.factor))
                self.ext[id(rel.inner)] = rel.factor
            else:
                self.ext[id(rel.fused)] = self._hoist(rel.fused, mul(self.ext[id(rel.outer)], self.ext[id(rel.inner)]))
        for rel in reversed(st.relations):
            if isinstance(rel, Split):
                d = deps[id(rel.outer)] | deps[id(rel.inner)]
                deps[id(rel.parent)] = d
                self.defs.append((rel.parent, add(mul(rel.outer, rel.factor), rel.inner), d))
            else:
                d = deps[id(rel.fused)]
                deps[id(rel.outer)] = deps[id(rel.inner)] = d
                self.defs.append((rel.outer, floordiv(rel.fused, self.ext[id(rel.inner)]), d))
                self.defs.append((rel.inner, mod(rel.fused, self.ext[id(rel.inner)]), d))
        self.deps = deps
        self.clamp = {}      # id(leaf) -> clamped extent expression
        self.guards = {}     # leaf position -> [conditions checked at the top of that loop]
        for rel in st.relations:
            if not isinstance(rel, Split):
                continue
            ext, f = self.ext[id(rel.parent)], rel.factor
            if is_const(f, 1) or (is_const(ext) and is_const(f) and ext.value % f.value == 0):
                continue
            last = max(deps[id(rel.parent)])
            if id(rel.inner) in self.pos and self.pos[id(rel.inner)] == last:
                self.clamp[id(rel.inner)] = minimum(f, sub(ext, mul(rel.outer, f)))
            else:
                self.guards.setdefault(last, []).append(Binary("lt", rel.parent, ext))

    def _hoist(self, v, expr):
        if is_const(expr):
            return expr
        e = Var(f"{v.name}_n", None, "extent")
        self.prologue.append(Assign(e, expr))
        return e

    def extent(self, leaf):
        return self.clamp.get(id(leaf), self.ext[id(leaf)])

    def determined_at(self, var, k: int) -> bool:
        """Whether var's value is known inside the loop at leaf position k."""
        return max(self.deps[id(var)]) <= k

    def assigns(self, done: set, positions=None):
        """A callback giving, per leaf position, the values that become known there.

        `positions` are the leaf loops enclosing this nest; values that need others are skipped.
        """
        allowed = set(range(len(self.st.leaves))) if positions is None else set(positions)

        def at(k):
            out = []
            for var, value, d in self.defs:
                if id(var) not in done and max(d) <= k and d <= allowed:
                    done.add(id(var))
                    out.append(Assign(var, value))
            return out
        return at


class _Lowering:
    def __init__(self, sch: Schedule, constants: frozenset = frozenset()):
        self.sch, self.op = sch, sch.op
        self.constants = constants
        self.setup: list = []      # loops packing constant inputs, run first
        self.prepacked: list = []  # (input name, Buffer) for each of them
        self.notes: list = []
        self._inside_nest = False
        self.buffers = {}
        self.inputs = tuple(self._buffer(t, "input") for t in self.op.inputs)
        self.outputs = tuple(self._buffer(t, "output") for t in self.op.outputs)
        self.temps: list = []
        self.prologue: list = []
        self.packed = {}  # id(input tensor) -> (packed Buffer, axis, factor)
        self.pads = {}    # (id(input tensor), default) -> PadPlan
        self._rows_in_output = set()  # ids of stages whose output row holds an intermediate
        self._folded = set()          # ids of reductions accumulated inside another stage's row loop
        self.computed_ahead = {}      # id(consumer) -> next-row updates in its innermost loop body
        self._names = set()
        self._views = {}  # id(base Buffer) -> (flat view Buffer, base Buffer)

    def _buffer(self, t, role):
        b = Buffer(t.name, t.shape, t.dtype, "global", role)
        self.buffers[id(t)] = b
        return b

    def flat_view(self, buffer: Buffer) -> Buffer:
        """A one-dimensional view of an input, output or temp buffer (the same memory)."""
        if id(buffer) not in self._views:
            size = math.prod(int(d.value) if isinstance(d, Const) else int(d) for d in buffer.shape)
            view = Buffer(self.unique(f"{buffer.name}_flat"), (size,), buffer.dtype, buffer.scope, buffer.role)
            self._views[id(buffer)] = (view, buffer)
        return self._views[id(buffer)][0]

    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self._names:
            k += 1
            name = f"{base}{k}"
        self._names.add(name)
        return name

    # -- planning ------------------------------------------------------------------------------
    def run(self) -> LoopNest:
        self._plan_pack()
        self._effective_bodies()
        self._plan_groups()
        body = list(self.prologue)
        for st in self._group_order([s for s in self.sch.stage_list if not s.inlined]):
            body.extend(self._emit_anchor(st))
        return LoopNest(self.op.name, self.inputs, self.outputs, tuple(self.temps),
                        tuple(p for p, _ in self.sch.params),
                        hoist_invariant_loads(tuple(self.setup + body)), tuple(self.notes),
                        tuple(self.prepacked), tuple(self._views.values()))

    def _effective_bodies(self):
        """Bodies with inlined stages substituted and packed inputs re-indexed, in root vars."""
        self._inline_cache = {}
        self.body = {id(st): self._expand(st) for st in self.sch.stage_list if not st.inlined}
        stage_of = lambda t: None if t.is_placeholder else self.sch[t]
        self.body = {k: mark_nonpositive_exps(b, stage_of, lambda st: self.body.get(id(st)))
                     for k, b in self.body.items()}
        if self.pads:
            plans = list(self.pads.values())
            buffers, stmts = padding.finalize(plans, self.buffers, self.unique)
            self.temps.extend(buffers)
            self.prologue.extend(stmts)
            by_id = {id(p): p for p in plans}
            self.body = {k: padding.resolve(b, by_id) for k, b in self.body.items()}

    def _expand(self, st, raw: bool = False):
        """With `raw`, placeholder reads stay as they are (no padded copy, no guard): a window
        kernel guards them itself, outside its vectorized loop where it can."""
        raw = raw or st.window is not None
        key = (id(st), raw)
        if key in self._inline_cache:
            return self._inline_cache[key]
        ranges = {id(v): (0, v.extent - 1) for v in st.axis + st.reduce_axis}

        def rewrite(node):
            if not isinstance(node, Load):
                return None
            t = node.tensor
            if not t.is_placeholder and self.sch[t].inlined:
                prod = self.sch[t]
                value = substitute(self._expand(prod, raw), dict(zip(prod.axis, node.indices)))
            elif t.is_placeholder and raw and id(t) not in self.packed:
                return None
            elif id(t) in self.packed:
                value = self._packed_load(node)
            elif t.is_placeholder and in_bounds_condition(node, ranges) is not None:
                key = (id(t), float(node.default))
                plan = self.pads.get(key) or padding.PadPlan(t, node.default)
                if plan.try_widen(node, ranges):
                    self.pads[key] = plan
                    plan.direct_readers_only &= st.microkernel is not None and st.microkernel.direct
                    if plan.reader_parts_m is None and st.microkernel is not None:
                        plan.reader_parts_m = st.microkernel.parts_m
                    return padding.padded_read(plan, node)
                value = node
            else:
                value = node
            return guard(node, value, ranges)
        self._inline_cache[key] = rebuild(st.body, rewrite)
        return self._inline_cache[key]

    def _plan_pack(self):
        for t, axis, factor in self.sch.packs:
            n = t.shape[axis]
            rest = t.shape[:axis] + t.shape[axis + 1:]
            shape = (-(-n // factor),) + rest + (factor,)
            buf = Buffer(self.unique(f"{t.name}_packed"), shape, t.dtype, "global", "temp")
            self.temps.append(buf)
            self.packed[id(t)] = (buf, axis, factor)
            loops = [Var(f"{buf.name}_{k}", None, "loop") for k in range(len(shape))]
            orig = [None] * t.ndim
            orig[axis] = add(mul(loops[0], factor), loops[-1])
            others = iter(loops[1:-1])
            for d in range(t.ndim):
                if d != axis:
                    orig[d] = next(others)
            src = self.buffers[id(t)]
            value = Load(src, tuple(orig))
            if n % factor:
                value = Select(Binary("lt", orig[axis], Const(n, "int64")), value,
                               Const(0, t.dtype) if not t.dtype.startswith("float") else Const(0.0, t.dtype))
            stmt = Store(buf, tuple(loops), value)
            for k in reversed(range(len(shape))):
                stmt = For(loops[k], Const(shape[k], "int64"), "parallel" if k == 0 else "serial", (stmt,))
            self.prologue.append(stmt)

    def _packed_load(self, node: Load) -> Load:
        buf, axis, factor = self.packed[id(node.tensor)]
        idx = node.indices
        others = idx[:axis] + idx[axis + 1:]
        return Load(buf, (floordiv(idx[axis], factor),) + others + (mod(idx[axis], factor),), node.default)

    def _plan_groups(self):
        """Decide each stage's role: anchor (own nest), attached (compute_at) or epilogue."""
        self.role, self.frame, self.group, self.attached_at = {}, {}, {}, {}
        self.free = {}  # id(attached stage) -> its axes (positions) kept whole in a row buffer
        stages = [s for s in self.sch.stage_list if not s.inlined]
        self.role_by_tensor = {id(s.tensor): s for s in stages}
        for st in stages:
            if st.epilogue_of is not None:
                anchor = st.epilogue_of[0]
                while anchor.epilogue_of is not None:
                    anchor = anchor.epilogue_of[0]
                if anchor.inlined:
                    raise ScheduleError(f"stage {st.name}: its anchor {anchor.name} was inlined")
                self._check_epilogue(st, anchor)
                self.role[id(st)] = "epilogue"
                self.group[id(st)] = anchor
                self.frame[id(st)] = dict(zip(st.axis, anchor.axis))
            elif st.attach is not None:
                self.role[id(st)] = "attached"
            else:
                self.role[id(st)] = "anchor"
                self.group[id(st)] = st
                self.frame[id(st)] = {}
        attached = [st for st in stages if self.role[id(st)] == "attached"]
        for st in attached:
            consumer, leaf = st.attach
            if self.role.get(id(consumer)) != "anchor":
                raise ScheduleError(f"compute_at: stage {st.name} must be attached to a stage "
                                    f"with its own loop nest, but {consumer.name} is not")
            if any(st.kind[id(leaf)] == "spatial" and not any(leaf is a for a in st.axis)
                   for leaf in st.leaves):
                raise ScheduleError(f"compute_at: stage {st.name} is computed per point of "
                                    f"{consumer.name}; split only its reduction axes")
            self.group[id(st)] = consumer
        # Readers first: a row max read by an attached exp maps through the exp's frame.
        for st in reversed(attached):
            consumer, leaf = st.attach
            self.frame[id(st)] = self._attach_mapping(st, consumer, stages, leaf)
        for st in attached:
            self.attached_at.setdefault(id(st.attach[1]), []).append(st)
        # A stage is stored to memory unless every read of it is served inside its own nest.
        self.stored = {}
        for st in stages:
            stored = self.op.is_output(st.tensor) or not self._all_reads_local(st, stages)
            self.stored[id(st)] = stored
            if stored and not self.op.is_output(st.tensor):
                buf = Buffer(self.unique(st.name), st.tensor.shape, st.tensor.dtype, "global", "temp")
                self.buffers[id(st.tensor)] = buf
                self.temps.append(buf)

    def _check_epilogue(self, st, anchor):
        if st.is_reduction:
            raise ScheduleError(f"stage {st.name} is a reduction and cannot be an epilogue of {anchor.name}")
        if st.tensor.shape != anchor.tensor.shape:
            raise ScheduleError(f"epilogue {st.name}{st.tensor.shape} must have the shape of "
                                f"{anchor.name}{anchor.tensor.shape}")
        if st.relations:
            raise ScheduleError(f"epilogue {st.name} follows the loops of {anchor.name}; do not split it")
        producer = st.epilogue_of[0]
        for node in walk(self.body[id(st)]):
            if isinstance(node, Load) and node.tensor is producer.tensor:
                if not all(i is a for i, a in zip(node.indices, st.axis)):
                    raise ScheduleError(f"epilogue {st.name} reads {producer.name} at other points "
                                        f"than its own; keep it as a separate stage")

    def _framed(self, st):
        return substitute(self.body[id(st)], self.frame[id(st)])

    def _attach_mapping(self, st, consumer, stages, leaf) -> dict:
        """st's axes -> consumer's axes, from how the consumer's nest reads st.

        A reduction is computed at one point: every axis must map. An elementwise stage may
        keep free axes (read at other points, or not yet fixed at `leaf`): it is then
        computed whole along them into a local row buffer (see _emit_attached).
        """
        members = [consumer] + [s for s in stages if self.group.get(id(s)) is consumer and s is not st]
        found, seen = None, False
        for m in members:
            body = self._framed(m) if id(m) in self.frame else self.body[id(m)]
            for node in walk(body):
                if not (isinstance(node, Load) and node.tensor is st.tensor):
                    continue
                idx = [i if isinstance(i, Var) and any(i is a for a in consumer.axis) else None
                       for i in node.indices]
                if found is not None:
                    idx = [i if i is f else None for i, f in zip(idx, found)]
                found, seen = idx, True
        if not seen:
            raise ScheduleError(f"compute_at: {consumer.name} does not read {st.name}")
        plan = _LoopPlan(consumer)
        k = plan.pos[id(leaf)]
        mapped = [i if i is not None and plan.determined_at(i, k) else None for i in found]
        ids = [id(i) for i in mapped if i is not None]
        if len(set(ids)) != len(ids) or (st.is_reduction and len(ids) < len(mapped)) or not ids:
            raise ScheduleError(
                f"compute_at: {consumer.name} must read {st.name} at one point of its "
                f"own loop indices (like {st.name}[i]) for {st.name} to be computed inside it")
        for a, i in zip(st.axis, mapped):
            if i is not None and a.extent != i.extent:
                raise ScheduleError(
                    f"compute_at: {st.name} has extent {a.extent} where {consumer.name} loops over "
                    f"{i.extent}; it can only be computed inside a loop that covers it exactly")
        self.free[id(st)] = tuple(d for d, i in enumerate(mapped) if i is None)
        return {a: i for a, i in zip(st.axis, mapped) if i is not None}

    def _readers(self, st, stages) -> list:
        """Stages whose expanded bodies read st (directly or through inlined stages)."""
        return [o for o in stages if o is not st and any(
            isinstance(n, Load) and n.tensor is st.tensor for n in walk(self.body[id(o)]))]

    def _all_reads_local(self, st, stages) -> bool:
        anchor = self.group.get(id(st))
        free = self.free.get(id(st), ())
        want = tuple(self.frame[id(st)].get(a, a) for a in st.axis)
        for other in self._readers(st, stages):
            if self.group.get(id(other)) is not anchor:
                return False
            body = self._framed(other) if id(other) in self.frame else self.body[id(other)]
            for node in walk(body):
                if isinstance(node, Load) and node.tensor is st.tensor:
                    if not all(d in free or i is w for d, (i, w) in enumerate(zip(node.indices, want))):
                        return False
        return True

    def _group_order(self, stages) -> list:
        """Anchors in an order where every nest runs after the nests it reads from."""
        anchors = [s for s in stages if self.role[id(s)] == "anchor"]
        needs = {id(a): set() for a in anchors}
        for st in stages:
            group = self.group[id(st)]
            for node in walk(self.body[id(st)]):
                if isinstance(node, Load) and not isinstance(node.tensor, Buffer) \
                        and not node.tensor.is_placeholder and id(node.tensor) in self.role_by_tensor:
                    producer = self.role_by_tensor[id(node.tensor)]
                    other = self.group[id(producer)]
                    if other is not group:
                        needs[id(group)].add(id(other))
        order, done = [], set()
        while len(order) < len(anchors):
            ready = [a for a in anchors if id(a) not in done and needs[id(a)] <= done]
            if not ready:
                cycle = [a.name for a in anchors if id(a) not in done]
                raise ScheduleError(f"stages {cycle} of {self.op.name} read each other's results "
                                    f"inside fused loop nests; fuse fewer stages")
            order.append(ready[0])
            done.add(id(ready[0]))
        return order

    # -- emission ------------------------------------------------------------------------------
    def _resolve(self, expr, env):
        """Serve reads of stages already computed in this nest from their local scalars."""
        def rewrite(node):
            if isinstance(node, Load) and id(node.tensor) in env:
                local, want = env[id(node.tensor)]
                if all(w is None or i is w for i, w in zip(node.indices, want)):
                    free_indices = tuple(i for i, w in zip(node.indices, want) if w is None)
                    if isinstance(local, Buffer):  # a row buffer, indexed by the free axes
                        return Load(local, free_indices)
                    if isinstance(local, OutputRow):
                        return Load(local.buffer, local.indices(free_indices))
                    return local
            if isinstance(node, Load) and not isinstance(node.tensor, Buffer):
                buf = self.buffers.get(id(node.tensor))
                if buf is None:
                    raise ScheduleError(f"stage {node.tensor.name} is read at a point that is not "
                                        f"computed locally and it is not stored")
                return Load(buf, node.indices, node.default)
            return None
        return rebuild(expr, rewrite)

    def _emit_loops(self, plan, positions, inner_fn, k_assigns, hooks=None):
        """Nested loops over the leaves at `positions`; inner_fn() gives the innermost body."""
        st = plan.st
        if not positions:
            return inner_fn()
        k = positions[0]
        leaf = st.leaves[k]
        body = list(k_assigns(k))
        if hooks:
            body.extend(hooks(k))
        body.extend(self._emit_loops(plan, positions[1:], inner_fn, k_assigns, hooks))
        for cond in reversed(plan.guards.get(k, [])):
            body = [If(cond, tuple(body))]
        kind = st.annotations.get(id(leaf), "serial")
        extent = plan.extent(leaf)
        if kind == "parallel" and (k != 0 or self._inside_nest):
            raise ScheduleError(f"parallel on stage {st.name}: only the outermost loop of a loop "
                                f"nest runs in parallel, {leaf.name} is at depth {k}")
        if kind == "vectorized" and k != len(st.leaves) - 1:
            raise ScheduleError(f"vectorize on stage {st.name}: {leaf.name} is not the innermost loop")
        if kind == "unrolled" and not (is_const(extent) and extent.value <= MAX_UNROLLED_BODIES):
            self.notes.append(f"{st.name}: unroll of {leaf.name} ignored, its extent is not a "
                              f"constant of at most {MAX_UNROLLED_BODIES}")
            kind = "serial"
        if is_const(extent, 1):
            return [Assign(leaf, Const(0, "int64"))] + body
        return [For(leaf, extent, kind, tuple(body))]

    def epilogues_of(self, st) -> list:
        return [s for s in self.sch.stage_list
                if self.role.get(id(s)) == "epilogue" and self.group.get(id(s)) is st]

    def has_epilogues(self, st) -> bool:
        return bool(self.epilogues_of(st))

    def _emit_anchor(self, st):
        self._inside_nest = False
        if st.microkernel is not None:
            if any(self.attached_at.get(id(leaf)) for leaf in st.leaves):
                raise ScheduleError(f"tensorize on stage {st.name}: stages computed inside its loops "
                                    f"(compute_at) are not supported; compute them separately")
            return emit_microkernel(self, st, self._tail(st, {}))
        if st.window is not None:
            if any(self.attached_at.get(id(leaf)) for leaf in st.leaves):
                raise ScheduleError(f"window kernel on stage {st.name}: stages computed inside its loops "
                                    f"(compute_at) are not supported; compute them separately")
            return emit_window(self, st, self._tail(st, {}))
        plan = _LoopPlan(st)
        leaves = st.leaves
        n = len(leaves)
        first_reduce = next((k for k, l in enumerate(leaves) if st.kind[id(l)] == "reduce"), n)
        env = {}
        done = set()
        assigns = plan.assigns(done, range(first_reduce))
        tail = self._tail(st, env)

        def hooks(k):
            out = []
            for att in self.attached_at.get(id(leaves[k]), []):
                if self.group.get(id(att)) is not st:
                    continue
                missing = [v.name for v in self.frame[id(att)].values() if not plan.determined_at(v, k)]
                if missing or k >= first_reduce:
                    raise ScheduleError(f"compute_at: {att.name} is attached at {leaves[k].name} of "
                                        f"{st.name}, where axes {missing or 'of the reduction'} still vary")
                out.extend(self._emit_attached(att, env, (plan, k)))
            return out

        if not st.is_reduction:
            def innermost():
                return tail(self._resolve(self.body[id(st)], env)) + self.computed_ahead.get(id(st), [])
            body = self._emit_loops(plan, list(range(n)), innermost, assigns, hooks)
            return plan.prologue + body

        source = self.body[id(st)]
        combiner, dtype = source.combiner, st.tensor.dtype
        init = Const(reduce_init(combiner, dtype), dtype)
        inner_spatial = [k for k in range(first_reduce, n) if st.kind[id(leaves[k])] == "spatial"]

        def at_reduction_start():
            acc_name = self.unique(f"{st.name}_acc")
            spatial_leaves = [leaves[k] for k in inner_spatial]
            if not spatial_leaves:
                acc = Scalar(acc_name, dtype)
                acc_ref, setup = acc, [Assign(acc, init)]
            else:
                shape = tuple(plan.ext[id(l)] for l in spatial_leaves)
                buf = Buffer(acc_name, shape, dtype, "local", "local")
                acc_ref, setup = Load(buf, tuple(spatial_leaves)), [Allocate(buf), Fill(buf, init)]
            rdone = set(done)
            r_assigns = plan.assigns(rdone)
            hoist_from = n
            while hoist_from > first_reduce and st.kind[id(leaves[hoist_from - 1])] == "reduce":
                hoist_from -= 1
            src = source.source

            def update_stmt(target):
                value = reduce_combine(combiner, target, self._resolve(src, env))
                if isinstance(target, Scalar):
                    return [Assign(target, value)]
                return [Store(target.tensor, target.indices, value)]

            if isinstance(acc_ref, Load) and hoist_from < n:
                t = Scalar(self.unique(f"{st.name}_sum"), dtype)
                inner_positions = list(range(hoist_from, n))

                def hoisted():
                    return [Assign(t, acc_ref)] + self._emit_loops(
                        plan, inner_positions, lambda: update_stmt(t), r_assigns) + \
                        [Store(acc_ref.tensor, acc_ref.indices, t)]
                main = self._emit_loops(plan, list(range(first_reduce, hoist_from)), hoisted, r_assigns)
            else:
                main = self._emit_loops(plan, list(range(first_reduce, n)), lambda: update_stmt(acc_ref), r_assigns)
            wdone = set(done)
            w_assigns = plan.assigns(wdone, list(range(first_reduce)) + inner_spatial)
            write = self._emit_loops(plan, inner_spatial, lambda: tail(acc_ref), w_assigns)
            return setup + main + write

        outer = list(range(first_reduce))
        if outer:
            body = self._emit_loops(plan, outer, at_reduction_start, assigns, hooks)
        else:
            body = at_reduction_start()
        return plan.prologue + body

    def _tail(self, st, env):
        """Statements once a point of anchor `st` is final: store it and run its epilogues."""
        epilogues = self.epilogues_of(st)

        def emit(value):
            out = []
            scalar = Scalar(self.unique(f"{st.name}_v"), st.tensor.dtype)
            out.append(Assign(scalar, value))
            local = dict(env)
            local[id(st.tensor)] = (scalar, tuple(st.axis))
            if self.stored[id(st)]:
                out.append(Store(self.buffers[id(st.tensor)], tuple(st.axis), scalar))
            for ep in epilogues:
                v = Scalar(self.unique(f"{ep.name}_v"), ep.tensor.dtype)
                out.append(Assign(v, self._resolve(self._framed(ep), local)))
                local[id(ep.tensor)] = (v, tuple(st.axis))
                if self.stored[id(ep)]:
                    out.append(Store(self.buffers[id(ep.tensor)], tuple(st.axis), v))
            return out
        return emit

    def _emit_attached(self, att, env, where):
        """A producer computed at one point of its consumer's axes: a scalar reduction.
        `where` is (the consumer's loop plan, the leaf position it is attached at)."""
        prev = self._inside_nest
        self._inside_nest = True
        try:
            frame = self.frame[id(att)]
            body = self._framed(att)
            dtype = att.tensor.dtype
            if id(att) in self._folded:
                return []  # accumulated inside the loop of the row it reads
            if self.free.get(id(att)):
                return emit_rows(self, att, body, env)
            want = tuple(frame[a] for a in att.axis)
            scalar = Scalar(self.unique(f"{att.name}_v"), dtype)
            if not att.is_reduction:
                out = [Assign(scalar, self._resolve(body, env))]
            else:
                plan = _LoopPlan(att)
                positions = [k for k, l in enumerate(att.leaves) if att.kind[id(l)] == "reduce"]
                assigns = plan.assigns(set())
                init = Const(reduce_init(body.combiner, dtype), dtype)
                src = body.source
                update = lambda: [Assign(scalar, reduce_combine(body.combiner, scalar, self._resolve(src, env)))]
                out = plan.prologue + [Assign(scalar, init)] + self._emit_loops(plan, positions, update, assigns)
                if att.next_row:
                    out = next_row_or_now(self, att, scalar, out, *where)
            env[id(att.tensor)] = (scalar, want)
            if self.stored[id(att)]:
                out.append(Store(self.buffers[id(att.tensor)], want, scalar))
            return out
        finally:
            self._inside_nest = prev
