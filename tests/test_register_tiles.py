"""benchmarks/register_tiles.py: a tuned config rebuilt with other register tiles, checked and timed."""
import json
import subprocess
import sys
from pathlib import Path

from schedules import ops

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "register_tiles.py"


def _bench_json(tmp_path):
    params = dict(N=1, C=3, H=12, W=12, K=16, R=3, S=3, stride=2, padding=1, bias=True, activation="relu")
    op = ops.conv2d(**params).with_constants("weight", "bias")
    config = json.loads(op.space("cpu").default().to_json())
    assert config["conv2d.kernel"] == "micro"
    rows = [{"label": "conv2d(small stride 2)", "op": "conv2d", "params": params, "autosched": {"config": config}},
            {"label": "softmax(no micro-kernel)", "op": "softmax", "params": {"M": 4, "N": 8},
             "autosched": {"config": json.loads(ops.softmax(4, 8).space("cpu").default().to_json())}}]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"rows": rows}))
    return path


def test_every_offered_tile_is_checked_timed_and_written(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), str(_bench_json(tmp_path)), "--tiles", "4x1x8,6x1x8,5x1x8",
                          "--rounds", "2", "--seconds", "0.01", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    (result,) = tmp_path.glob("register-tiles-*.json")
    (row,) = json.loads(result.read_text())["rows"]  # the softmax row has no micro-kernel
    assert set(row["median_ms"]) == {"4x1x8", "6x1x8"} and all(len(v) == 2 for v in row["rounds_ms"].values())
    assert set(row["refused"]) == {"5x1x8"}  # 5 rows is not a choice of mk_rows
    assert "4x1x8" in res.stdout and "not offered" in res.stdout


def test_rows_with_no_offered_tile_or_no_micro_kernel_are_not_timed(tmp_path):
    path = _bench_json(tmp_path)
    doc = json.loads(path.read_text())
    tiled = dict(doc["rows"][0], label="conv2d(tiled)")
    tiled["autosched"] = {"config": {**tiled["autosched"]["config"], "conv2d.kernel": "tiled"}}
    doc["rows"].append(tiled)
    path.write_text(json.dumps(doc))
    res = subprocess.run([sys.executable, str(SCRIPT), str(path), "--tiles", "5x1x8", "--rounds", "1",
                          "--seconds", "0.01", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    (result,) = tmp_path.glob("register-tiles-*.json")
    (row,) = json.loads(result.read_text())["rows"]  # the tiled row's mk_ knobs change nothing
    assert row["label"] == "conv2d(small stride 2)" and row["median_ms"] == {} and set(row["refused"]) == {"5x1x8"}
    assert "no variant offered" in res.stdout


def test_malformed_tiles_are_a_usage_error(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), str(_bench_json(tmp_path)), "--tiles", "4x1"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "ROWSxVECSxLANES" in res.stderr
