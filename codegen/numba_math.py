"""float32 exp, tanh, sigmoid and erf that LLVM can vectorize inside generated loops.

Numba lowers math.exp and friends to scalar libm calls, which stop the loop vectorizer (the
llvmlite wheels carry no vector math library). These versions use only arithmetic, a
round-to-nearest, and one integer-to-float bit cast, so a loop over them becomes SIMD code.
Accuracy, measured against float64 in tests/test_numba_math.py: exp within 3 ulp (relative
error under 1.05 eps for |x| < 20, 2.6 eps near the ends of the float32 range); tanh,
sigmoid and erf within a few 1e-7 relative or absolute.
"""
from __future__ import annotations


import numpy as np
from numba import njit, types
from numba.extending import intrinsic

# Part of every record's codegen version: bump when a change here makes kept records wrong, not
# merely faster or slower. The compiled-kernel cache keys on this file's text instead.
MATH_VERSION = "2"

_F = np.float32
_JIT = dict(inline="always", fastmath=True, error_model="numpy", cache=True)


@intrinsic
def _bits_to_f32(typingctx, bits):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))
    return sig, codegen


@intrinsic
def _round_f32(typingctx, x):
    """x rounded to the nearest integer (ties to even) as a float: llvm.rint, one vector
    instruction (vroundps / vrndscaleps), where np.floor(x + 0.5) is two."""
    if not isinstance(x, types.Float):
        return None
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        from llvmlite import ir
        from numba.core import cgutils
        f32 = ir.FloatType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32, [f32]), "llvm.rint.f32")
        return builder.call(fn, [context.cast(builder, args[0], signature.args[0], types.float32)])
    return sig, codegen


@njit(**_JIT)
def exp_f32(x):
    # Clamped so that 2**n is a normal float: above 88.37 (n = 128) the bit cast would give
    # inf, so exp saturates at 2.4e38 there (float32's largest is 3.4e38).
    return _exp_in_range(min(max(x, _F(-87.3)), _F(88.37)))


@njit(**_JIT)
def exp_nonpos_f32(x):
    # exp of an argument known to be at most 0 (x - max over x's row): no upper clamp, one
    # vector operation in about 18 less, 3.5-5% of a 4096x1000 softmax (A/B in one process).
    return _exp_in_range(max(x, _F(-87.3)))


@njit(**_JIT)
def _exp_in_range(x):
    # exp(x) = 2**n * exp(r), n = round(x / ln2), r = x - n*ln2 in [-ln2/2, ln2/2], where exp(r)
    # is a degree-6 polynomial fitted for least maximum relative error (3e-9, 0.05 ulp).
    # Fast-math folds the usual two-constant ln2 split into one FMA; that costs accuracy
    # only for |x| > 20 (up to 2.6 eps at |x| = 87) and saves a vector FMA per element,
    # 5-7% of a 4096x1000 softmax. Degree 6 instead of Cephes' 7 saves another.
    n = _round_f32(x * _F(1.4426950408889634))
    r = x - n * _F(0.693359375) - n * _F(-2.12194440e-4)
    p = _F(1.3814613e-3)
    p = p * r + _F(8.36871e-3)
    p = p * r + _F(4.166839e-2)
    p = p * r + _F(1.6666521e-1)
    p = p * r + _F(4.9999994e-1)
    p = p * r + _F(1.0)
    p = p * r + _F(1.0)
    return p * _bits_to_f32(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))


@njit(**_JIT)
def tanh_f32(x):
    a = abs(x)
    x2 = x * x
    # Near zero 1 - 2/(e^2x + 1) cancels, so a Taylor polynomial takes over below 0.25.
    small = x * (_F(1.0) + x2 * (_F(-1.0 / 3.0) + x2 * (_F(2.0 / 15.0) + x2 * (
        _F(-17.0 / 315.0) + x2 * _F(62.0 / 2835.0)))))
    big = _F(1.0) - _F(2.0) / (exp_f32(_F(2.0) * a) + _F(1.0))
    return small if a < _F(0.25) else (big if x > _F(0.0) else -big)


@njit(**_JIT)
def sigmoid_f32(x):
    return _F(1.0) / (_F(1.0) + exp_f32(-x))


@njit(**_JIT)
def erf_f32(x):
    a = abs(x)
    x2 = x * x
    # Maclaurin series below 0.5 keeps relative accuracy near zero; Abramowitz & Stegun
    # 7.1.26 (absolute error 1.5e-7) above.
    small = x * _F(1.1283791670955126) * (_F(1.0) + x2 * (_F(-1.0 / 3.0) + x2 * (_F(0.1) + x2 * (
        _F(-1.0 / 42.0) + x2 * (_F(1.0 / 216.0) + x2 * _F(-1.0 / 1320.0))))))
    t = _F(1.0) / (_F(1.0) + _F(0.3275911) * a)
    poly = t * (_F(0.254829592) + t * (_F(-0.284496736) + t * (_F(1.421413741) + t * (
        _F(-1.453152027) + t * _F(1.061405429)))))
    big = _F(1.0) - poly * exp_nonpos_f32(-x2)
    return small if a < _F(0.5) else (big if x > _F(0.0) else -big)


FAST_FLOAT32 = {"exp": "exp_f32", "exp_nonpos": "exp_nonpos_f32", "tanh": "tanh_f32",
                "sigmoid": "sigmoid_f32", "erf": "erf_f32"}


def _fast_min_max(llvm_name: str, dtype):
    """max/min of two floats as llvm.maxnum/minnum with fast-math flags. Numba's max() is a
    compare and a select without flags, which the loop vectorizer will not turn into a
    vector reduction: a 4096x1000 row max took 0.82 ms that way and 0.27 ms this way.
    NaN handling follows maxnum (the other operand wins), as fastmath already permits."""
    from llvmlite import ir
    from numba.core import cgutils

    @intrinsic
    def fast_min_max(typingctx, a, b):
        if not all(isinstance(t, (types.Float, types.Integer)) for t in (a, b)):
            return None
        sig = dtype(a, b)

        def codegen(context, builder, signature, args):
            lltype = context.get_value_type(dtype)
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(lltype, [lltype] * 2),
                                                f"{llvm_name}.{'f32' if dtype == types.float32 else 'f64'}")
            values = [context.cast(builder, v, t, dtype) for v, t in zip(args, signature.args)]
            return builder.call(fn, values, fastmath=("fast",))
        return sig, codegen
    return fast_min_max


_maxnum_f32, _minnum_f32 = _fast_min_max("llvm.maxnum", types.float32), _fast_min_max("llvm.minnum", types.float32)
_maxnum_f64, _minnum_f64 = _fast_min_max("llvm.maxnum", types.float64), _fast_min_max("llvm.minnum", types.float64)


# Jitted wrappers: inlined into kernels, and callable from Python for interpreted kernels.
@njit(**_JIT)
def fmax_f32(a, b):
    return _maxnum_f32(a, b)


@njit(**_JIT)
def fmin_f32(a, b):
    return _minnum_f32(a, b)


@njit(**_JIT)
def fmax_f64(a, b):
    return _maxnum_f64(a, b)


@njit(**_JIT)
def fmin_f64(a, b):
    return _minnum_f64(a, b)
# (op, dtype) -> the function generated fast-math code calls
FAST_MIN_MAX = {("maximum", "float32"): "fmax_f32", ("minimum", "float32"): "fmin_f32",
                ("maximum", "float64"): "fmax_f64", ("minimum", "float64"): "fmin_f64"}
