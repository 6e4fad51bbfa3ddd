"""Target: the host description that keys every record."""
import dataclasses

import llvmlite.binding as llvm
import pytest
from hypothesis import given, strategies as st

from schedules import Target, as_target


def test_cpu_resolves_to_the_host_with_llvm_features():
    t = as_target("cpu")
    assert t.kind == "cpu" and t.cores >= 1
    assert t.arch == llvm.get_host_cpu_name()
    host = {k for k, v in llvm.get_host_cpu_features().items() if v}
    assert set(t.features) <= host
    assert ("avx2" in host) == ("avx2" in t.features)
    assert t.key.startswith("cpu|") and t.arch in t.key and str(t.cores) in t.key
    assert as_target(t) is t and as_target("cpu").key == t.key


def test_target_is_frozen_and_unknown_targets_are_explained():
    t = as_target("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.cores = 99
    other = dataclasses.replace(t, cores=t.cores + 1)
    assert other.key != t.key
    with pytest.raises(ValueError, match="unknown target 'tpu'"):
        as_target("tpu")
    with pytest.raises(TypeError):
        as_target(3)
    assert Target("cpu", features=("avx512f",)).vector_lanes("float32") == 16


def test_host_cache_sizes_are_read_and_grow_with_level():
    from schedules.target import _host_cache_bytes
    l1, l2, l3 = _host_cache_bytes()
    assert 4 * 1024 <= l1 < l2 <= l3
    assert Target.host_cpu().cache_bytes == (l1, l2, l3)


@given(st.sampled_from(["cpu", "cuda"]), st.text("abcXYZ 0-9_.", min_size=1, max_size=12),
       st.lists(st.sampled_from(["avx2", "fma", "avx", "sse4.2", "avx512f"]), unique=True),
       st.integers(1, 256), st.lists(st.tuples(st.sampled_from(["cc", "sm"]), st.text("0123456789", min_size=1, max_size=3)),
                                     max_size=2, unique_by=lambda t: t[0]))
def test_target_keys_parse_back_to_the_same_target(kind, model, feats, cores, extra):
    from schedules.target import Target
    t = Target(kind, model, "znver3", tuple(feats), cores, tuple(extra))
    back = Target.from_key(t.key)
    assert back == t and back.key == t.key


def test_unreadable_target_keys_are_refused():
    from schedules.target import Target
    with pytest.raises(ValueError, match="cannot read target key"):
        Target.from_key("cpu|only-two")
