"""Faults during tuning: hanging and wrong candidates, killed jobs, concurrent writers."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from schedules import ops, register_template, te, unregister_template
from tuner import Database, MeasureOptions, tune
from tuner.model_search import ModelGuidedStrategy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def faulty_op(name):
    x = te.placeholder((6, 8), name="x")
    y = te.compute((6, 8), lambda i, j: x[i, j] * 2.0 + 1.0, name="y")
    return te.operator(name, [x], [y])


@pytest.fixture
def faulty_templates():
    @register_template("hangs_sometimes", mode="extend")
    def hang(sch):
        if sch.knob("behaviour", ["fine", "hang"]) == "hang":
            time.sleep(3600)  # a template bug: this candidate never finishes building

    @register_template("wrong_sometimes", mode="extend")
    def wrong(sch):
        if sch.knob("corrupt", [False, True]):
            st = sch["y"]
            st.body = st.body * 3.0  # a template bug: the kernel computes something else
    @register_template("crashes_sometimes", mode="extend")
    def crash(sch):
        if sch.knob("fate", ["live", "die"]) == "die":
            os._exit(13)  # a candidate that takes its whole process down
    yield
    for name in ("hangs_sometimes", "wrong_sometimes", "crashes_sometimes"):
        unregister_template(name)


def test_hanging_candidates_become_timeouts_and_tuning_goes_on(tmp_path, faulty_templates):
    op = faulty_op("hangs_sometimes")
    db = Database(str(tmp_path / "r.db"))
    opts = MeasureOptions(build_timeout=3, run_timeout=30, min_seconds=0.001, min_repeats=1)
    result = tune(op, "cpu", database=db, trials=6, seed=2, strategy="random", options=opts)
    kinds = [t.error for t in result.history]
    assert len(kinds) == 6
    assert "timeout" in kinds and None in kinds
    for t in result.history:
        assert (t.error == "timeout") == (t.config["behaviour"] == "hang")
    assert result.best_config["behaviour"] == "fine"


def test_wrong_answers_are_recorded_and_never_best(tmp_path, faulty_templates):
    op = faulty_op("wrong_sometimes")
    db = Database(str(tmp_path / "r.db"))
    opts = MeasureOptions(min_seconds=0.001, min_repeats=1)
    result = tune(op, "cpu", database=db, trials=8, seed=5, strategy="random", options=opts)
    for t in result.history:
        assert (t.error == "wrong_answer") == t.config["corrupt"], t
    assert any(t.error == "wrong_answer" for t in result.history)
    assert result.best_config["corrupt"] is False
    assert "differs from op.reference" in next(t for t in result.history if t.error).error_message


def test_crashing_candidates_cost_only_their_worker(tmp_path, faulty_templates):
    op = faulty_op("crashes_sometimes")
    db = Database(str(tmp_path / "r.db"))
    result = tune(op, "cpu", database=db, trials=6, seed=3, strategy="random",
                  options=MeasureOptions(min_seconds=0.001, min_repeats=1))
    assert len(result.history) == 6
    for t in result.history:
        assert (t.error == "compile_error") == (t.config["fate"] == "die"), t
    assert any(t.error for t in result.history) and any(t.error is None for t in result.history)
    assert "crashed" in next(t for t in result.history if t.error).error_message


def test_ctrl_c_stops_cleanly_and_keeps_records(tmp_path):
    url = str(tmp_path / "interrupted.db")
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "tune", "--op", "softmax", "--shape",
                             "M=8,N=16", "--trials", "40", "--database", url, "--quiet"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    op = ops.softmax(8, 16)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if os.path.exists(url) and len(Database(url).records(op, "cpu")) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "records are kept" in err
    kept = len(Database(url).records(op, "cpu"))
    assert 2 <= kept < 40


TUNE_SCRIPT = textwrap.dedent("""
    import sys
    from schedules import ops
    from tuner import Database, MeasureOptions, tune
    name, db_url, trials, min_seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    op = ops.elementwise([(8, 16), (16,)], lambda a, b: a * b + 1.0, name=name)
    r = tune(op, "cpu", database=Database(db_url), trials=trials, seed=0, strategy="tpe",
             options=MeasureOptions(min_seconds=min_seconds, min_repeats=1))
    print("DONE", r.total_measured)
