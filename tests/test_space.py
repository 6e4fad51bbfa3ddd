"""Tier 1/2: knobs, spaces and configs (unit tests and hypothesis properties)."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.numba_source import generate
from helpers import configs
from library import library_cases
from schedules import ChoiceKnob, Config, ConfigError, SplitKnob, lower, ops
from schedules.space import is_active

CASES = library_cases()
values = st.one_of(st.integers(-10**6, 10**6), st.booleans(), st.text(max_size=8),
                   st.tuples(st.integers(1, 4096), st.integers(1, 4096)))


@given(st.dictionaries(st.text(min_size=1, max_size=12), values, max_size=6))
def test_config_json_round_trips_unchanged(d):
    c = Config(d)
    again = Config.from_json(c.to_json())
    assert again == c and hash(again) == hash(c)
    assert again.to_json() == c.to_json()
    assert json.loads(c.to_json()) == {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def test_config_is_frozen_and_equal_by_value():
    a = Config({"x": 1, "y": (2, 3)})
    b = Config({"y": [2, 3], "x": 1})
    assert a == b and len({a, b}) == 1
    with pytest.raises((AttributeError, TypeError)):
        a.x = 2
    with pytest.raises(TypeError):
        a["x"] = 2
    assert a.replace(x=5)["x"] == 5 and a["x"] == 1


@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_every_drawn_config_validates(name, make):
    space = make().space("cpu")
    assert space.size() >= 1 and len(space.knobs) >= 1
    assert space.validate(space.default()) == space.default()

    @settings(max_examples=30, deadline=None, derandomize=True)
    @given(configs(space))
    def check(config):
        # Knobs with no effect under the others come back at their defaults.
        canonical = space.canonical(config)
        assert space.validate(config) == canonical
        assert space.validate(canonical.to_json()) == canonical == space.canonical(canonical)
    check()


def test_knobs_without_effect_are_canonicalized_away():
    space = ops.matmul(64, 64, 64).space("cpu")
    micro = space.default()
    assert micro["matmul.kernel"] == "micro"
    changed_tiled = micro.replace(**{"matmul.order": "SSRSSR", "matmul.unroll": 64})
    assert space.check(changed_tiled) == micro
    assert space.structure_key(changed_tiled) == space.structure_key(micro)
    tiled = micro.replace(**{"matmul.kernel": "tiled", "matmul.mk_rows": 8, "matmul.mc": 24})
    assert space.check(tiled) == micro.replace(**{"matmul.kernel": "tiled"})
    rng = np.random.default_rng(0)
    for _ in range(50):  # a neighbour changes one knob that matters, so it is a new kernel
        n = space.neighbor(micro, rng)
        assert n != micro and space.canonical(n) == n
    assert all(space.canonical(c) == c for c in (space.sample(rng) for _ in range(20)))
    # Spaces without such knobs keep their versions and configs.
    sm = ops.softmax(4, 8).space("cpu")
    assert all(not k.active_when for k in sm.knobs)
    assert sm.canonical(sm.default()) == sm.default()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_neighbor_is_legal_and_changes_exactly_one_knob(data):
    name, make = data.draw(st.sampled_from(CASES))
    space = make().space("cpu")
    config = space.canonical(data.draw(configs(space)))
    seed = data.draw(st.integers(0, 2**32 - 1))
    moved = space.neighbor(config, np.random.default_rng(seed))
    assert space.check(moved) == moved
    changed = [k for k in space.knobs if moved[k.name] != config[k.name]]
    movable = [k for k in space.knobs if (len(k.choices) if isinstance(k, ChoiceKnob) else k.extent) > 1]
    # One knob that mattered moves; knobs it switches off return to their defaults.
    primary = [k for k in changed if is_active(k, config) and is_active(k, moved)]
    assert len(primary) == (1 if movable else 0)
    assert all(moved[k.name] == k.default() and not is_active(k, moved) for k in changed if k not in primary)
    assert moved == space.neighbor(config, np.random.default_rng(seed))  # seeded, so repeatable


def test_structure_key_and_runtime_values_split_a_config():
    space = ops.matmul(64, 48, 32).space("cpu")
    config = space.default()
    values = space.runtime_values(config)
    assert values and all(name.startswith("p_") for name in values)
    runtime_only = [k for k in space.knobs if isinstance(k, SplitKnob) and any(k.runtime)]
    k = runtime_only[0]
    level = k.runtime.index(True)
    other = [f for f in k.candidates(level) if f != config[k.name][level] and
             f * np.prod([x for i, x in enumerate(config[k.name]) if i != level]) <= k.extent][0]
    moved = config.replace(**{k.name: tuple(other if i == level else f for i, f in enumerate(config[k.name]))})
    assert space.structure_key(moved) == space.structure_key(config)
    assert space.runtime_values(moved) != values


def test_numpy_sampling_is_deterministic_and_valid():
    space = ops.conv2d(1, 8, 14, 14, 16, 3, 3, padding=1).space("cpu")
    draws = [space.sample(np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    for seed in range(50):
        c = space.sample(np.random.default_rng(seed))
        assert space.validate(c) == c


def test_split_knob_respects_extent_and_candidates():
    knob = SplitKnob("t", 24, (True, True, False), (1, 2, 4), max_innermost=8)
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = knob.sample(rng)
        assert np.prod(v) <= 24 and v[-1] <= 8
        assert knob.canonical(v) == v
    assert knob.canonical((5, 5, 1)) is None      # product over the extent
    assert knob.canonical((1, 1, 16)) is None     # innermost over its cap
    assert knob.canonical((1, 1)) is None         # wrong arity
    assert knob.size() > 10
    assert ChoiceKnob("c", (1, 2)).canonical(2.0) == 2 and ChoiceKnob("c", (1, 2)).canonical(3) is None


def test_validate_explains_what_is_wrong():
    space = ops.matmul(16, 16, 16).space("cpu")
    cfg = space.default()
    with pytest.raises(ConfigError, match=r"knob matmul.order='ZZZ' is not legal .* matmul"):
        space.validate(cfg.replace(**{"matmul.order": "ZZZ"}))
    with pytest.raises(ConfigError, match=r"unknown knobs \['extra'\]"):
        space.validate(cfg.replace(extra=1))
    with pytest.raises(ConfigError, match="retune"):
        space.validate({"matmul.i": (1, 1, 1)})


def test_space_version_tracks_knob_definitions():
    a = ops.matmul(16, 16, 16).space("cpu")
    b = ops.matmul(16, 16, 32).space("cpu")
    assert a.version == ops.matmul(16, 16, 16).space("cpu").version
    assert a.version != b.version  # the k split knob has another extent


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_runtime_knobs_never_change_the_generated_source(data):
    op = ops.dense(12, 20, 10, activation="gelu")
    space = op.space("cpu")
    base = data.draw(configs(space))
    runtime_changes = {}
    for k in space.knobs:
        if isinstance(k, SplitKnob) and all(k.runtime):
            runtime_changes[k.name] = data.draw(configs(space))[k.name]
    other = base.replace(**runtime_changes)
    src = generate(lower(space.apply(base)))
    assert generate(lower(space.apply(other))) == src
