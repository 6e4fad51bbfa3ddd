"""Winograd F(2x2, 3x3) and F(4x4, 3x3) in the search space: which convs qualify, the knobs,
the lowering against the reference (interpreted and compiled), binding and features."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from codegen import build, kernel_source
from costmodel.features import FEATURE_NAMES, featurize_config
from helpers import assert_matches, avx2_cpu
from schedules import Config, Target, ops
from schedules.contraction import expand_inlined
from schedules.schedule import Schedule
from schedules.winograd_match import GEMM_ROWS, GEMM_VECS, SPLITS, TILE_SIZES, match_winograd
from test_tensorize import RELAXED


def _conv(C=8, H=6, W=7, K=5, **kw):
    kw.setdefault("padding", 1)
    return ops.conv2d(kw.pop("N", 1), C, H, W, K, kw.pop("R", 3), kw.pop("S", 3), **kw)


def _match(op):
    sch = Schedule(op, Target.host_cpu(), None)
    st = sch[op.stages[0]]
    return match_winograd(sch, st, expand_inlined(sch, st), [sch[t] for t in op.stages[1:]])


@pytest.mark.parametrize("bias,activation,relu", [(False, None, False), (True, None, False),
                                                  (False, "relu", True), (True, "relu", True)])
@pytest.mark.parametrize("N", [1, 3])
def test_same_padded_3x3_convs_qualify_with_their_epilogue(bias, activation, relu, N):
    conv = _match(_conv(N=N, C=6, H=5, W=9, K=4, bias=bias, activation=activation))
    assert conv is not None
    assert (conv.N, conv.C, conv.H, conv.W, conv.K, conv.relu) == (N, 6, 5, 9, 4, relu)
    assert (conv.bias == 2) if bias else conv.bias is None


@pytest.mark.parametrize("kw", [dict(stride=2), dict(padding=0), dict(padding=2), dict(dilation=2),
                                dict(R=5, S=5, padding=2), dict(R=1, S=1, padding=0), dict(layout="NHWC"),
                                dict(dtype="float64")])
def test_other_convs_do_not_qualify_and_keep_their_kernel_choices(kw):
    op = _conv(**kw)
    assert _match(op) is None
    names = {k.name: k for k in op.space("cpu").knobs}
    assert not any(".wino_" in n for n in names)
    kernel = names.get("conv2d.kernel")
    assert kernel is None or "winograd" not in kernel.choices


@pytest.mark.parametrize("bias,activation", [(False, "gelu"), (True, "sigmoid"), (True, "tanh")])
def test_other_activations_qualify_as_an_elementwise_finish(bias, activation):
    conv = _match(_conv(C=6, H=5, W=9, K=4, bias=bias, activation=activation))
    assert conv is not None and conv.finish is not None
    assert conv.bias is None and not conv.relu


def _residual(N=1, C=4, H=6, W=6, K=5, skip=None, name="conv_bias_add_relu"):
    """relu(conv(x, w) + bias + skip): a ResNet basic block's second conv, its shortcut added.
    `skip` gives the skip tensor's shape and how it is read (default: the output's, at the point)."""
    from schedules import te
    x = te.placeholder((N, C, H, W), "float32", name="data")
    w = te.placeholder((K, C, 3, 3), "float32", name="weight")
    b = te.placeholder((K,), "float32", name="bias")
    shape, read = skip or ((N, K, H, W), lambda r, n, k, h, v: r[n, k, h, v])
    r = te.placeholder(shape, "float32", name="skip")
    rc, rr, rs = te.reduce_axis(C, "rc"), te.reduce_axis(3, "rr"), te.reduce_axis(3, "rs")
    acc = te.compute((N, K, H, W), lambda n, k, h, v: te.sum(x[n, rc, h + rr - 1, v + rs - 1] * w[k, rc, rr, rs],
                                                             axis=[rc, rr, rs]), name="conv2d")
    y = te.compute((N, K, H, W), lambda n, k, h, v: te.maximum(acc[n, k, h, v] + b[k] + read(r, n, k, h, v), 0.0),
                   name="epilogue")
    return te.operator(name, inputs=[x, w, b, r], outputs=[y])


def test_an_epilogue_reading_inputs_at_its_point_or_per_filter_qualifies_and_no_other():
    conv = _match(_residual())
    assert conv is not None and conv.finish is not None and conv.bias is None
    # As many rows as filters, so only the index tells a per-row vector from a per-filter one.
    per_filter = ((5,), lambda r, n, k, h, v: r[k])
    per_row = ((5,), lambda r, n, k, h, v: r[h])
    moved = ((1, 5, 5, 5), lambda r, n, k, h, v: r[n, k, v, h])   # another point
    assert _match(_residual(H=5, W=5, skip=per_filter)) is not None
    assert _match(_residual(H=5, W=5, skip=per_row)) is None
    assert _match(_residual(H=5, W=5, skip=moved)) is None


def test_a_conv_padded_with_other_values_than_zero_does_not_qualify():
    from schedules import te
    x = te.placeholder((2, 4, 6, 6), "float32", name="data")
    w = te.placeholder((5, 4, 3, 3), "float32", name="weight")
    rc, rr, rs = te.reduce_axis(4, "rc"), te.reduce_axis(3, "rr"), te.reduce_axis(3, "rs")

    def conv(default):
        acc = te.compute((2, 5, 6, 6), lambda n, k, h, v: te.sum(
            x.at(n, rc, h + rr - 1, v + rs - 1, default=default) * w[k, rc, rr, rs], axis=[rc, rr, rs]),
            name="conv2d")
        return te.operator("conv_padded", inputs=[x, w], outputs=[acc])
    assert _match(conv(0.0)) is not None
    assert _match(conv(1.0)) is None


def test_an_epilogue_of_another_shape_does_not_qualify():
    from schedules import te
    x = te.placeholder((1, 4, 6, 6), "float32", name="data")
    w = te.placeholder((5, 4, 3, 3), "float32", name="weight")
    rc, rr, rs = te.reduce_axis(4, "rc"), te.reduce_axis(3, "rr"), te.reduce_axis(3, "rs")
    acc = te.compute((1, 5, 6, 6), lambda n, k, h, v: te.sum(x[n, rc, h + rr - 1, v + rs - 1] * w[k, rc, rr, rs],
                                                             axis=[rc, rr, rs]), name="conv2d")
    same = te.compute((1, 5, 6, 6), lambda n, k, h, v: te.maximum(acc[n, k, h, v], 0.0), name="epilogue")
    cropped = te.compute((1, 5, 5, 5), lambda n, k, h, v: te.maximum(acc[n, k, h, v], 0.0), name="epilogue")
    assert _match(te.operator("conv_relu", inputs=[x, w], outputs=[same])) is not None
    assert _match(te.operator("conv_cropped", inputs=[x, w], outputs=[cropped])) is None


def test_qualifying_spaces_offer_winograd_and_default_to_it_from_32_channels():
    small = {k.name: k for k in _conv(C=8, K=8, bias=True, activation="relu").space("cpu").knobs}
    assert small["conv2d.kernel"].choices == ("micro", "tiled", "winograd")
    assert small["conv2d.kernel"].default() != "winograd"
    wide = _conv(C=32, H=14, W=14, K=32, bias=True, activation="relu").space("cpu")
    default = wide.default()
    assert default["conv2d.kernel"] == "winograd" and default["conv2d.wino_m"] == 4
    assert _conv(C=32, H=7, W=7, K=32).space("cpu").default()["conv2d.wino_m"] == 2
    knobs = {k.name: k for k in wide.knobs}
    for name, choices in (("wino_m", TILE_SIZES), ("wino_rows", GEMM_ROWS), ("wino_vecs", GEMM_VECS),
                          ("wino_split", SPLITS)):
        knob = knobs[f"conv2d.{name}"]
        assert knob.choices == choices and not knob.runtime
        assert knob.active_when == (("conv2d.kernel", ("winograd",)),)


def test_spaces_without_winograd_keep_their_versions():
    """Versions of spaces recorded before Winograd joined (AVX2 lanes, so any x86-64 host with
    AVX2 gives the same): their tuned records stay valid."""
    assert ops.matmul(64, 64, 64).space(avx2_cpu()).version == "1ef0a822f64c"
    assert _conv(C=16, H=14, W=14, K=16, stride=2, bias=True, activation="relu").space(avx2_cpu()).version == \
        "5f356e2e72c5"


def _winograd_config(op, target, m, rows, vecs, split):
    cfg = dict(op.space(target).default())
    cfg.update({"conv2d.kernel": "winograd", "conv2d.wino_m": m, "conv2d.wino_rows": rows,
                "conv2d.wino_vecs": vecs, "conv2d.wino_split": split})
    return Config(cfg)


def _check(op, got, ref, m, what):
    if m == 2:
        assert_matches(op, got, ref, what)
        return
    # F(4x4)'s larger coefficients cost accuracy: about 1e-5 of the largest output.
    err = float(np.abs(got.astype(np.float64) - ref).max())
    assert err <= 5e-5 * float(np.abs(ref).max()) + 1e-5, f"{op.name}: error {err:.3g} {what}"


@settings(max_examples=40, **RELAXED)
@given(N=st.integers(1, 3), C=st.integers(1, 20), H=st.integers(1, 11), W=st.integers(1, 19),
       K=st.integers(1, 9), m=st.sampled_from(TILE_SIZES), rows=st.sampled_from(GEMM_ROWS),
       vecs=st.sampled_from(GEMM_VECS), split=st.sampled_from(SPLITS),
       epilogue=st.sampled_from([(False, None), (True, None), (False, "relu"), (True, "relu"), (True, "gelu"),
                                 (False, "sigmoid"), (True, "residual")]),
       avx2=st.booleans(), seed=st.integers(0, 2**16))
def test_interpreted_winograd_matches_the_reference(N, C, H, W, K, m, rows, vecs, split, epilogue, avx2, seed):
    """Every knob value on ragged shapes: channels off the vector width, images off the tile
    size, runs of tiles that overlap, K off the panel width, both splits, 8 and 16 lanes, and
    batches whose tiles run on from one image into the next in a GEMM row tile; epilogues of
    bias and relu in the output transform, and others (gelu, sigmoid, a residual) after it."""
    op = _residual(N, C, H, W, K) if epilogue[1] == "residual" else \
        _conv(N=N, C=C, H=H, W=W, K=K, bias=epilogue[0], activation=epilogue[1])
    target = avx2_cpu() if avx2 else Target.host_cpu()
    # One output pixel or channel is no contraction: no micro-kernel, so no Winograd either.
    assume(H * W > 1 and K > 1)
    cfg = _winograd_config(op, target, m, rows, vecs, split)
    kernel = build(op, target, cfg, jit=False)
    inputs = op.random_inputs(seed)
    _check(op, kernel(*inputs), op.reference(*inputs), m, f"with config {cfg.to_json()}")


@pytest.mark.parametrize("m,N,H,W,finish", [(2, 1, 9, 34, True), (4, 1, 10, 35, True), (4, 1, 5, 67, False),
                                           (4, 3, 6, 9, True)])
def test_compiled_winograd_matches_the_reference_and_binds_its_weights(m, N, H, W, finish):
    """Compiled: the intrinsics on 16 channels plus 4 in scalar code, whole runs of tiles (of
    8 and, 67 wide at m=4, of 16) and ragged edges, with and without bias and relu, one image
    and three; bound to its weight, U is transformed once and a new weight is taken."""
    op = _conv(N=N, C=20, H=H, W=W, K=35, bias=finish, activation="relu" if finish else None)
    cfg = _winograd_config(op, Target.host_cpu(), m, 8, 2, "auto")
    constants = ("weight", "bias") if finish else ("weight",)
    kernel = build(op, "cpu", cfg, constants=constants)
    assert [name for name, _ in kernel.loopnest.prepacked] == ["weight"]
    inputs = op.random_inputs(3)
    x, w = inputs[:2]
    fixed = dict(zip(("weight", "bias"), inputs[1:]))
    _check(op, kernel(*inputs), op.reference(*inputs), m, "unbound")
    bound = kernel.bind(**fixed)
    _check(op, bound(x), op.reference(*inputs), m, "bound")
    x2 = np.flip(x, axis=3).copy()
    _check(op, bound(x2), op.reference(x2, *inputs[1:]), m, "bound, second input")
    w2 = -w
    _check(op, bound.bind(weight=w2)(x), op.reference(x, w2, *inputs[2:]), m, "bound anew")


@pytest.mark.parametrize("m,N,W,make", [
    (4, 1, 67, lambda N, W: _conv(N=N, C=20, H=10, W=W, K=35, bias=True, activation="gelu")),
    (2, 2, 34, lambda N, W: _residual(N, 20, 9, W, 35)),
])
def test_compiled_winograd_finishes_other_epilogues_after_the_transform(m, N, W, make):
    """Compiled: gelu and a residual add (with relu) applied in place to each run of tiles,
    overlapping runs included, and to the edge tiles."""
    op = make(N, W)
    cfg = _winograd_config(op, Target.host_cpu(), m, 8, 2, "auto")
    kernel = build(op, "cpu", cfg, constants=("weight", "bias"))
    inputs = op.random_inputs(4)
    names = [t.name for t in op.inputs]
    bound = kernel.bind(weight=inputs[1], bias=inputs[2])
    free = [a for n, a in zip(names, inputs) if n not in ("weight", "bias")]
    _check(op, bound(*free), op.reference(*inputs), m, "bound")


def test_the_source_calls_the_transform_intrinsics():
    op = _conv(C=32, H=8, W=16, K=32, bias=True, activation="relu")
    for m in TILE_SIZES:
        source = kernel_source(op, "cpu", _winograd_config(op, Target.host_cpu(), m, 8, 2, "tiles"))
        assert "from codegen.winograd_simd import input_tile, output_run" in source
        assert f"= input_tile({m}, " in source and f"= output_run({m}, " in source
        assert "outer_product_kernel(8, 2, " in source


def test_features_count_winograds_fewer_multiplies():
    op = _conv(C=64, H=28, W=28, K=64, bias=True, activation="relu")
    default = dict(op.space("cpu").default())
    flops = FEATURE_NAMES.index("flops")
    direct = featurize_config(op, {**default, "conv2d.kernel": "micro"})[flops]
    f2 = featurize_config(op, {**default, "conv2d.kernel": "winograd", "conv2d.wino_m": 2})[flops]
    f4 = featurize_config(op, {**default, "conv2d.kernel": "winograd", "conv2d.wino_m": 4})[flops]
    assert direct > f2 > f4   # log2 counts: 2.25x and 4x fewer multiplies, less the transforms
    assert direct - f2 > 0.5 and f2 - f4 > 0.3


def test_the_tile_size_benchmark_times_the_tuned_record_beside_the_other_tile_size(tmp_path):
    """benchmarks/winograd_tiles.py on a bench run with one Winograd record and one direct one:
    the Winograd row is timed at both tile sizes, each checked against the reference first."""
    import json
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from winograd_tiles import main
    params = dict(N=1, C=32, H=8, W=8, K=32, R=3, S=3, padding=1, bias=True, activation="relu")
    op = ops.conv2d(**params).with_constants("weight", "bias")
    tuned = _winograd_config(op, Target.host_cpu(), 2, 6, 1, "planes")
    direct = {**dict(tuned), "conv2d.kernel": "micro"}
    rows = [{"label": label, "op": "conv2d", "params": params, "autosched": {"config": dict(config)}}
            for label, config in (("winograd row", tuned), ("direct row", direct))]
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"rows": rows}))
    assert main([str(bench), "--rounds", "1", "--seconds", "0.01", "--baselines", "", "--out", str(tmp_path)]) == 0
    result = json.loads(next(tmp_path.glob("winograd-tiles-*.json")).read_text())
    assert [r["label"] for r in result["rows"]] == ["winograd row"]
    row = result["rows"][0]
    assert set(row["median_ms"]) == {"tuned record (F(2x2))", "F(4x4), 8-row tiles"}
    assert all(ms is not None and ms > 0 for ms in row["median_ms"].values())
    other = json.loads(row["details"]["F(4x4), 8-row tiles"])
    assert other["conv2d.wino_m"] == 4 and other["conv2d.wino_rows"] == 8 and other["conv2d.wino_vecs"] == 1
    with pytest.raises(SystemExit):
        bench.write_text(json.dumps({"rows": rows[1:]}))
        main([str(bench), "--baselines", ""])
