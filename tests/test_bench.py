"""`autosched bench`: baselines agree with the reference, timings are stored, losses are shown."""
import json
import subprocess
import sys

import numpy as np
import pytest

from schedules import as_target, ops
from tuner import Database
from tuner.baselines import BaselineUnavailable, NumpyBaseline, Workload, onnx_model
from tuner.bench import DEFAULT_SUITE, BenchReport, BenchRow, Timing, format_table, run_bench, write_json
from tuner.bench_records import bench_runs
from tuner.commands import make_operator, read_suite

CASES = [
    Workload("matmul", {"M": 9, "N": 17, "K": 5}),
    Workload("batch_matmul", {"B": 2, "M": 3, "N": 5, "K": 4}),
    Workload("dense", {"M": 4, "N": 6, "K": 8, "bias": True, "activation": "gelu"}),
    Workload("dense", {"M": 4, "N": 6, "K": 8, "bias": False, "activation": "relu"}),
    Workload("dense", {"M": 5, "N": 7, "K": 9, "bias": True, "activation": "relu", "residual": True}),
    Workload("conv2d", {"N": 1, "C": 3, "H": 9, "W": 8, "K": 4, "R": 3, "S": 3, "stride": 2, "padding": 1,
                        "bias": True, "activation": "relu"}),
    Workload("conv2d", {"N": 2, "C": 2, "H": 7, "W": 7, "K": 3, "R": 3, "S": 2, "dilation": 2}),
    Workload("conv2d", {"N": 2, "C": 3, "H": 6, "W": 6, "K": 4, "R": 3, "S": 3, "padding": 1, "bias": True,
                        "activation": "relu", "residual": True}),
    Workload("depthwise_conv2d", {"N": 1, "C": 4, "H": 8, "W": 8, "R": 3, "S": 3, "padding": 1, "bias": True}),
    Workload("softmax", {"M": 5, "N": 11}),
    Workload("layer_norm", {"M": 5, "N": 11}),
]


