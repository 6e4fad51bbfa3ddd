"""Tier 2 (properties): generated code matches the reference for many sampled configs.

The generated source runs in the Python interpreter (build(..., jit=False)): it is the exact
code Numba compiles, so every config's loop bounds, guards and fusion are checked without a
compile per config. test_codegen_numba.py compiles a subset of configs for real.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen import build
from helpers import assert_matches, configs
from library import library_cases

CASES = library_cases()


@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_default_config_matches_reference(name, make):
    op = make()
    inputs = op.random_inputs(0)
    assert_matches(op, build(op, "cpu", jit=False)(*inputs), op.reference(*inputs), "(default config)")


@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_sampled_configs_match_reference(name, make):
    op = make()
    space = op.space("cpu")
    inputs = op.random_inputs(1)
    ref = op.reference(*inputs)

    @settings(max_examples=25, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(configs(space))
    def check(config):
        kernel = build(op, "cpu", config, jit=False)
        assert_matches(op, kernel(*inputs), ref, f"with config {config.to_json()}")
    check()


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=20, deadline=None)
def test_space_sample_with_numpy_rng_is_correct(seed):
    from schedules import ops
    op = ops.conv2d(1, 3, 6, 5, 4, 3, 3, padding=1, bias=True, activation="relu")
    config = op.space("cpu").sample(np.random.default_rng(seed))
    inputs = op.random_inputs(seed % 7)
    assert_matches(op, build(op, "cpu", config, jit=False)(*inputs), op.reference(*inputs))
