"""benchmarks/bench_median.py: medians of several bench runs, ratios taken within each run."""
import json

from benchmarks.bench_median import combine, main


def _run(ours, numpy, onnx, label="matmul(M=2,N=2,K=2)"):
    return {"baselines": ["numpy", "onnxruntime"], "peak_gflops": 100.0, "rows": [
        {"label": label, "autosched": {"seconds": ours},
         "baselines": {"numpy": {"seconds": numpy}, "onnxruntime": {"seconds": onnx}}}]}


def test_ratios_are_per_run_then_the_median_with_its_range():
    # A slow run slows everyone: per-run ratios stay 2.0, 1.0, 0.5 against onnxruntime.
    runs = [_run(1.0, 2.0, 2.0), _run(3.0, 6.0, 3.0), _run(2.0, 3.0, 1.0)]
    row = combine(runs)[0]
    assert row["runs"] == 3
    assert row["ms"]["autosched"] == 2000.0
    assert row["ratio"]["onnxruntime"] == (1.0, 0.5, 2.0)
    assert row["ratio"]["best framework"] == (1.0, 0.5, 2.0)  # numpy is not a framework
    assert row["ratio"]["numpy"][0] == 2.0


def test_missing_timings_and_bad_files(tmp_path, capsys):
    run = _run(1.0, 2.0, None)
    (tmp_path / "a.json").write_text(json.dumps(run))
    assert main([str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert "| matmul(M=2,N=2,K=2) | 1 | 1000.000 | 2000.000 | - | 2.00x | - | - | - |" in out
    (tmp_path / "b.json").write_text("{}")
    assert main([str(tmp_path / "b.json")]) == 2
    assert "not an `autosched bench` result" in capsys.readouterr().err
