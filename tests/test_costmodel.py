"""Cost-model features and models (tier 1/2: no compiler involved)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmodel.features import FEATURE_NAMES, FeatureExtractor, featurize, featurize_config, featurize_many
from costmodel.model import RandomModel, XGBModel, normalized_throughput
from schedules import ops


@pytest.mark.parametrize("make", [lambda: ops.matmul(64, 48, 32),
                                  lambda: ops.conv2d(1, 8, 14, 14, 16, 3, 3, padding=1, bias=True, activation="relu"),
                                  lambda: ops.softmax(32, 64), lambda: ops.layer_norm(16, 40)],
                         ids=["matmul", "conv2d", "softmax", "layer_norm"])
def test_features_are_finite_deterministic_and_config_dependent(make):
    op = make()
    space = op.space("cpu")
    rng = np.random.default_rng(0)
    configs = [space.default()] + [space.sample(rng) for _ in range(20)]
    X = featurize_many(op, configs)
    assert X.shape == (21, len(FEATURE_NAMES)) and np.isfinite(X).all()
    np.testing.assert_array_equal(X, featurize_many(op, configs))
    assert len({row.tobytes() for row in X}) > 10  # configs are told apart
    again = make()  # a fresh operator object gives the same vector
    np.testing.assert_array_equal(featurize_config(again, configs[3]), X[3])


_SHARED_EXTRACTORS = {}


@settings(max_examples=40, deadline=None)
@given(which=st.sampled_from(["matmul", "conv2d"]), seed=st.integers(0, 2**32 - 1))
def test_reusing_a_lowered_structure_gives_the_features_of_a_fresh_lowering(which, seed):
    from schedules import lower
    if which not in _SHARED_EXTRACTORS:  # one extractor across examples, so structures are reused
        op = ops.matmul(96, 40, 72) if which == "matmul" else ops.conv2d(1, 6, 10, 12, 8, 3, 3, padding=1)
        _SHARED_EXTRACTORS[which] = FeatureExtractor(op)
    extract = _SHARED_EXTRACTORS[which]
    space = extract.space
    config = space.sample(np.random.default_rng(seed))
    sch = space.apply(config)
    fresh = featurize(lower(sch), {id(p): v for p, v in sch.params}, sch.target.cores,
                      sch.target.cache_bytes)
    np.testing.assert_array_equal(extract(config), fresh)


def test_configs_differing_only_in_runtime_knobs_share_one_lowering():
    op = ops.matmul(64, 48, 32)
    extract = FeatureExtractor(op)
    rng = np.random.default_rng(1)
    configs = [extract.space.sample(rng) for _ in range(200)]
    extract.many(configs)
    structures = {extract.space.structure_key(c) for c in configs}
    assert len(extract.nests) == len(structures) < len(configs)


def test_flops_feature_matches_the_operator():
    op = ops.matmul(64, 48, 32)
    x = featurize_config(op, op.space("cpu").default())
    flops = dict(zip(FEATURE_NAMES, x))["flops"]
    assert abs(flops - np.log2(1 + op.flops())) < 0.05


def test_normalized_throughput_is_per_group():
    t = normalized_throughput(np.array([1.0, 2.0, 10.0, 5.0, np.nan]), np.array([0, 0, 1, 1, 1]))
    np.testing.assert_allclose(t, [1.0, 0.5, 0.5, 1.0, 0.0])


def test_xgb_recovers_a_known_ordering_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((400, 6)).astype(np.float32)
    groups = np.repeat(np.arange(4), 100)
    seconds = np.exp(2.0 * X[:, 0] - 1.0 * X[:, 3]) * (1 + groups)   # known ordering per group
    model = XGBModel(seed=0, rounds=80)
    model.fit(X, seconds, groups)
    Xt = rng.random((200, 6)).astype(np.float32)
    truth = -(2.0 * Xt[:, 0] - 1.0 * Xt[:, 3])     # higher is faster
    pred = model.predict(Xt)
    rho = np.corrcoef(np.argsort(np.argsort(pred)), np.argsort(np.argsort(truth)))[0, 1]
    assert rho > 0.8
    path = tmp_path / "m.json"
    model.save(path)
    np.testing.assert_allclose(XGBModel.load(path).predict(Xt), pred, rtol=1e-6)
    rand = RandomModel(0).predict(Xt)
    rho_rand = np.corrcoef(np.argsort(np.argsort(rand)), np.argsort(np.argsort(truth)))[0, 1]
    assert abs(rho_rand) < 0.3
