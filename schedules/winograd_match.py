"""Which convolutions Winograd F(m x m, 3x3) computes, and the plan a schedule records for one."""
from __future__ import annotations

from dataclasses import dataclass

from .bounds import affine_coefficient, interval
from .expr import Binary, Const, Load, Reduce, Var, free_vars, walk

TILE_SIZES = (2, 4)
SPLITS = ("auto", "tiles", "planes")
GEMM_ROWS = (4, 6, 8)
GEMM_VECS = (1, 2)


@dataclass(frozen=True, eq=False)
class ElementwiseFinish:
    """An epilogue computed point by point from the conv's value `acc` at `axes`, reading only
    that, inputs of the output's shape at the same point (a residual), per-filter vectors
    (a bias, a scale) and constants: body is its expression over those."""
    body: object
    axes: tuple
    acc: object


@dataclass(frozen=True)
class WinogradConv:
    """y = act(conv2d(x, w, 3x3, stride 1, pad 1) + bias) on a batch of N NCHW float32 images:
    input positions of data, weight and bias (None without one) among the operator's inputs.
    An epilogue of another form is `finish` (bias None, relu False), applied after the
    output transform."""
    N: int
    C: int
    H: int
    W: int
    K: int
    data: int
    weight: int
    bias: int | None
    relu: bool
    finish: ElementwiseFinish | None = None


# The planes of V and M start one cache line apart modulo 4 KiB: planes of a whole number of
# pages put all streams of a transform in one L1 set, more than its 8 ways (64x56x56's
# output transform: 0.106 -> 0.042 ms).
SKEW = 16


