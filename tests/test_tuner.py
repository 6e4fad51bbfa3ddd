"""The tuning pipeline: search, records, resumption, build_best (simulated and real measurement)."""
import logging

import numpy as np
import pytest

from schedules import Config, as_target, ops
from tuner import Database, LocalMeasurer, MeasureOptions, TuningRecord, build_best, tune
from tuner.build_best import clear_cache
from tuner.models import SCHEMA_VERSION
from tuner.simulate import ReplayMeasurer

FAST = MeasureOptions(min_seconds=0.001, min_repeats=2, build_timeout=60, run_timeout=60)


@pytest.fixture
def db(tmp_path):
    d = Database(str(tmp_path / "records.db"))
    yield d
    d.close()


def test_tune_end_to_end_measures_distinct_configs_and_stores_them(db):
    op = ops.elementwise([(8, 16), (16,)], lambda a, b: a * b + 1.0, name="ew_tune")
    result = tune(op, "cpu", database=db, trials=10, seed=1, strategy="random", options=FAST, confirm=0)
    assert len(result.history) == 10 and result.total_measured == 10
    assert len({t.config for t in result.history}) == 10
    assert all(t.error is None and t.seconds > 0 for t in result.history)
    records = db.records(op, "cpu")
    assert [r.config for r in records] == [t.config for t in result.history]
    assert result.best_seconds == min(t.seconds for t in result.history)
    assert db.best(op, "cpu").config == result.best_config
    # rerunning with the same budget measures nothing more
    again = tune(op, "cpu", database=db, trials=10, seed=1, strategy="random", options=FAST)
    assert again.history == () and again.total_measured == 10


@pytest.mark.parametrize("strategy", ["random", "xgb"])
def test_the_default_schedule_is_measured_first_so_tuning_never_ends_below_it(db, strategy):
    op = ops.softmax(4, 16)
    result = tune(op, "cpu", database=db, trials=3, seed=5, strategy=strategy, options=FAST)
    assert result.history[0].config == op.space("cpu").default()
    assert len({t.config for t in result.history}) == 3


