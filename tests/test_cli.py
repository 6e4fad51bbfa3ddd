"""The autosched command line: help on every command, and the demo job end to end."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def autosched(*args, check=True):
    exe = shutil.which("autosched")
    cmd = [exe] if exe else [sys.executable, "-m", "tuner.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=ROOT, check=check)


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"]])
def test_help(args):
    out = autosched(*args).stdout
    assert "usage: autosched" in out


def test_no_command_prints_help_and_fails():
    res = autosched(check=False)
    assert res.returncode == 2 and "demo" in res.stdout


def test_demo_tunes_builds_checks_and_times_against_numpy(tmp_path):
    db = tmp_path / "demo.db"
    res = autosched("demo", "--op", "softmax", "--trials", "4", "--seconds", "0.05", "--quiet",
                    "--database", str(db))
    out = res.stdout
    assert "matches numpy" in out and "measured   4 new candidates" in out
    assert "tuned" in out and "numpy" in out and "speedup" in out
    assert db.exists()
    from tuner import Database
    retimed = any(r.confirmations for r in Database(str(db)).all_records())
    assert ("re-timed   the" in out) == retimed


def test_demo_rejects_unknown_operator():
    res = autosched("demo", "--op", "nope", check=False)
    assert res.returncode != 0 and "invalid choice" in res.stderr


@pytest.mark.parametrize("command", ["tune", "best", "export", "import", "bench", "dashboard", "upgrade"])
def test_every_command_has_help(command):
    assert f"usage: autosched {command}" in autosched(command, "--help").stdout


def test_tune_best_export_import_round_trip(tmp_path):
    db, db2, log = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "log.jsonl"
    res = autosched("tune", "--op", "softmax", "--shape", "M=4,N=8", "--trials", "3",
                    "--database", str(db), "--strategy", "random", "--quiet")
    assert "3/3 in total" in res.stdout
    assert "softmax" in autosched("best", "--database", str(db)).stdout
    assert "exported 3 records" in autosched("export", "--database", str(db), "--out", str(log)).stdout
    assert "imported 3 records" in autosched("import", "--database", str(db2), str(log)).stdout
    assert "imported 0 records" in autosched("import", "--database", str(db2), str(log)).stdout


def test_damaged_log_is_refused_whole_with_line_numbers(tmp_path):
    db, log = tmp_path / "a.db", tmp_path / "bad.jsonl"
    good = ('{"workload_key": "w-1", "target_key": "cpu|x", "config": {"a": 1}, "seconds": 0.5, '
            '"error": null, "space_version": "s", "codegen_version": "c", "autosched_version": "v", '
            '"measured_at": "2026-01-01T00:00:00", "costs": [0.5]}')
    log.write_text("\n".join([good, "{not json", good.replace('"seconds": 0.5', '"seconds": "fast"'),
                              '__import__("os").system("echo pwned")']) + "\n")
    res = autosched("import", "--database", str(db), str(log), check=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    for n in (2, 3, 4):
        assert f"line {n}:" in res.stderr
    assert "nothing was imported" in res.stderr
    assert "no records" in autosched("best", "--database", str(db)).stdout


def test_suite_file_tunes_each_workload(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("trials: 2\nworkloads:\n  - {op: softmax, M: 4, N: 8}\n"
                     "  - {op: layer_norm, M: 4, N: 8, trials: 3}\n")
    res = autosched("tune", "--suite", str(suite), "--database", str(tmp_path / "s.db"), "--quiet",
                    "--strategy", "random")
    assert "2/2 in total" in res.stdout and "3/3 in total" in res.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("workloads:\n  - {op: nonsense}\n")
    res = autosched("tune", "--suite", str(bad), "--database", str(tmp_path / "s.db"), check=False)
    assert res.returncode == 1 and "unknown operator 'nonsense'" in res.stderr


def test_tune_with_constants_tunes_the_bound_workload(tmp_path):
    db = str(tmp_path / "c.db")
    res = autosched("tune", "--op", "dense", "--shape", "M=4,N=16,K=8,bias=True", "--constants", "weight,bias",
                    "--trials", "2", "--database", db, "--strategy", "random", "--quiet")
    assert "@weight,bias: 2 measured now" in res.stdout and "2/2 in total" in res.stdout
    bad = autosched("tune", "--op", "dense", "--shape", "M=4,N=16,K=8", "--constants", "W",
                    "--database", db, check=False)
    assert bad.returncode == 1 and "--constants: operator dense_bias has no input 'W'" in bad.stderr


def test_demo_times_its_variants_interleaved_in_rotated_rounds(monkeypatch):
    """Each round times every variant once, a different one first; each result is the median
    of that variant's per-round medians, so one slow round moves no variant's result."""
    import tuner.timing
    from tuner.cli import _time_interleaved
    order = []
    slow_round = {2}

    def fake_time(fn, seconds):
        name = fn()
        order.append(name)
        return [10.0 if (len(order) - 1) // 3 in slow_round else {"a": 1.0, "b": 2.0, "c": 3.0}[name]]
    monkeypatch.setattr(tuner.timing, "time_callable", fake_time)
    monkeypatch.setattr("tuner.timing.time.sleep", lambda s: None)
    times = _time_interleaved({n: (lambda n=n: n) for n in "abc"}, 0.5, rounds=5)
    assert [order[3 * r] for r in range(5)] == ["a", "b", "c", "a", "b"]
    assert sorted(order) == sorted("abc" * 5)
    assert times == {"a": 1.0, "b": 2.0, "c": 3.0}