def _check(baseline, w):
    op = make_operator(w.op_name, dict(w.params))
    inputs = op.random_inputs(0)
    fn = baseline.prepare(w, op, inputs, 1)
    np.testing.assert_allclose(np.asarray(fn()), op.reference(*inputs), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("w", CASES, ids=lambda w: f"{w.op_name}-{len(w.params)}")
def test_numpy_baseline_matches_the_reference(w):
    _check(NumpyBaseline(), w)


@pytest.mark.parametrize("w", CASES, ids=lambda w: f"{w.op_name}-{len(w.params)}")
@pytest.mark.parametrize("name", ["onnxruntime", "pytorch", "openvino"])
def test_framework_baselines_match_the_reference(w, name):
    pytest.importorskip({"onnxruntime": "onnxruntime", "pytorch": "torch", "openvino": "openvino"}[name])
    if name != "pytorch":
        pytest.importorskip("onnx")
    from tuner.baselines import make_baselines
    _check(make_baselines([name])[0], w)


def test_onnx_refuses_what_it_cannot_express():
    pytest.importorskip("onnx")
    w = Workload("conv2d", {"N": 1, "C": 2, "H": 5, "W": 5, "K": 3, "R": 3, "S": 3, "layout": "NHWC"})
    op = make_operator(w.op_name, dict(w.params))
    with pytest.raises(BaselineUnavailable, match="no model for conv2d"):
        onnx_model(w, op, op.random_inputs(0))


class _WrongBaseline:
    name = "wrong"

    def prepare(self, workload, op, inputs, threads):
        return lambda: np.zeros(op.outputs[0].shape, np.float32) + 1


class _MissingBaseline:
    name = "missing"

    def prepare(self, workload, op, inputs, threads):
        raise BaselineUnavailable("missing: not installed here")


def test_bench_times_checks_stores_and_reports(tmp_path):
    db = Database(str(tmp_path / "b.db"))
    jobs = [(Workload("matmul", {"M": 16, "N": 24, "K": 8}), 0), (Workload("softmax", {"M": 4, "N": 32}), 0)]
    lines = []
    report = run_bench(jobs, db, trials=0, seconds=0.01, pause=0.0, progress=False, log=lines.append,
                       baselines=("numpy", _WrongBaseline(), _MissingBaseline()))
    assert report.peak_gflops > 0 and report.baselines == ("numpy", "wrong", "missing")
    for row in report.rows:
        assert row.ours.seconds > 0 and "default schedule" in row.ours.detail
        numpy_t, wrong, missing = row.baselines
        assert numpy_t.seconds > 0 and row.ratio(numpy_t) == pytest.approx(numpy_t.seconds / row.ours.seconds)
        assert wrong.seconds is None and "wrong result" in wrong.detail
        assert missing.seconds is None and missing.detail == "missing: not installed here"
    [run] = bench_runs(db)
    assert run["peak_gflops"] == report.peak_gflops
    assert {(r["label"], r["implementation"]) for r in run["results"]} == {
        (row.label, impl) for row in report.rows for impl in ("autosched", "numpy", "wrong", "missing")}
    doc = json.loads(open(write_json(report, tmp_path)).read())
    assert doc["rows"][0]["baselines"]["numpy"]["speedup"] == report.rows[0].ratio(report.rows[0].baselines[0])
    table = format_table(report)
    assert table.count("\n") == 1 + len(report.rows) and "vs numpy" in table


class _RecordingBaseline:
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def prepare(self, workload, op, inputs, threads):
        reference = op.reference(*inputs)
        return lambda: (self.calls.append(self.name), reference)[1]


def _blocks(calls):
    """The runs of equal names in a call sequence, as (name, length)."""
    blocks = []
    for name in calls:
        if blocks and blocks[-1][0] == name:
            blocks[-1][1] += 1
        else:
            blocks.append([name, 1])
    return [tuple(b) for b in blocks]


@pytest.mark.parametrize("rounds", [1, 3])
def test_implementations_are_timed_in_interleaved_rounds(rounds):
    """After one checked call each, every round times each implementation in turn, so a slow
    moment of the machine falls on all of them alike."""
    calls = []
    impls = (_RecordingBaseline("a", calls), _RecordingBaseline("b", calls))
    report = run_bench([(Workload("softmax", {"M": 4, "N": 32}), 0)], None, trials=0, seconds=0.03,
                       pause=0.0, progress=False, log=lambda *_: None, baselines=impls, rounds=rounds)
    blocks = _blocks(calls)
    assert blocks[:2] == [("a", 1), ("b", 1)]  # the correctness check
    timed = blocks[2:]
    assert [name for name, _ in timed] == ["a", "b"] * rounds
    a, b = report.rows[0].baselines
    # One warm-up call per round; every other call is a cost.
    assert len(a.costs) == sum(n - 1 for name, n in timed if name == "a")
    assert len(b.costs) == sum(n - 1 for name, n in timed if name == "b")
    with pytest.raises(ValueError, match="rounds"):
        run_bench([], None, trials=0, rounds=0, progress=False, log=lambda *_: None, baselines=())


def test_bench_uses_the_tuned_record_when_there_is_one(tmp_path):
    from tuner import tune
    db = Database(str(tmp_path / "t.db"))
    op = ops.softmax(4, 32)
    tune(op, "cpu", database=db, trials=3, seed=0, strategy="random", progress=False)
    report = run_bench([(Workload("softmax", {"M": 4, "N": 32}), 0)], db, trials=0, seconds=0.01,
                       pause=0.0, progress=False, log=lambda *_: None, baselines=("numpy",))
    assert report.rows[0].ours.detail == "tuned, best of 3 measured configs"
    # The result names the config it timed, so the row can be rebuilt from the JSON alone.
    doc = json.loads(open(write_json(report, tmp_path)).read())
    assert doc["rows"][0]["autosched"]["config"] == json.loads(db.best(op, "cpu").config.to_json())


def test_losses_are_marked_in_the_table_and_the_best_framework_is_compared():
    t = Timing("numpy", 1.0)
    fast, slow, missing = Timing("onnxruntime", 0.5), Timing("pytorch", 4.0), Timing("openvino", None)
    row = BenchRow("x", Workload("softmax", {}), "k", 10, Timing("autosched", 2.0), (t, fast, slow, missing))
    report = BenchReport((row,), 100.0, 2, {}, {}, "2026-01-01", ("numpy", "onnxruntime", "pytorch", "openvino"))
    line = format_table(report).splitlines()[-1]
    assert "| 0.50x (lost) | 0.25x (lost) | 2.00x | - | 0.25x (lost) |" in line


def test_default_suite_is_valid_and_covers_the_model_shapes():
    entries, _ = read_suite("default", DEFAULT_SUITE)
    names = [n for n, _, _ in entries]
    assert {"matmul", "dense", "conv2d", "depthwise_conv2d", "softmax", "layer_norm"} <= set(names)
    assert sorted(p["M"] for n, p, _ in entries if n == "matmul") == [256, 512, 1024, 2048]


def test_the_shipped_batch_suite_is_valid_and_its_convs_run_on_the_fast_kernels():
    """benchmarks/suites/resnet50-batch8.yaml: every conv, a batch of 8 images, is offered the
    micro-kernel, and its 3x3 'same' ones Winograd."""
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "suites" / "resnet50-batch8.yaml"
    entries, _ = read_suite(str(path))
    assert entries and all(n == "conv2d" and p["N"] == 8 for n, p, _ in entries)
    for name, params, _ in entries:
        knobs = {k.name: k for k in make_operator(name, params).space("cpu").knobs}
        choices = knobs["conv2d.kernel"].choices
        assert "micro" in choices
        assert ("winograd" in choices) == (params["R"] == 3 and params.get("stride", 1) == 1)


@pytest.mark.parametrize("suite,finishes", [("winograd-epilogues.yaml", {"gelu", "sigmoid"}),
                                            ("resnet18-residual.yaml", {"relu+residual"})])
def test_the_shipped_epilogue_suites_are_valid_and_offer_winograd(suite, finishes):
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "suites" / suite
    entries, _ = read_suite(str(path))
    assert {p["activation"] + ("+residual" if p.get("residual") else "") for _, p, _ in entries} == finishes
    for name, params, _ in entries:
        knobs = {k.name: k for k in make_operator(name, params).space("cpu").knobs}
        assert "winograd" in knobs["conv2d.kernel"].choices


def test_every_shipped_suite_reads_and_builds_its_operators():
    from pathlib import Path
    suites = sorted((Path(__file__).resolve().parent.parent / "benchmarks" / "suites").glob("*.yaml"))
    assert len(suites) >= 4
    for path in suites:
        entries, _ = read_suite(str(path))
        assert entries, path.name


def test_bench_command_end_to_end(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("trials: 0\nworkloads:\n  - {op: matmul, M: 8, N: 16, K: 4}\n")
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "bench", "--suite", str(suite), "--database",
                          str(tmp_path / "c.db"), "--baselines", "numpy", "--seconds", "0.01",
                          "--out", str(tmp_path / "res"), "--quiet"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "| matmul(M=8,N=16,K=4) |" in out.stdout and list((tmp_path / "res").glob("bench-*.json"))
    bad = subprocess.run([sys.executable, "-m", "tuner.cli", "bench", "--only", "nothing*", "--database", "none"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "matches no workload" in bad.stderr
    no_rounds = subprocess.run([sys.executable, "-m", "tuner.cli", "bench", "--rounds", "0", "--database", "none"],
                               capture_output=True, text=True, timeout=600)
    assert no_rounds.returncode == 1 and "--rounds must be >= 1" in no_rounds.stderr


def test_bench_binds_the_weights_frameworks_hold_as_parameters(tmp_path):
    db = Database(str(tmp_path / "w.db"))
    job = (Workload("dense", {"M": 8, "N": 32, "K": 40, "bias": True}), 0)
    report = run_bench([job], db, trials=0, seconds=0.01, pause=0.0, progress=False,
                       log=lambda *_: None, baselines=("numpy",))
    row = report.rows[0]
    assert row.ours.seconds > 0 and row.ours.detail.endswith("; weight packed once")


def test_bench_tunes_with_the_weights_bound_and_falls_back_to_unbound_records(tmp_path):
    """A workload with parameters is tuned as its constants workload (dense@weight,bias);
    a database holding only the plain workload's records still serves them."""
    from tuner import tune
    db = Database(str(tmp_path / "b.db"))
    workload = Workload("dense", {"M": 8, "N": 32, "K": 40, "bias": True})
    plain = ops.dense(8, 32, 40, bias=True)
    tune(plain, "cpu", database=db, trials=2, seed=0, strategy="random", progress=False)
    quiet = dict(seconds=0.01, pause=0.0, progress=False, log=lambda *_: None, baselines=("numpy",))
    old = run_bench([(workload, 0)], db, trials=0, **quiet).rows[0].ours.detail
    assert old.startswith("tuned with nothing bound, best of 2 measured configs")
    new = run_bench([(workload, 3)], db, trials=3, strategy="random", **quiet).rows[0].ours.detail
    assert new.startswith("tuned with weight, bias bound, best of 3 measured configs")
    keys = {r.workload_key for r in db.records(plain.with_constants("weight", "bias"), as_target("cpu"))}
    assert keys == {plain.workload_key + "@weight,bias"}
    assert len(db.records(plain, as_target("cpu"))) == 2  # the plain workload's records untouched
