"""Operator JSON round trip: the rebuilt operator has the same key, knobs, schedules and results."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from schedules import Operator, ops, te
from schedules.operator_json import OperatorDecodeError

from library import library_cases


def _user_op():
    x = te.placeholder((6, 9), "float32", name="x")
    k = te.reduce_axis(9, name="kk")
    t = te.compute((6, 9), lambda i, j: te.tanh(x[i, j]) * 0.5, name="t")
    s = te.compute((6,), lambda i: te.sum(t[i, k], axis=k), name="rowsum")
    y = te.compute((6, 9), lambda i, j: t[i, j] - s[i] + x.at(i, j + 1, default=-2.5), name="y")
    return te.operator("user_tanh_rows", inputs=[x], outputs=[y])


CASES = library_cases() + [("user-op", _user_op)]


@pytest.mark.parametrize("make", [c for _, c in CASES], ids=[i for i, _ in CASES])
def test_round_trip_rebuilds_the_same_operator(make):
    op = make()
    back = Operator.from_json(op.to_json())
    assert back.workload_key == op.workload_key
    assert back.name == op.name
    assert [t.name for t in back.inputs] == [t.name for t in op.inputs]
    assert [s.name for s in back.stages] == [s.name for s in op.stages]
    assert back.to_json() == op.to_json()
    assert back.flops() == op.flops()
    assert [k.name for k in back.space("cpu").knobs] == [k.name for k in op.space("cpu").knobs]
    inputs = op.random_inputs(3)
    np.testing.assert_array_equal(back.reference(*inputs), op.reference(*inputs))


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9), st.sampled_from([None, "relu", "gelu"]))
def test_round_trip_property_dense(m, n, k, act):
    op = ops.dense(m, n, k, bias=True, activation=act)
    back = Operator.from_json(op.to_json())
    assert back.workload_key == op.workload_key
    assert json.loads(back.to_json()) == json.loads(op.to_json())


def test_bad_definitions_name_the_problem():
    good = json.loads(ops.softmax(4, 5).to_json())
    with pytest.raises(OperatorDecodeError, match="format"):
        Operator.from_json(json.dumps(dict(good, format=99)))
    broken = dict(good, stages=[dict(good["stages"][0], body=["load", "in7", "0.0", []])])
    with pytest.raises(OperatorDecodeError, match="cannot rebuild"):
        Operator.from_json(json.dumps(broken))
