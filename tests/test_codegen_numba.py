"""Tier 3 (backend): kernels compiled by Numba are correct, cached, and reject bad input."""
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen import build
from helpers import assert_matches, avx2_cpu, configs
from library import library_cases
from schedules import ConfigError, ops, te

CASES = library_cases()


@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_compiled_default_matches_reference(name, make):
    op = make()
    kernel = build(op, "cpu")
    inputs = op.random_inputs(2)
    assert_matches(op, kernel(*inputs), op.reference(*inputs))


@pytest.mark.parametrize("make", [lambda: ops.matmul(19, 23, 10),
                                  lambda: ops.conv2d(1, 3, 7, 7, 4, 3, 3, stride=2, padding=1, bias=True, activation="relu"),
                                  lambda: ops.softmax(6, 21)],
                         ids=["matmul", "conv2d", "softmax"])
def test_compiled_sampled_configs_match_reference(make):
    op = make()
    inputs = op.random_inputs(3)
    ref = op.reference(*inputs)

    @settings(max_examples=3, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(configs(op.space("cpu")))
    def check(config):
        assert_matches(op, build(op, "cpu", config)(*inputs), ref, f"config {config.to_json()}")
    check()


@pytest.mark.parametrize("dtype", ["float64", "int32"])
def test_other_dtypes(dtype):
    A = te.placeholder((9, 7), dtype, name="A")
    B = te.placeholder((7, 5), dtype, name="B")
    k = te.reduce_axis(7, name="k")
    C = te.compute((9, 5), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    D = te.compute((9, 5), lambda i, j: te.maximum(C[i, j], 0) + 1, name="D")
    op = te.operator(f"mm_{dtype}", [A, B], [D])
    inputs = op.random_inputs(4)
    got = build(op, "cpu")(*inputs)
    ref = op.reference(*inputs)
    assert got.dtype == np.dtype(dtype)
    if dtype == "int32":
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(got, np.maximum(inputs[0] @ inputs[1], 0) + 1)
    else:
        assert_matches(op, got, ref)


def test_wrong_shape_and_dtype_raise_value_error_with_shapes():
    op = ops.matmul(8, 6, 4)
    kernel = build(op, "cpu")
    a, b = op.random_inputs(0)
    with pytest.raises(ValueError, match=r"input A expects shape \(8, 4\), got \(4, 8\)"):
        kernel(a.T.copy(), b)
    with pytest.raises(ValueError, match=r"input B expects dtype float32 .*got float64"):
        kernel(a, b.astype(np.float64))
    with pytest.raises(ValueError, match="takes 2 inputs"):
        kernel(a)


def test_non_contiguous_inputs_are_accepted_and_computed_right():
    op = ops.matmul(8, 6, 4)
    kernel = build(op, "cpu")
    a, b = op.random_inputs(0)
    wide = np.zeros((4, 12), np.float32)
    wide[:, ::2] = b  # a strided view: the step reads the contiguous copy check_inputs makes
    assert_matches(op, kernel(a, wide[:, ::2]), op.reference(a, b))


def test_steps_unpack_their_argument_block_in_buffer_order():
    op = ops.softmax(4, 9)
    kernel = build(op, "cpu", jit=False)
    (x,) = op.random_inputs(0)
    out = np.empty((4, 9), np.float32)
    step, extent = kernel.steps[0]
    step(0, extent, [x, out, *kernel.params])
    assert_matches(op, out, op.reference(x))
    with pytest.raises(TypeError, match=r"float32 array of shape \(4, 9\)"):
        step(0, extent, [out.astype(np.float64), x, *kernel.params])


def test_out_argument_is_filled_and_checked():
    op = ops.softmax(4, 9)
    kernel = build(op, "cpu")
    (x,) = op.random_inputs(0)
    out = np.zeros((4, 9), np.float32)
    result = kernel(x, out=out)
    assert result is out
    assert_matches(op, out, op.reference(x))
    with pytest.raises(ValueError, match=r"out for softmax must be .* shape \(4, 9\)"):
        kernel(x, out=np.zeros((9, 4), np.float32))
    with pytest.raises(ValueError, match="float32"):
        kernel(x, out=np.zeros((4, 9), np.float64))
    with pytest.raises(ValueError, match="out for softmax shares memory with input x"):
        kernel(x, out=x)


def test_config_from_another_operator_is_rejected():
    mm = ops.matmul(8, 8, 8)
    sm = ops.softmax(8, 8)
    with pytest.raises(ConfigError, match="does not belong to the space of operator softmax"):
        build(sm, "cpu", mm.space("cpu").default())


def test_configs_differing_in_runtime_knobs_share_one_compiled_kernel():
    op = ops.matmul(32, 48, 16)
    space = op.space("cpu")
    base = space.default().replace(**{"matmul.kernel": "tiled"})
    other = base.replace(**{"matmul.i": (2, 2, base["matmul.i"][2]), "matmul.k": (4,)})
    assert other != base
    first = build(op, "cpu", base)
    second = build(op, "cpu", other)
    assert first.source == second.source
    assert second.origin == "memory" and second.compile_seconds == 0.0
    assert first.params != second.params
    a, b = op.random_inputs(0)
    assert_matches(op, second(a, b), op.reference(a, b))
    structural = base.replace(**{"matmul.order": "SSRSSR" if base["matmul.order"] == "SSRSRS" else "SSRSRS"})
    assert build(op, "cpu", structural, jit=False).source != first.source
    # On the micro-kernel, cache blocks and parallel parts are runtime knobs; the tile is not.
    micro = space.default().replace(**{"matmul.kernel": "micro"})
    blocks = micro.replace(**{"matmul.mc": 24, "matmul.kc": 64, "matmul.nc": 512, "matmul.parts_m": 4})
    assert build(op, "cpu", micro, jit=False).source == build(op, "cpu", blocks, jit=False).source
    assert space.structure_key(micro) == space.structure_key(blocks)
    tile = micro.replace(**{"matmul.mk_rows": 4 if micro["matmul.mk_rows"] != 4 else 8})
    assert build(op, "cpu", tile, jit=False).source != build(op, "cpu", micro, jit=False).source


def test_disk_cache_avoids_compiling_again_in_a_new_process(tmp_path):
    script = textwrap.dedent("""
        import json
        from schedules import ops
        from codegen import build
        k = build(ops.dense(5, 7, 3, activation="relu"), "cpu")
        print(json.dumps({"origin": k.origin, "seconds": k.compile_seconds}))
    """)
    env = dict(os.environ, AUTOSCHED_CACHE_DIR=str(tmp_path))

    def run():
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
        return json.loads(out.stdout.strip().splitlines()[-1])
    assert run()["origin"] == "compiled"
    assert run()["origin"] == "disk"
    assert list(tmp_path.glob("kernels/k_*.py"))


def test_cache_key_follows_the_inlined_math_functions_and_intrinsics(monkeypatch):
    # Numba's disk cache checks only the kernel file's timestamp, so an edit to the functions
    # kernels inline (numba_math) or to the intrinsics they call (simd, and simd_finish's
    # code that those emit; winograd_simd, and the matrices it builds its transforms from)
    # must change every kernel's key.
    import hashlib

    from codegen import cache, numba_math, simd, simd_finish, winograd_simd
    from schedules import winograd_matrices
    modules = (numba_math, simd, simd_finish, winograd_simd, winograd_matrices)
    text = b"".join(open(m.__file__, "rb").read() for m in modules)
    assert cache._inlined_source_digest() == hashlib.sha256(text).hexdigest()[:16]
    before = cache.cache_key("source", "target")
    monkeypatch.setattr(cache, "_inlined_source_digest", lambda: "edited")
    assert cache.cache_key("source", "target") != before


def test_cache_dir_honours_xdg_cache_home(tmp_path, monkeypatch):
    from schedules.options import options
    monkeypatch.delenv("AUTOSCHED_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert options().cache_dir == tmp_path / "autosched"


def test_default_schedule_is_parallel_and_vectorized():
    op = ops.dense(64, 64, 32, activation="gelu")
    kernel = build(op, "cpu")
    dump = kernel.loopnest.dump()
    assert "parallel(" in dump
    assert "STEPS = [(step_0, extent_0)]" in kernel.source
    mm = ops.matmul(64, 64, 64)
    k2 = build(mm, avx2_cpu())
    assert "microkernel 6x16" in k2.loopnest.dump() and "outer_product_kernel(6, 2, 8" in k2.source
    tiled = mm.space("cpu").default().replace(**{"matmul.kernel": "tiled"})
    assert "vectorized(" in build(mm, "cpu", tiled, jit=False).loopnest.dump()


ONE_SHAPE_PER_KIND = [c for c in CASES if c[0].endswith("odd") or c[0] in
                      ("dense-gelu-even", "elementwise-broadcast", "dense-sigmoid-nobias")]


@pytest.mark.parametrize("name,make", ONE_SHAPE_PER_KIND, ids=[c[0] for c in ONE_SHAPE_PER_KIND])
def test_twenty_one_compiled_configs_per_operator(name, make):
    """21 distinct configs drawn by hypothesis: up to 3 structures, runtime knobs varied.

    Runtime knobs are kernel arguments, so the 21 configs cost 3 compiles at most.
    """
    op = make()
    space = op.space("cpu")
    structural = [k.name for k in space.structural_knobs]
    runtime = [k.name for k in space.knobs if k.name not in structural]
    n_structures = min(3, math.prod(k.size() for k in space.structural_knobs))
    per_structure = -(-21 // n_structures)
    inputs = op.random_inputs(5)
    ref = op.reference(*inputs)
    seen = set()

    @settings(max_examples=1, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(configs(space), min_size=n_structures, max_size=n_structures,
                    unique_by=lambda c: tuple(c[k] for k in structural)),
           st.lists(configs(space), min_size=per_structure, max_size=per_structure,
                    unique_by=lambda c: tuple(c[k] for k in runtime)))
    def check(structures, variants):
        for structure in structures:
            for v in variants:
                config = structure.replace(**{k: v[k] for k in runtime})
                assert_matches(op, build(op, "cpu", config)(*inputs), ref, f"config {config.to_json()}")
                seen.add(config)
    check()
    assert len(seen) >= 21
