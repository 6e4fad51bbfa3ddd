"""Shared test helpers: hypothesis strategies over a Space, and result comparison."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from schedules import ChoiceKnob, Config, SplitKnob, Target


def avx2_cpu() -> Target:
    """This machine described as an AVX2 CPU (8 float lanes), so tests that name vector widths
    (4 or 8 lanes) mean the same space on AVX2 and AVX-512 hosts; the code runs on either."""
    import dataclasses
    host = Target.host_cpu()
    return dataclasses.replace(host, features=tuple(f for f in host.features if not f.startswith("avx512")))


@st.composite
def split_values(draw, knob: SplitKnob):
    factors, budget = [0] * knob.parts, knob.extent
    for level in reversed(range(knob.parts)):
        allowed = [f for f in knob.candidates(level) if f <= budget]
        f = draw(st.sampled_from(allowed))
        factors[level] = f
        budget //= f
    return tuple(factors)


def configs(space):
    """A hypothesis strategy drawing legal configs of `space`, knob by knob."""
    parts = {}
    for k in space.knobs:
        parts[k.name] = st.sampled_from(k.choices) if isinstance(k, ChoiceKnob) else split_values(k)
    return st.fixed_dictionaries(parts).map(Config)


def tolerance(op) -> tuple:
    """(rtol, atol) for comparing a kernel with op.reference.

    float32: generated kernels use fastmath, so reductions are reassociated; the error grows
    with the reduction length. float64 is held far tighter.
    """
    red = max([math.prod(a.extent for a in s.reduce_axes) for s in op.stages] + [1])
    if all(t.dtype == "float64" for t in op.outputs):
        return 1e-9, 1e-9 * math.sqrt(red)
    return 1e-4, 2e-5 * math.sqrt(red) + 1e-5


def assert_matches(op, got, ref, context=""):
    rtol, atol = tolerance(op)
    got = got if isinstance(got, tuple) else (got,)
    ref = ref if isinstance(ref, tuple) else (ref,)
    for g, r, t in zip(got, ref, op.outputs):
        assert g.shape == r.shape and g.dtype == r.dtype, (t.name, g.shape, r.shape)
        if not np.allclose(g, r, rtol=rtol, atol=atol, equal_nan=True):
            err = float(np.nanmax(np.abs(g.astype(np.float64) - r)))
            raise AssertionError(f"{op.name} output {t.name} differs from the reference by "
                                 f"{err:.3g} (rtol={rtol}, atol={atol:.2g}) {context}")