def test_tune_with_tpe_on_a_fused_operator(db):
    op = ops.dense(8, 16, 8, activation="relu")
    result = tune(op, "cpu", database=db, trials=8, seed=0, strategy="tpe", options=FAST)
    assert len(result.history) == 8
    assert result.best_config is not None
    kernel = build_best(op, "cpu", db)
    assert kernel.config == result.best_config
    x, w, b = op.random_inputs(0)
    np.testing.assert_allclose(kernel(x, w, b), op.reference(x, w, b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strategy", ["random", "tpe", "xgb"])
def test_search_is_deterministic_for_a_seed(tmp_path, strategy):
    op = ops.matmul(32, 24, 16)
    runs = []
    for k in range(2):
        d = Database(str(tmp_path / f"det{k}.db"))
        r = tune(op, "cpu", database=d, trials=14, seed=3, strategy=strategy, measurer=ReplayMeasurer())
        runs.append([t.config for t in r.history])
    other = tune(op, "cpu", database=Database(str(tmp_path / "other.db")), trials=14, seed=4,
                 strategy=strategy, measurer=ReplayMeasurer())
    assert runs[0] == runs[1]
    assert runs[0] != [t.config for t in other.history]


def test_resume_continues_to_the_total_budget_without_remeasuring(db):
    op = ops.matmul(32, 24, 16)
    first = ReplayMeasurer()
    tune(op, "cpu", database=db, trials=6, seed=0, strategy="tpe", measurer=first)
    second = ReplayMeasurer()
    r = tune(op, "cpu", database=db, trials=15, seed=0, strategy="tpe", measurer=second)
    assert len(first.calls) == 6 and len(second.calls) == 9
    assert not set(first.calls) & set(second.calls)
    assert r.total_measured == 15 and len({x.config for x in db.records(op, "cpu")}) == 15


def test_exhausted_space_stops_early(db):
    op = ops.elementwise([(2, 2)], lambda a: a + 1.0, name="tiny_space")
    size = op.space("cpu").size()
    r = tune(op, "cpu", database=db, trials=size + 10, seed=0, strategy="tpe", measurer=ReplayMeasurer())
    assert r.total_measured == size


def test_build_best_falls_back_to_default_with_one_info_line(db, caplog):
    clear_cache()
    op = ops.softmax(4, 8)
    with caplog.at_level(logging.INFO, logger="autosched.build_best"):
        kernel = build_best(op, "cpu", db)
        build_best(op, "cpu", db)  # cached: no second line
    assert kernel.config == op.space("cpu").default()
    lines = [r for r in caplog.records if "no tuned record" in r.getMessage()]
    assert len(lines) == 1


def test_records_of_other_versions_are_kept_but_not_applied(db):
    clear_cache()
    op = ops.softmax(4, 8)
    space = op.space("cpu")
    fast_but_old = TuningRecord(op.workload_key, "", space.sample(np.random.default_rng(1)), 1e-9,
                                (1e-9,), space_version="old-space", op_name=op.name)
    other_codegen = TuningRecord(op.workload_key, "", space.sample(np.random.default_rng(2)), 1e-9,
                                 (1e-9,), space_version=space.version, codegen_version="numba-0", op_name=op.name)
    current = TuningRecord(op.workload_key, "", space.sample(np.random.default_rng(3)), 1e-3,
                           (1e-3,), space_version=space.version, op_name=op.name)
    for r in (fast_but_old, other_codegen, current):
        assert db.add(op, "cpu", r)
    assert len(db.records(op, "cpu")) == 3
    assert build_best(op, "cpu", db).config == current.config


def test_failed_records_never_become_best(db):
    op = ops.softmax(4, 8)
    space = op.space("cpu")
    wrong = TuningRecord(op.workload_key, "", space.default(), None, error="wrong_answer",
                         space_version=space.version)
    db.add(op, "cpu", wrong)
    assert db.best(op, "cpu") is None
    with pytest.raises(ValueError, match="unknown error kind"):
        db.add(op, "cpu", TuningRecord(op.workload_key, "", Config({"x": 1}), None, error="oops"))


def test_measurement_works_after_kernels_ran_in_the_parent(db):
    # Worker processes are forked; the parent's kernel thread pool must not leak into them.
    from codegen import build
    op = ops.elementwise([(64, 64)], lambda a: a * 2.0, name="after_parent_run")
    (x,) = op.random_inputs(0)
    build(op, "cpu")(x)  # starts the parent's thread pool
    result = tune(op, "cpu", database=db, trials=3, seed=0, strategy="random", options=FAST)
    assert [t.error for t in result.history] == [None, None, None]


def test_schema_version_is_recorded_and_newer_schemas_are_refused(tmp_path):
    from sqlalchemy import text

    from tuner.errors import DatabaseError
    path = str(tmp_path / "v.db")
    d = Database(path)
    with d.engine.begin() as c:
        assert c.execute(text("select value from autosched_meta where key='schema_version'")).scalar() == str(SCHEMA_VERSION)
        c.execute(text("update autosched_meta set value='99' where key='schema_version'"))
    with pytest.raises(DatabaseError, match="newer than this autosched"):
        Database(path)


def test_concurrent_schema_creation_is_safe(tmp_path):
    import threading
    path = str(tmp_path / "race.db")
    errors = []

    def open_db():
        try:
            Database(path).close()
        except Exception as exc:  # pragma: no cover - the assertion reports it
            errors.append(exc)
    threads = [threading.Thread(target=open_db) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_xgb_strategy_end_to_end_on_a_tiny_operator(db):
    op = ops.dense(8, 16, 8, activation="gelu")
    result = tune(op, "cpu", database=db, trials=10, seed=0, strategy="xgb", options=FAST)
    assert len(result.history) == 10 and result.best_config is not None
    records = db.records(op, "cpu")
    assert all(r.features is not None and len(r.features) > 10 for r in records)


def test_xgb_learns_across_workloads_from_stored_features(db):
    from costmodel import FEATURE_NAMES

    from tuner.model_search import ModelGuidedStrategy
    first = ops.matmul(32, 24, 16)
    tune(first, "cpu", database=db, trials=12, seed=0, strategy="xgb", measurer=ReplayMeasurer())
    second = ops.matmul(32, 32, 16)
    X, y, g = db.training_data("cpu", exclude_workload=second.workload_key, feature_count=len(FEATURE_NAMES))
    assert X.shape == (12, len(FEATURE_NAMES)) and set(g) == {0} and np.isfinite(y).all()
    strat = ModelGuidedStrategy(second.space("cpu"), second, "cpu", seed=0, transfer=(X, y, g))
    proposals = strat.propose(4)  # ranked by a model fitted on the first workload alone
    assert strat.fitted_at == 0 and len(proposals) == 4


def test_schema_v1_databases_are_migrated_in_place(tmp_path):
    from sqlalchemy import text
    path = str(tmp_path / "old.db")
    d = Database(path)
    op = ops.softmax(4, 8)
    d.add(op, "cpu", TuningRecord(op.workload_key, "", op.space("cpu").default(), 1e-3, (1e-3,),
                                  space_version=op.space("cpu").version))
    with d.engine.begin() as c:  # turn it into what version 1 wrote
        c.execute(text("ALTER TABLE records DROP COLUMN features"))
        c.execute(text("ALTER TABLE records DROP COLUMN predicted"))
        c.execute(text("ALTER TABLE workloads DROP COLUMN definition"))
        c.execute(text("DROP TABLE bench_results"))
        c.execute(text("DROP TABLE bench_runs"))
        c.execute(text("DROP TABLE confirmations"))
        c.execute(text("UPDATE autosched_meta SET value='1' WHERE key='schema_version'"))
    d.close()
    upgraded = Database(path)
    with upgraded.engine.begin() as c:
        assert c.execute(text("SELECT value FROM autosched_meta")).scalar() == str(SCHEMA_VERSION)
        assert c.execute(text("SELECT count(*) FROM bench_runs")).scalar() == 0
        assert c.execute(text("SELECT count(*) FROM confirmations")).scalar() == 0
    [record] = upgraded.records(op, "cpu")  # opening the workload fills in its definition
    assert record.seconds == 1e-3 and record.features is None and record.predicted is None
    with upgraded.engine.begin() as c:
        stored = c.execute(text("SELECT definition FROM workloads")).scalar()
    from schedules import Operator
    assert Operator.from_json(stored).workload_key == op.workload_key


def test_xgb_records_keep_the_cost_model_score_and_the_operator_definition(db):
    from sqlalchemy import text

    from schedules import Operator
    op = ops.matmul(32, 24, 16)
    tune(op, "cpu", database=db, trials=14, seed=0, strategy="xgb", measurer=ReplayMeasurer())
    records = db.records(op, "cpu")
    scored = [r for r in records if r.predicted is not None]
    # The first candidates are drawn before the model has data; later ones are ranked by it.
    assert records[0].predicted is None and len(scored) >= 4
    assert all(np.isfinite(r.predicted) for r in scored)
    with db.engine.begin() as c:
        stored = c.execute(text("SELECT definition FROM workloads")).scalar()
    assert Operator.from_json(stored).workload_key == op.workload_key


@pytest.mark.parametrize("strategy", ["xgb", "tpe", "random"])
def test_budget_larger_than_the_space_ends_with_every_config_measured_once(tmp_path, strategy):
    op = ops.elementwise([(8, 16), (16,)], lambda a, b: a * b + 1.0, name="small_space")
    size = op.space("cpu").size()
    r = tune(op, "cpu", database=Database(str(tmp_path / "s.db")), trials=size + 10, seed=0,
             strategy=strategy, measurer=ReplayMeasurer())
    assert r.total_measured == size == len({t.config for t in r.history})


def test_build_best_sees_records_added_after_a_miss(db):
    op = ops.softmax(4, 8)
    assert build_best(op, "cpu", db).config == op.space("cpu").default()
    r = tune(op, "cpu", database=db, trials=6, seed=0, strategy="random", measurer=ReplayMeasurer())
    assert build_best(op, "cpu", db).config == r.best_config


def test_export_import_keeps_features(tmp_path):
    from tuner.logs import export_jsonl, import_jsonl
    a, b = Database(str(tmp_path / "a.db")), Database(str(tmp_path / "b.db"))
    tune(ops.matmul(16, 16, 16), "cpu", database=a, trials=5, seed=0, strategy="random", measurer=ReplayMeasurer())
    export_jsonl(a, tmp_path / "x.jsonl")
    import_jsonl(b, tmp_path / "x.jsonl")
    np.testing.assert_allclose(b.training_data("cpu")[0], a.training_data("cpu")[0], atol=1e-5)


def _peaked_cost(config) -> float:
    """A smooth landscape the cost model can learn from loop-nest features: fastest with a
    16-wide innermost j loop, a 4-row register tile and unrolling by 4."""
    import math
    j_inner, i_inner = config["matmul.j"][-1], config["matmul.i"][-1]
    return 1e-4 * (1 + abs(math.log2(j_inner) - 4)) * (1 + 0.5 * abs(math.log2(i_inner) - 2)) \
        * (1.0 if config["matmul.unroll"] == 4 else 1.3)


def test_model_guided_proposals_beat_random_ones_once_the_model_has_data():
    from tuner.model_search import ModelGuidedStrategy
    op = ops.matmul(64, 48, 32)
    space = op.space("cpu")
    rng = np.random.default_rng(0)
    seen = [space.sample(rng) for _ in range(40)]
    strat = ModelGuidedStrategy(space, op, "cpu", seed=0, explore=0.0)
    try:
        strat.warm_start([(c, _peaked_cost(c)) for c in seen])
        guided = [_peaked_cost(p.config) for p in strat.propose(12)]
    finally:
        strat.close()
    uniform = [_peaked_cost(space.sample(rng)) for _ in range(400)]
    assert len(guided) == 12
    assert np.mean(guided) < 0.7 * np.mean(uniform)
    assert min(guided) <= min(_peaked_cost(c) for c in seen)  # it proposes beyond what it was shown


def test_timing_skips_the_warm_up_when_asked_and_gives_up_on_slow_candidates():
    from tuner.timing import time_callable
    calls = []

    def fn():
        calls.append(1)
    costs = time_callable(fn, min_seconds=0.0, min_repeats=4, max_repeats=10, warmup=False)
    assert len(costs) == len(calls) == 4
    calls.clear()
    costs = time_callable(fn, min_seconds=0.0, min_repeats=4, max_repeats=10, give_up_after=-1.0)
    assert len(costs) == 1 and len(calls) == 2       # warm-up plus the one timed call
    assert len(time_callable(fn, min_seconds=0.0, min_repeats=4, give_up_after=1e9)) == 4


def test_measurer_times_a_slow_candidate_once_after_a_fast_one_was_seen():
    op = ops.matmul(32, 24, 16)
    space = op.space("cpu")
    configs = [space.default(), space.sample(np.random.default_rng(5))]
    with LocalMeasurer(MeasureOptions(min_seconds=0.0, min_repeats=5, slow_factor=1e-9)) as m:
        first, second = m.measure(op, "cpu", configs)
    assert first.error is None and second.error is None
    assert len(first.costs) >= 5     # nothing known yet: timed fully
    assert len(second.costs) == 1    # slower than 1e-9 x the best: timed once


def test_a_candidate_is_warmed_up_again_after_its_correctness_check(monkeypatch):
    """The check between the first run and the timing lets the kernel go cold; a first timed
    call that is cold can cross the slow-candidate cut and leave one slow timing."""
    import codegen
    from tuner import measure
    op = ops.matmul(8, 8, 8)
    calls = []

    class RecordingKernel:
        def __call__(self, *arrays, out=None):
            calls.append("timed or warm-up" if out is not None else "checked")
            return op.reference(*arrays)
    monkeypatch.setattr(codegen, "build", lambda *args, **kwargs: RecordingKernel())
    opts = MeasureOptions(min_seconds=0.0, min_repeats=3)
    kind, _, costs = measure._run_task(("run", op, as_target("cpu"), op.space("cpu").default(), opts, -1.0, None))
    assert kind is None and len(costs) == 1  # given up after the first timed call
    assert calls == ["checked", "timed or warm-up", "timed or warm-up"]


def test_an_operator_with_constants_is_a_workload_of_its_own():
    from schedules import Operator
    op = ops.dense(8, 16, 32, bias=True, activation="gelu")
    held = op.with_constants("bias", "weight")
    assert held.constants == ("weight", "bias")  # input order
    assert held.workload_key == op.workload_key + "@weight,bias" and held != op
    assert held.with_constants() == op and held.with_constants().constants == ()
    assert "constant weight, bias" in repr(held)
    assert Operator.from_json(held.to_json()).workload_key == held.workload_key
    assert Operator.from_json(op.to_json()).constants == ()
    assert held.space("cpu").version == op.space("cpu").version
    with pytest.raises(ValueError, match=r"no input 'W' to hold constant \(inputs: x, weight, bias\)"):
        op.with_constants("W")


def test_a_workload_with_constants_is_measured_with_them_bound(monkeypatch):
    """The runner binds the constant inputs (packing their operands once) and times the
    bound kernel on the other inputs; its records carry the constants workload's key."""
    from codegen.kernel import Kernel
    from tuner.measure import _run_task
    bound = []
    original = Kernel.bind

    def spy(self, **arrays):
        bound.append(sorted(arrays))
        return original(self, **arrays)
    monkeypatch.setattr(Kernel, "bind", spy)
    op = ops.dense(8, 16, 32, bias=True).with_constants("weight")
    config = op.space("cpu").default()
    kind, message, costs = _run_task(("run", op, as_target("cpu"), config, FAST, None, None))
    assert kind is None and costs and bound == [["weight"]], message
    plain_kind, _, _ = _run_task(("run", op.with_constants(), as_target("cpu"), config, FAST, None, None))
    assert plain_kind is None and bound == [["weight"]]  # the plain workload binds nothing


def test_tuning_with_constants_stores_records_under_their_own_key(db):
    op = ops.matmul(16, 24, 32)
    held = op.with_constants("B")
    result = tune(held, "cpu", database=db, trials=2, seed=0, strategy="random", options=FAST)
    assert all(t.error is None for t in result.history)
    assert [r.workload_key for r in db.records(held, "cpu")] == [held.workload_key] * 2
    assert db.records(op, "cpu") == []
    kernel = build_best(held, "cpu", db)
    assert kernel.loopnest.prepacked  # built with B as a constant
    a, b = op.random_inputs(1)
    np.testing.assert_allclose(kernel.bind(B=b)(a), a @ b, rtol=1e-4, atol=1e-4)


def test_a_workload_with_constants_starts_from_the_plain_workloads_best_configs(db):
    op = ops.matmul(16, 24, 32)
    tune(op, "cpu", database=db, trials=6, seed=3, strategy="random", options=FAST)
    plain = sorted((r for r in db.records(op, "cpu") if r.seconds), key=lambda r: r.seconds)
    held = op.with_constants("B")
    result = tune(held, "cpu", database=db, trials=3, seed=0, strategy="random", options=FAST)
    default = op.space("cpu").default()
    expected = [default] + [r.config for r in plain if r.config != default][:2]
    assert [t.config for t in result.history] == expected
