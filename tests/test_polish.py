"""Polishing the best: runtime neighbours of a config, the last trials of a budget spent on
them, and the re-timing that compares what they found with the pick built before."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from schedules import ChoiceKnob, ops
from tuner import Database, TuningRecord, tune
from tuner.confirm import candidates
from tuner.simulate import ReplayMeasurer, hashed_cost
from tuner.versions import codegen_version

OP = ops.matmul(64, 48, 96)


@pytest.fixture
def db(tmp_path):
    d = Database(str(tmp_path / "records.db"))
    yield d
    d.close()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_runtime_neighbours_differ_in_one_runtime_choice_and_validate(seed):
    space = OP.space("cpu")
    config = space.canonical(space.sample(np.random.default_rng(seed)))
    neighbours = space.runtime_neighbors(config)
    assert len(set(neighbours)) == len(neighbours) and config not in neighbours
    runtime = {k.name for k in space.knobs if isinstance(k, ChoiceKnob) and k.runtime}
    for n in neighbours:
        assert space.validate(dict(n.items())) == n
        changed = {name for name, value in n.items() if config[name] != value}
        assert len(changed) == 1 and changed <= runtime
    if config["matmul.kernel"] == "micro":  # every other value of each cache block and split
        assert len(neighbours) == sum(len(space[name].choices) - 1 for name in runtime
                                      if name.split(".")[1] in ("mc", "kc", "nc", "parts_m", "parts_n"))


BEST_BLOCKS = {"matmul.mc": 24, "matmul.kc": 512, "matmul.nc": 256, "matmul.parts_m": 16, "matmul.parts_n": 16}


def _cost(config):
    """Micro kernels are fast, each of their runtime blocks at its value in BEST_BLOCKS takes
    a tenth of a millisecond off, and the rest costs what hashed_cost says."""
    if config["matmul.kernel"] != "micro":
        return 1e-3 + hashed_cost(config)
    bonus = sum(1e-4 for name, value in BEST_BLOCKS.items() if config[name] == value)
    return 6e-4 - bonus + hashed_cost(config) * 1e-5


def test_the_last_trials_measure_the_runtime_neighbours_of_the_best(db):
    space = OP.space("cpu")
    m = ReplayMeasurer(cost_fn=_cost)
    result = tune(OP, "cpu", database=db, trials=24, seed=3, strategy="random", measurer=m, polish=6)
    searched, polished = result.history[:18], result.history[18:]
    assert len(polished) == 6
    before = min((t for t in searched if t.seconds is not None), key=lambda t: t.seconds).config
    assert before["matmul.kernel"] == "micro"
    structural = [k.name for k in space.structural_knobs]
    for t in polished:  # one runtime choice away from the best, structure unchanged
        assert [t.config[n] for n in structural] == [before[n] for n in structural]
    assert polished[0].config in space.runtime_neighbors(before)
    assert result.best_seconds < _cost(before)  # a runtime choice the search missed
    assert [result.best_config[n] for n in structural] == [before[n] for n in structural]
    again = tune(OP, "cpu", database=db, trials=24, seed=3, strategy="random", measurer=m, polish=6)
    assert again.history == ()  # the budget is spent: polishing counts in it


def test_polish_zero_searches_to_the_end(db):
    m = ReplayMeasurer(cost_fn=_cost)
    tune(OP, "cpu", database=db, trials=24, seed=3, strategy="random", measurer=m, polish=0)
    plain = Database(str(db.url.split("///", 1)[1]) + ".polished.db")
    p = ReplayMeasurer(cost_fn=_cost)
    tune(OP, "cpu", database=plain, trials=24, seed=3, strategy="random", measurer=p, polish=6)
    assert m.calls[:18] == p.calls[:18] and m.calls[18:] != p.calls[18:]
    with pytest.raises(ValueError, match="polish"):
        tune(OP, "cpu", database=db, trials=24, measurer=m, polish=-1)


def test_the_re_timing_compares_the_polished_best_with_the_pick_built_before(db):
    """A lucky single timing of another record would keep both out of the fastest four."""
    space = OP.space("cpu")
    version = space.version
    rng = np.random.default_rng(0)
    configs = []
    while len(configs) < 7:
        c = space.canonical(space.sample(rng))
        if c not in configs:
            configs.append(c)
    lucky, built, polished = configs[:4], configs[4], configs[5]
    for c, s in [(c, 1.0) for c in lucky] + [(built, 1.3), (polished, 1.2), (configs[6], 9.0)]:
        db.add(OP, "cpu", TuningRecord(OP.workload_key, "", c, s, (s,), space_version=version))
    ids = lambda chosen: [c for _, c in chosen]
    assert built not in ids(candidates(db, OP, "cpu", space, 4))
    chosen = ids(candidates(db, OP, "cpu", space, 4, also=[built, polished, configs[6]]))
    assert chosen[:4] == lucky and built in chosen and polished in chosen
    assert configs[6] not in chosen  # 9x the fastest: beyond CONFIRM_WITHIN


def test_a_polished_tune_re_times_the_extras_at_the_end(db):
    class Noisy(ReplayMeasurer):
        deterministic = False  # so the end-of-tuning re-timing runs

    m = Noisy(cost_fn=_cost)
    tune(OP, "cpu", database=db, trials=24, seed=3, strategy="random", measurer=m, polish=6)
    compared = {c for c in m.calls[24:]}
    best_searched = min((r for r in db.records(OP, "cpu")[:18] if r.seconds), key=lambda r: r.seconds).config
    assert best_searched in compared
    newest = db.newest_confirmation(OP, "cpu", OP.space("cpu").version, codegen_version())
    assert len(newest) == len(compared)
