"""benchmarks/knob_ab.py: one knob set to several values at tuned configs, checked and timed."""
import json
import subprocess
import sys
from pathlib import Path

from schedules import ops

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "knob_ab.py"


def _bench_json(tmp_path):
    bmm = dict(B=2, M=12, N=32, K=20)
    rows = [{"label": "batch_matmul(small)", "op": "batch_matmul", "params": bmm,
             "autosched": {"config": json.loads(ops.batch_matmul(**bmm).space("cpu").default().to_json())}},
            {"label": "matmul(no such knob)", "op": "matmul", "params": dict(M=8, N=16, K=8),
             "autosched": {"config": json.loads(ops.matmul(8, 16, 8).space("cpu").default().to_json())}}]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"rows": rows}))
    return path


def test_each_value_is_checked_and_timed_and_rows_without_the_knob_are_skipped(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), str(_bench_json(tmp_path)), "--knob", "mk_b_in_place",
                          "--values", "false,true,7", "--rounds", "2", "--seconds", "0.01", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    (result,) = tmp_path.glob("knob-ab-*.json")
    (row,) = json.loads(result.read_text())["rows"]
    assert row["label"] == "batch_matmul(small)"
    assert set(row["median_ms"]) == {"false", "true"} and set(row["refused"]) == {"7"}


def test_a_knob_no_row_has_is_a_usage_error(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), str(_bench_json(tmp_path)), "--knob", "no_such_knob",
                          "--values", "1,2", "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "no_such_knob" in res.stderr
