"""Explicit-SIMD building blocks: the outer-product register micro-kernel and the FMA probe."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.peak import fp32_peak_gflops
from codegen.simd import fma_probe, outer_product_kernel

TILES = [(1, 1), (4, 1), (6, 2), (3, 3)]
_CALLERS = {}


def _caller(mr, nvec):
    if (mr, nvec) not in _CALLERS:
        from numba import njit
        kernel = outer_product_kernel(mr, nvec)

        @njit
        def call(a, a_off, b, b_off, c, c_off, ldc, kc):
            kernel(a, a_off, b, b_off, c, c_off, ldc, kc)
        _CALLERS[mr, nvec] = call
    return _CALLERS[mr, nvec]


@pytest.mark.parametrize("mr,nvec", TILES)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_outer_product_kernel_matches_numpy(mr, nvec, data):
    nr = nvec * 8
    kc = data.draw(st.integers(0, 40), label="kc")
    a_off, b_off = data.draw(st.integers(0, 5), label="a_off"), data.draw(st.integers(0, 9), label="b_off")
    ldc = data.draw(st.integers(nr, nr + 7), label="ldc")
    c_off = data.draw(st.integers(0, 6), label="c_off")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    a = rng.standard_normal(a_off + kc * mr + 3).astype(np.float32)
    b = rng.standard_normal(b_off + kc * nr + 3).astype(np.float32)
    c = rng.standard_normal(c_off + mr * ldc + 5).astype(np.float32)
    expected = c.astype(np.float64).copy()
    panel_a = a[a_off:a_off + kc * mr].astype(np.float64).reshape(kc, mr)
    panel_b = b[b_off:b_off + kc * nr].astype(np.float64).reshape(kc, nr)
    for i in range(mr):
        expected[c_off + i * ldc: c_off + i * ldc + nr] += panel_a[:, i] @ panel_b
    _caller(mr, nvec)(a, a_off, b, b_off, c, c_off, ldc, kc)
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5 * (1 + np.sqrt(kc)))


_DIRECT = {}


def _direct_caller(mr, nvec, mode):
    if (mr, nvec, mode) not in _DIRECT:
        from numba import njit
        kernel = outer_product_kernel(mr, nvec, 8, mode, direct=True)
        if mode == "runtime":
            @njit
            def call(a, a_off, rows, ks, ks_off, b, c, ldc, kc, flag):
                kernel(a, a_off, rows, ks, ks_off, b, 0, c, 0, ldc, kc, flag)
        else:
            @njit
            def call(a, a_off, rows, ks, ks_off, b, c, ldc, kc, flag):
                kernel(a, a_off, rows, ks, ks_off, b, 0, c, 0, ldc, kc)
        _DIRECT[mr, nvec, mode] = call
    return _DIRECT[mr, nvec, mode]


@pytest.mark.parametrize("mr,nvec", [(1, 1), (6, 2), (8, 1)])
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_direct_outer_product_reads_a_through_its_row_and_k_tables(mr, nvec, data):
    """A[k, i] = a[a_off + rows[i] + ks[ks_off + k]]: rows in any order, repeated or not
    (an edge tile repeats its last row), taps at any offsets."""
    nr = nvec * 8
    kc = data.draw(st.integers(0, 30), label="kc")
    ks_off = data.draw(st.integers(0, 4), label="ks_off")
    mode = data.draw(st.sampled_from([True, False, "runtime"]), label="mode")
    flag = data.draw(st.booleans(), label="flag")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    a = rng.standard_normal(300).astype(np.float32)
    a_off = int(rng.integers(0, 20))
    rows = rng.integers(0, 120, mr).astype(np.int64)
    ks = rng.integers(0, 150, ks_off + kc + 2).astype(np.int64)
    b = rng.standard_normal(kc * nr + 3).astype(np.float32)
    c = rng.standard_normal(mr * nr).astype(np.float32)
    panel_a = np.array([[a[a_off + rows[i] + ks[ks_off + k]] for i in range(mr)] for k in range(kc)],
                       np.float64).reshape(kc, mr)
    tile = panel_a.T @ b[:kc * nr].astype(np.float64).reshape(kc, nr)
    adds = flag if mode == "runtime" else mode
    expected = (c.astype(np.float64).reshape(mr, nr) if adds else 0) + tile
    _direct_caller(mr, nvec, mode)(a, a_off, rows, ks, ks_off, b, c, nr, kc, flag)
    np.testing.assert_allclose(c.reshape(mr, nr), expected, rtol=1e-5, atol=1e-5 * (1 + np.sqrt(kc)))


def test_outer_product_kernel_rejects_non_tiles_and_wrong_dtypes():
    with pytest.raises(ValueError):
        outer_product_kernel(0, 1)
    with pytest.raises(ValueError):
        outer_product_kernel(2, 1, lanes=6)
    from numba import njit
    from numba.core.errors import TypingError
    kernel = outer_product_kernel(2, 1)

    @njit
    def call(a, c):
        kernel(a, 0, a, 0, c, 0, 8, 1)
    with pytest.raises((TypeError, TypingError), match="float32 array"):
        call(np.zeros(64), np.zeros(64))


@pytest.mark.parametrize("iterations", [0, 1, 7, 1000])
def test_fma_probe_does_the_work_it_claims(iterations):
    lanes, chains = 8, 12
    x = np.array([1.0 + c for c in range(chains)], dtype=np.float64)
    for _ in range(iterations):
        x = x * np.float32(0.999999) + np.float32(1e-7)
    assert fma_probe(lanes, chains)(iterations) == pytest.approx(float(x.sum()), rel=1e-4)


def test_peak_probe_reports_a_positive_rate_and_rejects_bad_arguments():
    assert fp32_peak_gflops(threads=1, iterations=1000, repeats=1) > 0
    with pytest.raises(ValueError, match="threads"):
        fp32_peak_gflops(threads=0)


@settings(max_examples=25, deadline=None)
@given(M=st.integers(1, 40), K=st.integers(0, 70), N=st.integers(1, 50), mc=st.integers(1, 30),
       kc=st.integers(1, 40), nc=st.integers(1, 40), threads=st.integers(1, 2), seed=st.integers(0, 2**32 - 1))
def test_packed_matmul_is_correct_for_any_shape_and_blocking(M, K, N, mc, kc, nc, threads, seed):
    from codegen.gemm import packed_matmul
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    C = packed_matmul(A, B, mc=mc, kc=kc, nc=nc, threads=threads)
    np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-4, atol=1e-4 * (1 + np.sqrt(K)))


def test_packed_matmul_explains_bad_shapes():
    from codegen.gemm import packed_matmul
    with pytest.raises(ValueError, match="do not multiply"):
        packed_matmul(np.zeros((3, 4)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="out must be"):
        packed_matmul(np.zeros((3, 4)), np.zeros((4, 2)), out=np.zeros((3, 2)))


@pytest.fixture(scope="module")
def copies():
    from numba import njit

    from codegen.interpret import python_transpose_copy, python_vector_copy
    from codegen.simd import transpose_copy, vector_copy
    jitted = {}

    def get(kind, n, lanes=8, stride=1):
        key = (kind, n, lanes, stride)
        if key not in jitted:
            f = transpose_copy(n) if kind == "t" else vector_copy(n, lanes, stride)
            if kind == "t":
                jitted[key] = njit(lambda d, do, s, so, ld, kc: f(d, do, s, so, ld, kc))
            else:
                jitted[key] = njit(lambda d, do, s, so: f(d, do, s, so))
        twin = python_transpose_copy(n) if kind == "t" else python_vector_copy(n, stride=stride)
        return jitted[key], twin
    return get


@settings(max_examples=25, deadline=None)
@given(width=st.sampled_from([8, 16, 24]), kc=st.integers(0, 41), ld=st.integers(41, 60),
       dst_off=st.integers(0, 9), src_off=st.integers(0, 9))
def test_transpose_copy_matches_its_definition_and_its_python_twin(copies, width, kc, ld, dst_off, src_off):
    src = np.random.default_rng(kc).standard_normal(src_off + width * ld + 8).astype(np.float32).reshape(-1, 1)
    fast, twin = copies("t", width)
    got, want, expected = (np.full(dst_off + width * 48, -7, np.float32) for _ in range(3))
    fast(got, dst_off, src, src_off, ld, kc)
    twin(want, dst_off, src, src_off, ld, kc)
    flat = src.reshape(-1)
    for k in range(kc // 8 * 8):  # only whole blocks of 8 k values; the caller packs the tail
        for t in range(width):
            expected[dst_off + k * width + t] = flat[src_off + t * ld + k]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(want, expected)


@settings(max_examples=15, deadline=None)
@given(count=st.sampled_from([4, 8, 12, 16, 24, 3]), dst_off=st.integers(0, 9), src_off=st.integers(0, 9))
def test_vector_copy_matches_its_definition(copies, count, dst_off, src_off):
    src = np.arange(40, dtype=np.float32).reshape(5, 8)
    fast, twin = copies("v", count)
    for f in (fast, twin):
        dst = np.full(40, -1, np.float32)
        f(dst, dst_off, src, src_off)
        expected = np.full(40, -1, np.float32)
        expected[dst_off:dst_off + count] = src.reshape(-1)[src_off:src_off + count]
        np.testing.assert_array_equal(dst, expected)


@settings(max_examples=30, deadline=None)
@given(count=st.sampled_from([1, 3, 8, 16, 19, 32]), lanes=st.sampled_from([4, 8, 16]),
       stride=st.integers(1, 4), dst_off=st.integers(0, 9), tail=st.integers(0, 3))
def test_strided_vector_copy_matches_its_definition(copies, count, lanes, stride, dst_off, tail):
    # The source run ends `tail` values before the array does: at tail 0 a load past the run
    # would read past the array (its values are never picked; the shuffles are what is checked).
    span = (count - 1) * stride + 1
    src = np.arange(span + 7 + tail, dtype=np.float32)
    src_off = 7
    fast, twin = copies("v", count, lanes, stride)
    for f in (fast, twin):
        dst = np.full(dst_off + count + 5, -1, np.float32)
        f(dst, dst_off, src[:src_off + span + tail], src_off)
        expected = np.full(dst_off + count + 5, -1, np.float32)
        expected[dst_off:dst_off + count] = src[src_off:src_off + span:stride]
        np.testing.assert_array_equal(dst, expected)


@settings(max_examples=40, deadline=None)
@given(count=st.sampled_from([1, 7, 14, 16, 24, 32]), lanes=st.sampled_from([4, 8, 16]),
       stride=st.sampled_from([1, 1, 2, 3, 4]), data=st.data())
def test_masked_vector_copy_copies_only_its_length(count, lanes, stride, data):
    from numba import njit

    from codegen.interpret import python_vector_copy
    from codegen.simd import vector_copy
    length = data.draw(st.integers(0, count))
    copy = vector_copy(count, lanes, stride, masked=True)
    fast = njit(lambda d, do, s, so, n: copy(d, do, s, so, n))
    twin = python_vector_copy(count, lanes, stride, masked=True)
    span = (length - 1) * stride + 1 if length else 0
    src = np.arange(5, 5 + 3 + span, dtype=np.float32)  # the run ends the array
    for f in (fast, twin):
        dst = np.full(count + 6, -1, np.float32)
        f(dst, 2, src, 3, length)
        expected = np.full(count + 6, -1, np.float32)
        expected[2:2 + length] = src[3:3 + span:stride]
        np.testing.assert_array_equal(dst, expected)