""")


def _tune_process(name, db_url, trials, min_seconds=0.001):
    return subprocess.Popen([sys.executable, "-c", TUNE_SCRIPT, name, db_url, str(trials), str(min_seconds)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _count(db_url, name):
    op = ops.elementwise([(8, 16), (16,)], lambda a, b: a * b + 1.0, name=name)
    return op, len(Database(db_url).records(op, "cpu"))


def test_sigkill_then_rerun_reaches_exactly_the_budget(tmp_path):
    url = str(tmp_path / "killed.db")
    proc = _tune_process("killme", url, 14, min_seconds=0.3)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if os.path.exists(url) and _count(url, "killme")[1] >= 3:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the tuner and its workers, mid-candidate
    proc.wait()
    op, before = _count(url, "killme")
    assert 3 <= before < 14
    rerun = _tune_process("killme", url, 14)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    records = Database(url).records(op, "cpu")
    assert len(records) == 14 and len({r.config for r in records}) == 14


def test_two_processes_tune_different_operators_into_one_sqlite_file(tmp_path):
    url = str(tmp_path / "shared.db")
    procs = [_tune_process(name, url, 10) for name in ("first_op", "second_op")]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "DONE 10" in out
    for name in ("first_op", "second_op"):
        assert _count(url, name)[1] == 10
    rows = Database(url).summary()
    assert sorted(r["op_name"] for r in rows) == ["first_op", "second_op"]


def _small_pool(init):
    def wrapped(self, *args, **kwargs):
        kwargs["pool_size"] = 12
        init(self, *args, **kwargs)
    return wrapped


def test_xgb_strategy_survives_a_template_that_crashes_while_lowering(tmp_path, faulty_templates, monkeypatch):
    monkeypatch.setattr(ModelGuidedStrategy, "__init__", _small_pool(ModelGuidedStrategy.__init__))
    op = faulty_op("crashes_sometimes")
    db = Database(str(tmp_path / "r.db"))
    result = tune(op, "cpu", database=db, trials=4, seed=0, strategy="xgb",
                  options=MeasureOptions(min_seconds=0.001, min_repeats=1))
    assert len(result.history) == 4
    assert all(t.config["fate"] == "live" and t.error is None for t in result.history)


def test_xgb_strategy_survives_a_template_that_hangs_while_lowering(tmp_path, faulty_templates, monkeypatch):
    import tuner.model_search as ms
    monkeypatch.setattr(ms, "FEATURIZE_SECONDS", 0.5)
    monkeypatch.setattr(ModelGuidedStrategy, "__init__", _small_pool(ModelGuidedStrategy.__init__))
    op = faulty_op("hangs_sometimes")
    db = Database(str(tmp_path / "r.db"))
    opts = MeasureOptions(build_timeout=3, run_timeout=30, min_seconds=0.001, min_repeats=1)
    result = tune(op, "cpu", database=db, trials=4, seed=0, strategy="xgb", options=opts)
    assert len(result.history) == 4
    assert all(t.config["behaviour"] == "fine" for t in result.history)  # hangs never reach the pool


def test_slow_reference_does_not_count_against_the_run_timeout(tmp_path, monkeypatch):
    from schedules.operator import Operator
    original = Operator.reference

    def slow_reference(self, *arrays):
        time.sleep(6.0)  # a large operator's numpy oracle can take a while
        return original(self, *arrays)
    monkeypatch.setattr(Operator, "reference", slow_reference)  # inherited by forked workers
    op = ops.softmax(4, 8)
    opts = MeasureOptions(run_timeout=4.0, min_seconds=0.001, min_repeats=1)
    result = tune(op, "cpu", database=Database(str(tmp_path / "r.db")), trials=3, seed=0,
                  strategy="random", options=opts)
    assert [t.error for t in result.history] == [None, None, None]