@dataclass(frozen=True)
class TileGeometry:
    """Where Winograd F(m x m, 3x3) puts a conv's data, for GEMM tiles of `rows` x `nr`:
    th x tw output tiles an image, the padded channels-last input (N x Hp x Wp x C), the
    N * th * tw tiles of the batch (image-major) padded to Tp and output channels to Kp, and
    the planes of V (SV floats apart) and M (SM apart)."""
    m: int
    C: int
    H: int
    W: int
    K: int
    rows: int
    nr: int
    N: int = 1

    @property
    def alpha(self) -> int:
        return self.m + 2

    @property
    def th(self) -> int:
        return -(-self.H // self.m)

    @property
    def tw(self) -> int:
        return -(-self.W // self.m)

    @property
    def Hp(self) -> int:
        return self.m * self.th + 2

    @property
    def Wp(self) -> int:
        return self.m * self.tw + 2

    @property
    def tiles(self) -> int:
        return self.N * self.th * self.tw

    @property
    def Tp(self) -> int:
        return -(-self.tiles // self.rows) * self.rows

    @property
    def Kp(self) -> int:
        return -(-self.K // self.nr) * self.nr

    @property
    def SV(self) -> int:
        return self.Tp * self.C + SKEW

    @property
    def SM(self) -> int:
        return self.Kp * self.Tp + SKEW

    def tiles_outweigh_weights(self) -> bool:
        """Whether V and M are larger than U: the GEMMs and the output transform are then
        split by tiles, so each thread reads back only what it wrote (by planes, 64x56x56
        took 1.5 ms instead of 0.63 in half of the processes, the cores handing V and M to
        each other)."""
        return self.Tp * (self.C + self.Kp) > self.C * self.Kp


@dataclass(frozen=True)
class WinogradPlan:
    """Tile size m, the GEMM register tile (rows x vecs vectors of lanes) and how the GEMMs
    and the output transform are split between threads ("tiles", "planes" or "auto")."""
    conv: WinogradConv
    m: int
    rows: int
    vecs: int
    lanes: int
    split: str

    @property
    def geometry(self) -> TileGeometry:
        c = self.conv
        return TileGeometry(self.m, c.C, c.H, c.W, c.K, self.rows, self.vecs * self.lanes, c.N)

    def by_tiles(self) -> bool:
        """Whether the GEMMs and the output transform are split by tiles ("auto": where V
        and M outweigh U) rather than by planes."""
        return self.geometry.tiles_outweigh_weights() if self.split == "auto" else self.split == "tiles"


def default_tile_size(conv: WinogradConv) -> int:
    """4 once an image holds 16 tiles of 4x4: F(4x4) won 1.9-2.6x over the best framework on
    64x56x56 to 256x14x14, and lost on 512x7x7 (four half-empty tiles) where F(2x2) won. The
    batch does not count: it adds tiles, but each image's are as empty."""
    return 4 if -(-conv.H // 4) * -(-conv.W // 4) >= 16 else 2


def match_winograd(sch, st, body, epilogues) -> WinogradConv | None:
    """The WinogradConv that stage st (with its expanded body) and its epilogues compute, or
    None: an NCHW 3x3, stride-1, pad-1 float32 conv of a batch of images, finished by
    nothing, a bias, a relu, a bias then a relu, or any other elementwise epilogue
    (ElementwiseFinish)."""
    op = sch.op
    if st.tensor.dtype != "float32" or len(op.outputs) != 1 or len(epilogues) > 1:
        return None
    if len(op.stages) != 1 + len(epilogues):
        return None
    axes, raxes = st.axis, st.reduce_axis
    if len(axes) != 4 or len(raxes) != 3 or [r.extent for r in raxes[1:]] != [3, 3]:
        return None
    if not (isinstance(body, Reduce) and body.combiner == "sum" and isinstance(body.source, Binary)
            and body.source.op == "mul"):
        return None
    n, k, oh, ow = axes
    rc, rr, rs = raxes
    found = None
    for x, w in ((body.source.a, body.source.b), (body.source.b, body.source.a)):
        if _reads(x, ((n,), (rc,), (oh, rr), (ow, rs)), (0, 0, -1, -1), axes + raxes) \
                and _reads(w, ((k,), (rc,), (rr,), (rs,)), (0, 0, 0, 0), axes + raxes):
            found = (x.tensor, w.tensor)
    if found is None:
        return None
    data, weight = found
    N, C, K, H, W = n.extent, rc.extent, k.extent, oh.extent, ow.extent
    if not (data.is_placeholder and weight.is_placeholder) or tuple(data.shape) != (N, C, H, W) \
            or tuple(weight.shape) != (K, C, 3, 3) or data.dtype != "float32" or weight.dtype != "float32":
        return None
    bias, relu, other = None, False, None
    if epilogues:
        e = epilogues[0]
        if not op.is_output(e.tensor) or tuple(e.tensor.shape) != tuple(st.tensor.shape) \
                or e.tensor.dtype != "float32":
            return None
        finish = _finish(e.body, st.tensor, e.axis)
        bias_tensor = finish[0] if finish is not None else None
        if bias_tensor is not None and (not bias_tensor.is_placeholder or tuple(bias_tensor.shape) != (K,)
                                        or bias_tensor.dtype != "float32"):
            finish = None
        if finish is not None:
            relu = finish[1]
            bias = None if bias_tensor is None else _position(op, bias_tensor)
        elif _elementwise(e.body, st.tensor, tuple(e.axis), op):
            other = ElementwiseFinish(e.body, tuple(e.axis), st.tensor)
        else:
            return None
    elif not op.is_output(st.tensor):
        return None
    return WinogradConv(N, C, H, W, K, _position(op, data), _position(op, weight), bias, relu, other)


def _elementwise(body, acc_tensor, axes, op) -> bool:
    """Whether an epilogue reads only the conv at its own point, float32 inputs of the
    output's shape at that point, float32 per-filter vectors (indexed by the filter axis) and
    constants, with no reduction."""
    shape = tuple(acc_tensor.shape)
    inputs = {id(t) for t in op.inputs}
    if body.dtype != "float32":
        return False
    for node in walk(body):
        if isinstance(node, Reduce):
            return False
        if isinstance(node, Var) and not any(node is a for a in axes):
            return False
        if not isinstance(node, Load):
            continue
        same_point = len(node.indices) == len(axes) and all(i is a for i, a in zip(node.indices, axes))
        if node.tensor is acc_tensor:
            if not same_point:
                return False
            continue
        if id(node.tensor) not in inputs or node.tensor.dtype != "float32":
            return False
        per_filter = tuple(node.tensor.shape) == (shape[1],) and len(node.indices) == 1 \
            and node.indices[0] is axes[1]
        if not (per_filter or (tuple(node.tensor.shape) == shape and same_point)):
            return False
    return True


def _position(op, tensor) -> int:
    return next(k for k, t in enumerate(op.inputs) if t is tensor)


def _reads(load, uses, offsets, variables) -> bool:
    """Whether `load` reads a tensor at indices[d] = sum(uses[d]) + offsets[d] exactly, with
    zeros outside it (the transforms pad with zeros)."""
    if not isinstance(load, Load) or len(load.indices) != len(uses) or load.default != 0.0:
        return False
    zero = {id(v): (0, 0) for v in variables}
    for index, used, offset in zip(load.indices, uses, offsets):
        if any(not isinstance(v, Var) or not any(v is u for u in variables) for v in free_vars(index)):
            return False
        for v in variables:
            want = 1 if any(v is u for u in used) else 0
            if v.extent != 1 and affine_coefficient(index, v) != want:
                return False
        if interval(index, zero) != (offset, offset):
            return False
    return True


def _finish(e, acc_tensor, axes):
    """(bias tensor or None, relu) for an epilogue computing act(acc[axes] (+ bias[axes[1]])),
    or None for any other epilogue."""
    relu = False
    if isinstance(e, Binary) and e.op == "maximum":
        for x, zero in ((e.a, e.b), (e.b, e.a)):
            if isinstance(zero, Const) and zero.value == 0.0:
                e, relu = x, True
                break
        else:
            return None
    if _is_acc(e, acc_tensor, axes):
        return None, relu
    if isinstance(e, Binary) and e.op == "add":
        for acc, b in ((e.a, e.b), (e.b, e.a)):
            if _is_acc(acc, acc_tensor, axes) and isinstance(b, Load) and len(b.indices) == 1 \
                    and b.indices[0] is axes[1]:
                return b.tensor, relu
    return None


def _is_acc(e, acc_tensor, axes) -> bool:
    return isinstance(e, Load) and e.tensor is acc_tensor and len(e.indices) == len(axes) \
        and all(i is a for i, a in zip(e.indices, axes))
