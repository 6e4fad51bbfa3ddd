"""The CUDA backend with no GPU: targets, spaces that respect the device's limits, CUDA C that
NVRTC and nvcc compile within those limits, and cuda-sim results against the reference."""
import math
import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from codegen import build
from codegen.build import CompileError
from codegen.cuda_compile import (compile_ptx, nvrtc_path, resource_violations, verify)
from codegen.cuda_kernel import GpuUnavailable
from helpers import assert_matches, configs
from library import library_cases
from schedules import ConfigError, Target, as_target, ops, te
from schedules.gpu_target import limits_of

CASES = library_cases()
RELAXED = dict(deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
# CI sets this: there the CUDA compilers are part of the machine, so their tests must run.
REQUIRE_TOOLS = os.environ.get("AUTOSCHED_REQUIRE_CUDA_TOOLS") == "1"


def _has(compiler: str) -> bool:
    if compiler == "nvrtc":
        return nvrtc_path() is not None
    return shutil.which("nvcc") is not None and shutil.which("ptxas") is not None


def _need(compiler: str):
    if not _has(compiler):
        if REQUIRE_TOOLS:
            pytest.fail(f"{compiler} is required here (AUTOSCHED_REQUIRE_CUDA_TOOLS=1) but missing")
        pytest.skip(f"{compiler} is not installed")


def _gpu_present() -> bool:
    try:
        from codegen.cuda_kernel import cupy_module
        cupy_module()
        return True
    except Exception:
        return False


# -- targets --------------------------------------------------------------------------------
def test_cuda_resolves_to_device_zero_or_the_documented_default():
    t = as_target("cuda")
    assert t.kind == "cuda" and t.is_gpu and t.arch.startswith("sm_")
    limits = t.gpu
    assert limits.max_threads >= 256 and limits.warp == 32 and limits.sm_count == t.cores
    if not _gpu_present():
        assert t.arch == "sm_90" and "H100" in t.model and limits.sm_count == 132
        assert limits.shared_per_block == 48 * 1024 and limits.regs_per_thread == 255
    sim = as_target("cuda-sim")
    assert sim.kind == "cuda-sim" and sim.key != t.key and sim.gpu == limits
    assert "cc=" in t.key and Target.from_key(t.key) == t and Target.from_key(sim.key) == sim


def test_an_explicit_gpu_description_and_bad_ones():
    a100 = Target.cuda(arch="sm_80", name="NVIDIA A100-SXM4-80GB", sm_count=108,
                       shared_per_block=48 * 1024, l2_bytes=40 * 1024 * 1024)
    assert a100.gpu.sm_count == 108 and a100.gpu.compute_capability == (8, 0)
    assert a100.key != as_target("cuda").key and limits_of(Target.from_key(a100.key)) == a100.gpu
    for bad, match in [(dict(arch="90"), "sm_90"), (dict(arch="sm_90", warps=2), "unknown GPU limits"),
                       (dict(arch="sm_90", max_threads=0), "positive int")]:
        with pytest.raises(ValueError, match=match):
            Target.cuda(**bad)
    with pytest.raises(ValueError, match="'cuda-sim'"):
        as_target("gpu")


# -- spaces ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_every_sampled_gpu_config_is_legal_and_within_limits(name, make):
    op = make()
    space = op.space("cuda")
    limits = as_target("cuda").gpu
    rng = np.random.default_rng(0)
    for cfg in [space.default()] + [space.sample(rng) for _ in range(20)]:
        assert space.violation(cfg) is None
        assert space.check(cfg) == cfg
        kernel = build(op, "cuda", cfg)
        for launch in kernel.launches:
            assert launch.threads <= limits.max_threads and launch.shared_bytes <= limits.shared_per_block


def test_configs_beyond_the_device_limits_are_rejected_with_the_reason():
    op = ops.matmul(64, 64, 64)
    space = op.space("cuda")
    too_many = space.default().replace(**{"matmul.kernel": "tiled", "matmul.i": (1, 64, 1),
                                          "matmul.j": (1, 32, 1)})
    with pytest.raises(ConfigError, match="2048 threads per block exceed 1024"):
        space.check(too_many)
    with pytest.raises(ConfigError, match="accumulators per thread"):
        space.check(space.default().replace(**{"matmul.kernel": "tiled", "matmul.i": (4, 1, 16),
                                               "matmul.j": (4, 1, 16)}))


# -- cuda-sim: the GPU schedule run on the CPU -----------------------------------------------
@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_default_gpu_schedules_match_the_reference_in_cuda_sim(name, make):
    op = make()
    inputs = op.random_inputs(1)
    assert_matches(op, build(op, "cuda-sim", jit=False)(*inputs), op.reference(*inputs), "default")


@settings(max_examples=60, **RELAXED)
@given(case=st.sampled_from(CASES), data=st.data())
def test_sampled_gpu_configs_match_the_reference_in_cuda_sim(case, data):
    op = case[1]()
    space = op.space("cuda-sim")
    cfg = space.canonical(data.draw(configs(space)))
    assume(space.violation(cfg) is None)
    inputs = op.random_inputs(2)
    kernel = build(op, "cuda-sim", cfg, jit=False)
    assert_matches(op, kernel(*inputs), op.reference(*inputs), f"{case[0]} with {cfg.to_json()}")


def _user_operators():
    """Operators written in te beyond the library: two outputs, a column reduction, a global
    statistic read at a constant index (a kernel of its own and a temp buffer), a strided
    dilated 1-D max window with -inf padding, integers, float64, and the traps of C below."""
    A = te.placeholder((9, 7), "float32", name="A")
    B = te.placeholder((7, 10), "float32", name="B")
    k = te.reduce_axis(7, "k")
    C = te.compute((9, 10), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    Y = te.compute((9, 10), lambda i, j: te.tanh(C[i, j]) * 2.0, name="Y")
    yield te.operator("two_outputs", inputs=[A, B], outputs=[C, Y])

    X = te.placeholder((13, 6), "float32", name="X")
    r = te.reduce_axis(13, "r")
    S = te.compute((6,), lambda j: te.sum(X[r, j] * X[r, j], axis=r), name="colsq")
    N = te.compute((6,), lambda j: te.sqrt(S[j] + 1.0), name="colnorm")
    yield te.operator("column_norm", inputs=[X], outputs=[N])

    Z = te.placeholder((5, 11), "float32", name="Z")
    a, b = te.reduce_axis(5, "a"), te.reduce_axis(11, "b")
    M = te.compute((1,), lambda o: te.max(te.abs(Z[a, b]), axis=[a, b]), name="absmax")
    Q = te.compute((5, 11), lambda i, j: Z[i, j] / (M[0] + 1.0), name="scaled")
    yield te.operator("global_scale", inputs=[Z], outputs=[Q])

    V = te.placeholder((23,), "float32", name="V")
    w = te.reduce_axis(3, "w")
    W = te.compute((9,), lambda i: te.max(V.at(i * 2 + w * 3 - 2, default=-math.inf), axis=w),
                   name="window_max")
    yield te.operator("dilated_max1d", inputs=[V], outputs=[W])

    I = te.placeholder((6, 9), "int32", name="I")
    c = te.reduce_axis(9, "c")
    T = te.compute((6,), lambda i: te.sum(I[i, c] * 3 - 1, axis=c), name="rowsum_int")
    yield te.operator("int_rows", inputs=[I], outputs=[T])

    yield ops.softmax(6, 19, dtype="float64")

    # What C's types would get wrong: floor division and modulo of negative sums, of floats,
    # 64-bit integers past 32 bits, tensors named like C math functions, boolean any/all.
    I2 = te.placeholder((6, 9), "int32", name="I")
    c2 = te.reduce_axis(9, "c")
    T2 = te.compute((6,), lambda i: te.sum(I2[i, c2], axis=c2), name="T")
    U2 = te.compute((6,), lambda i: T2[i] // 4 + T2[i] % 3, name="U")
    yield te.operator("negative_floor_division", inputs=[I2], outputs=[T2, U2])

    X2 = te.placeholder((5, 7), "float32", name="X")
    yield te.operator("float_floor_division", inputs=[X2], outputs=[
        te.compute((5, 7), lambda i, j: X2[i, j] * 3.0 // 2.0 + X2[i, j] % 1.5, name="F")])

    L = te.placeholder((9,), "int64", name="L")
    yield te.operator("wide_integers", inputs=[L], outputs=[
        te.compute((9,), lambda i: te.maximum(L[i], i) + i * 1000000000, name="D")])

    E = te.placeholder((4, 6), "float32", name="expf")
    e = te.reduce_axis(6, "k")
    yield te.operator("names_like_math", inputs=[E], outputs=[
        te.compute((4,), lambda i: te.sum(te.exp(E[i, e]), axis=e), name="exp")])

    Bq = te.placeholder((4, 50), "float32", name="B")
    r1, r2 = te.reduce_axis(50, "r"), te.reduce_axis(50, "r2")
    yield te.operator("any_all", inputs=[Bq], outputs=[
        te.compute((4,), lambda i: te.max(Bq[i, r1] > 1.5, axis=r1), name="any_big"),
        te.compute((4,), lambda i: te.min(Bq[i, r2] > -3.0, axis=r2), name="all_above")])


USER = list(_user_operators())


@pytest.mark.parametrize("op", USER, ids=[o.name for o in USER])
def test_user_operators_match_the_reference_in_cuda_sim(op):
    space = op.space("cuda-sim")
    rng = np.random.default_rng(3)
    inputs = op.random_inputs(4)
    expected = op.reference(*inputs)
    for cfg in [space.default()] + [space.sample(rng) for _ in range(8)]:
        assert_matches(op, build(op, "cuda-sim", cfg, jit=False)(*inputs), expected, cfg.to_json())


def test_a_global_statistic_gets_its_own_kernel_and_a_temp_buffer():
    op = next(o for o in USER if o.name == "global_scale")
    kernel = build(op, "cuda")
    assert len(kernel.launches) == 2 and [b.name for b in kernel.loopnest.temps] == ["absmax"]
    assert kernel.source.count("__global__") == 2


def test_cuda_sim_catches_a_wrong_shared_memory_index(monkeypatch):
    """The checks above can fail: a schedule reading its staged tile one element off is caught."""
    from schedules import gpu_lower
    from schedules.loopnest import add, mod
    original = gpu_lower._GpuLowering._shared_index

    def off_by_one(self, box, offsets, ris, plan):  # the neighbour, wrapping inside the tile
        index = original(self, box, offsets, ris, plan)
        return index[:-1] + (mod(add(index[-1], 1), box.extent[-1]),)
    monkeypatch.setattr(gpu_lower._GpuLowering, "_shared_index", off_by_one)
    op = ops.matmul(16, 24, 8)
    cfg = op.space("cuda-sim").default().replace(**{"matmul.kernel": "tiled"})
    inputs = op.random_inputs(0)
    got = build(op, "cuda-sim", cfg, jit=False)(*inputs)
    assert not np.allclose(got, op.reference(*inputs), rtol=1e-3, atol=1e-3)


def test_cuda_sim_compiles_with_numba_and_runs_blocks_in_parallel():
    op = ops.softmax(64, 100)
    kernel = build(op, "cuda-sim")
    assert kernel.origin in ("compiled", "disk", "memory") and "lo_" in kernel.source
    inputs = op.random_inputs(0)
    assert_matches(op, kernel(*inputs), op.reference(*inputs), "numba-compiled cuda-sim")


# -- compiling the CUDA C --------------------------------------------------------------------
@pytest.mark.parametrize("compiler", ["nvrtc", "nvcc"])
def test_every_generated_kernel_compiles_within_the_device_limits(compiler):
    _need(compiler)
    target = as_target("cuda")
    rng = np.random.default_rng(5)
    ops_ = [make() for _, make in CASES] + USER
    for op in ops_:
        space = op.space(target)
        for cfg in [space.default(), space.sample(rng)]:
            kernel = build(op, target, cfg)
            report = verify(kernel.source, kernel.launches, target, compiler)
            assert report.ok, f"{op.name} {cfg.to_json()}: {report.violations}"
            assert set(report.resources) == {l.name for l in kernel.launches}
            assert all(r.registers > 0 for r in report.resources.values())
            assert ".entry" in report.ptx


def test_resource_overflows_are_reported_per_kernel():
    _need("nvrtc")
    target = as_target("cuda")
    op = ops.matmul(128, 128, 128)
    cfg = op.space(target).default().replace(**{"matmul.kernel": "tiled", "matmul.i": (2, 16, 4),
                                                "matmul.j": (2, 16, 4)})
    kernel = build(op, target, cfg)
    report = verify(kernel.source, kernel.launches, target, "nvrtc")
    assert report.ok
    small = Target.cuda(arch="sm_90", regs_per_thread=32, regs_per_block=8192, shared_per_block=1024).gpu
    problems = resource_violations(kernel.launches, report.resources, small)
    name = kernel.launches[0].name
    assert any(p.startswith(name) and "registers per thread > 32" in p for p in problems)
    assert any("bytes of shared memory > 1024" in p for p in problems)


@pytest.mark.parametrize("compiler", ["nvrtc", "nvcc"])
def test_compile_errors_carry_the_compiler_log(compiler):
    _need(compiler)
    with pytest.raises(CompileError, match="could not compile"):
        compile_ptx('extern "C" __global__ void k() { undefined_thing(); }', "sm_90", compiler)


def test_a_cuda_kernel_is_source_until_called_and_says_why_it_cannot_run():
    op = ops.elementwise([(37, 5)], lambda a: te.exp(a) + 1.0)
    kernel = build(op, "cuda")
    assert "__global__" in kernel.source and kernel.origin == "source"
    (launch,) = kernel.launches
    assert math.prod(launch.grid) * launch.threads * op.space("cuda").default()["elementwise.per_thread"] >= 37 * 5
    if _gpu_present():
        pytest.skip("a GPU is present")
    with pytest.raises(GpuUnavailable, match="cuda-sim"):
        kernel(*op.random_inputs(0))


# -- tuning -----------------------------------------------------------------------------------
def test_tuning_on_cuda_sim_stores_records_and_builds_the_best(tmp_path):
    from tuner import Database, build_best, tune
    op = ops.layer_norm(12, 40)
    db = Database(str(tmp_path / "gpu.db"))
    result = tune(op, "cuda-sim", database=db, trials=5, seed=1, strategy="random")
    assert len(result.history) == 5 and all(t.error is None for t in result.history)
    records = db.records(op, "cuda-sim")
    assert len(records) == 5 and all(r.target_key.startswith("cuda-sim|") for r in records)
    assert db.records(op, "cuda") == []
    inputs = op.random_inputs(0)
    kernel = build_best(op, "cuda-sim", database=db)
    assert kernel.config == result.best_config
    assert_matches(op, kernel(*inputs), op.reference(*inputs), "best cuda-sim record")
    if not _gpu_present():
        with pytest.raises(GpuUnavailable):
            tune(op, "cuda", database=db, trials=2)
    # Optuna's samplers know nothing of the device limits: their illegal proposals are
    # skipped, not measured, and cost no trials (about half of a matmul's raw draws are).
    mm = ops.matmul(64, 64, 64)
    for strategy in ("tpe", "xgb"):
        run = tune(mm, "cuda-sim", database=db, trials=12, seed=2, strategy=strategy)
        assert all(t.error is None for t in run.history), [t.error_message for t in run.history if t.error]
        assert all(mm.space("cuda-sim").violation(t.config) is None for t in run.history)


def test_gpu_features_see_blocks_threads_and_shared_memory():
    from costmodel import featurize_many
    from costmodel.features import FEATURE_NAMES
    op = ops.matmul(256, 256, 256)
    space = op.space("cuda")
    base = space.default().replace(**{"matmul.kernel": "tiled"})
    staged = base.replace(**{"matmul.cache_A": "shared", "matmul.cache_B": "shared"})
    direct = base.replace(**{"matmul.cache_A": "global", "matmul.cache_B": "global"})
    f = featurize_many(op, [staged, direct], "cuda")
    local = FEATURE_NAMES.index("local_bytes")
    parallel = FEATURE_NAMES.index("parallel_extent")
    assert f[0, local] > f[1, local] and f[0, parallel] == f[1, parallel] > 0


# -- on a real GPU ----------------------------------------------------------------------------
gpu = pytest.mark.skipif(not _gpu_present(), reason="no NVIDIA GPU (with CuPy) on this machine")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_gpu_kernels_match_the_reference_on_the_device(name, make):
    import cupy
    op = make()
    space = op.space("cuda")
    rng = np.random.default_rng(7)
    inputs = op.random_inputs(1)
    expected = op.reference(*inputs)
    for cfg in [space.default()] + [space.sample(rng) for _ in range(3)]:
        got = build(op, "cuda", cfg)(*inputs)
        got = tuple(cupy.asnumpy(g) for g in got) if isinstance(got, tuple) else cupy.asnumpy(got)
        assert_matches(op, got, expected, f"{name} on the GPU with {cfg.to_json()}")


@pytest.mark.gpu
@gpu
def test_tuning_on_the_gpu_records_measured_times(tmp_path):
    from tuner import Database, tune
    op = ops.softmax(256, 1000)
    result = tune(op, "cuda", database=Database(str(tmp_path / "g.db")), trials=4, seed=0)
    assert result.best_seconds is not None and result.best_seconds > 0
    assert all(t.error is None for t in result.history)


def test_the_gpu_benchmark_checks_its_kernels_and_baselines_without_a_gpu(capsys):
    """benchmarks/gpu_bench.py --dry-run: every workload compiled within limits and every CuPy
    formulation, run with numpy, equal to the reference; without a GPU the real run says so."""
    _need("nvrtc")
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gpu_bench
    assert gpu_bench.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("within limits") == len(gpu_bench.workloads()) and "DIFFERS" not in out
    name, op, _, _ = gpu_bench.workloads(small=True)[2]
    inputs = op.random_inputs(0)
    unnormalised = np.exp(inputs[0] - inputs[0].max(axis=1, keepdims=True))  # the check can fail
    assert np.allclose(gpu_bench.softmax_baseline(np, None)(*inputs), op.reference(*inputs), rtol=1e-5)
    assert not np.allclose(unnormalised, op.reference(*inputs), rtol=1e-3, atol=1e-3)
    if not _gpu_present():
        assert gpu_bench.main(["--trials", "0", "--database", ":memory:"]) == 2
        assert "--dry-run" in capsys.readouterr().err


def test_the_cli_names_the_missing_gpu_instead_of_a_traceback(tmp_path, capsys):
    if _gpu_present():
        pytest.skip("a GPU is present")
    from tuner.cli import main
    assert main(["tune", "--op", "softmax", "--shape", "M=8,N=16", "--target", "cuda", "--trials", "2",
                 "--database", str(tmp_path / "x.db")]) == 1
    err = capsys.readouterr().err
    assert "NVIDIA GPU" in err and "Traceback" not in err


def test_aligned_boxes_are_fetched_as_float4_and_padding_still_reads_its_value():
    from schedules.loopnest import VectorCopy
    nhwc = ops.conv2d(1, 8, 6, 6, 8, 3, 3, padding=1, layout="NHWC", bias=True, activation="relu")
    cfg = nhwc.space("cuda").default().replace(**{"conv2d.kernel": "tiled", "conv2d.rc": (4,)})
    inputs = nhwc.random_inputs(0)
    for op, cfg in [(nhwc, cfg), (ops.matmul(64, 64, 64), None)]:
        kernel = build(op, "cuda", cfg)
        assert "float4" in kernel.source
        sim = build(op, "cuda-sim", kernel.config, jit=False)
        assert any(isinstance(s, VectorCopy) for s in _statements(sim.loopnest.body))
        inputs = op.random_inputs(0)
        assert_matches(op, sim(*inputs), op.reference(*inputs), f"float4 fetch of {op.name}")
    # Reads shifted by the padding start at odd offsets: fetched one float at a time.
    nchw = ops.conv2d(1, 4, 8, 8, 4, 3, 3, padding=1)
    assert "float4" not in build(nchw, "cuda").source


def _statements(stmts):
    for s in stmts:
        yield s
        yield from _statements(getattr(s, "body", ()))


def test_gpu_templates_replace_or_extend_the_generated_space():
    from schedules import register_template, unregister_template
    from schedules.errors import ScheduleError

    op = ops.dense(24, 40, 16, bias=True, activation="relu")

    def tiles(sch):
        size = sch.knob("tile", (2, 4), default=4)
        sch["matmul"].gpu_tiled(vthread=(1, 2), threads=(4, 8), inner=(size, 1), chunk=(8,),
                                shared=("x",), unroll=8)
    register_template(op.name, mode="replace", target="cuda")(tiles)
    try:
        space = op.space("cuda-sim")
        assert [k.name for k in space.knobs] == ["tile"] and space.origin.startswith("template:replace")
        inputs = op.random_inputs(0)
        for size in (2, 4):
            kernel = build(op, "cuda-sim", {"tile": size}, jit=False)
            assert_matches(op, kernel(*inputs), op.reference(*inputs), f"template tile {size}")
        assert "x_shared" in build(op, "cuda", {"tile": 2}).source
    finally:
        unregister_template(op.name, target="cuda")

    def forgets(sch):
        sch.knob("nothing", (1,))
    register_template(op.name, mode="replace", target="cuda")(forgets)
    try:
        with pytest.raises(ScheduleError, match="has no GPU plan.*gpu_tiled"):
            build(op, "cuda", {"nothing": 1})
    finally:
        unregister_template(op.name, target="cuda")

    def more_threads(sch):
        rows = sch.knob("rows_threads", (64, 128), default=64)
        sch["matmul"].gpu_rows(rows)
    register_template(op.name, mode="extend", target="cuda")(more_threads)
    try:
        space = op.space("cuda-sim")
        assert "rows_threads" in {k.name for k in space.knobs} and "matmul.kernel" in {k.name for k in space.knobs}
        kernel = build(op, "cuda-sim", space.default(), jit=False)
        assert_matches(op, kernel(*inputs), op.reference(*inputs), "extended with a rows plan")
    finally:
        unregister_template(op.name, target="cuda")
    with pytest.raises(ScheduleError, match="threads needs 2 positive ints"):
        from schedules import Schedule
        sch = Schedule(op, as_target("cuda"))
        sch["matmul"].gpu_tiled((1, 1), (4,), (1, 1), (8,))


def test_gpu_candidates_go_from_build_workers_to_a_spawned_runner_as_source():
    """The build worker compiles and checks the kernel and hands its source to the runner,
    which is spawned (CUDA cannot run in a child forked after the parent touched the driver)
    and needs no space or template. Without a GPU the runner's answer is a runtime error."""
    _need("nvrtc")
    from codegen.cuda_kernel import CudaKernel
    from tuner.measure import LocalMeasurer, MeasureOptions, _build_task
    op = ops.layer_norm(8, 64)
    target = as_target("cuda")
    cfg = op.space(target).default()
    _, _, artifact = _build_task((op, target, cfg))
    rebuilt = CudaKernel.from_artifact(op, target, cfg, artifact)
    original = build(op, target, cfg)
    assert rebuilt.source == original.source and rebuilt.launches == original.launches
    with LocalMeasurer(MeasureOptions(builders=1, run_timeout=120)) as measurer:
        (result,) = measurer.measure(op, target, [cfg])
        assert measurer.gpu_runner.start_method == "spawn"
    if _gpu_present():
        assert result.error is None and result.seconds > 0
    else:
        assert result.error == "runtime_error" and "NVIDIA GPU" in result.error_message


# -- the emitted CUDA C, run on the CPU -------------------------------------------------------
@pytest.fixture(scope="module")
def emulator_cache(tmp_path_factory):
    if not shutil.which("g++"):
        pytest.skip("g++ is needed to run CUDA C on the CPU")
    return str(tmp_path_factory.mktemp("cuda-emulated"))


@pytest.mark.parametrize("name,make", CASES + [(o.name, lambda o=o: o) for o in USER],
                         ids=[c[0] for c in CASES] + [o.name for o in USER])
def test_emitted_cuda_c_matches_the_reference_when_run_on_the_cpu(name, make, emulator_cache):
    """The CUDA C itself (barriers, shuffles, C types, names), compiled by g++ against a shim
    that runs each CUDA thread as a thread: the default and a drawn config of every operator."""
    from cuda_emulator import run_emulated
    op = make()
    space = op.space("cuda")
    inputs = op.random_inputs(6)
    expected = op.reference(*inputs)
    for cfg in (space.default(), space.sample(np.random.default_rng(len(name)))):
        got = run_emulated(build(op, "cuda", cfg), inputs, emulator_cache)
        assert_matches(op, got, expected, f"emulated CUDA C of {name} with {cfg.to_json()}")


@pytest.mark.parametrize("mutation", ["shuffle", "barrier"])
def test_the_emulated_cuda_c_catches_a_broken_reduction_or_a_missing_barrier(mutation, monkeypatch, emulator_cache):
    from codegen import cuda_source
    from cuda_emulator import run_emulated
    if mutation == "shuffle":  # the warp reduction starts at half the right distance
        op = ops.softmax(8, 300)
        cfg = op.space("cuda").default().replace(**{"softmax.row_threads": 128, "softmax.rows_per_block": 1})
        original = cuda_source._KernelPrinter.thread_reduce

        def broken(self, s, pad):
            original(self, s, pad)
            self.lines = [line.replace("off_ = 16;", "off_ = 8;") for line in self.lines]
            assert any("off_ = 8;" in line for line in self.lines)
        monkeypatch.setattr(cuda_source._KernelPrinter, "thread_reduce", broken)
    else:  # the barrier before a shared tile is refilled is dropped: the next step races
        op = ops.matmul(32, 32, 64)
        cfg = op.space("cuda").default().replace(**{"matmul.kernel": "tiled", "matmul.k": (8,),
                                                    "matmul.cache_A": "shared", "matmul.cache_B": "shared"})
        original = cuda_source._KernelPrinter.stmts
        seen = []

        def broken(self, stmts, depth, budget=cuda_source.MAX_UNROLL_COPIES):
            from schedules.loopnest import Barrier
            if stmts and isinstance(stmts[-1], Barrier) and not seen:
                seen.append(1)
                stmts = stmts[:-1]
            return original(self, stmts, depth, budget)
        monkeypatch.setattr(cuda_source._KernelPrinter, "stmts", broken)
    inputs = op.random_inputs(0)
    expected = op.reference(*inputs)
    wrong = 0
    for attempt in range(3):  # a race may, by luck, not show on one run
        got = run_emulated(build(op, "cuda", cfg), inputs, emulator_cache)
        wrong += not np.allclose(got, expected, rtol=1e-3, atol=1e-3)
    assert wrong > 0


def test_default_configs_fit_shared_memory_for_wide_strided_windows():
    """A box too large for shared memory is read from global memory by default, so every
    operator has a legal default (these had none when every input was staged)."""
    limits = as_target("cuda").gpu
    for op in [ops.pool2d(1, 64, 112, 112, 3, stride=2, padding=1, pool_type="max"),
               ops.pool2d(1, 64, 112, 112, 3, stride=2, padding=1, pool_type="max", layout="NHWC"),
               ops.depthwise_conv2d(1, 32, 112, 112, 3, 3, stride=2, padding=1),
               ops.conv2d(1, 3, 224, 224, 768, 16, 16, stride=16)]:
        space = op.space("cuda")
        default = space.default()
        assert "global" in [v for k, v in default.items() if ".cache_" in k]
        assert space.violation(default) is None
        assert all(l.shared_bytes <= limits.shared_per_block for l in build(op, "cuda").launches)


def test_a_tuning_script_without_a_main_guard_is_not_rerun_by_the_gpu_runner(tmp_path):
    """The GPU runner is spawned; a spawned child re-runs an unguarded main script, which
    would start the measurement again inside it. The runner is not told of the script."""
    _need("nvrtc")
    import subprocess
    import sys
    from pathlib import Path
    script = tmp_path / "tune_on_gpu.py"
    script.write_text(
        "from schedules import ops\n"
        "from tuner.measure import LocalMeasurer, MeasureOptions\n"
        "op = ops.softmax(8, 64)\n"
        "print('script body ran', flush=True)\n"
        "with LocalMeasurer(MeasureOptions(builders=1, run_timeout=120)) as m:\n"
        "    (r,) = m.measure(op, 'cuda', [op.space('cuda').default()])\n"
        "print('result', r.error, r.error_message[:200], flush=True)\n")
    repo = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(repo)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("script body ran") == 1 and "bootstrapping" not in run.stderr
    if not _gpu_present():
        assert "result runtime_error" in run.stdout and "NVIDIA GPU" in run.stdout
