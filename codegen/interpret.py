"""Runs generated kernel source in the Python interpreter, without Numba, for fast checks.

The source is exactly what Numba would compile; only the decorator becomes a no-op. Tests use
it to check the index math of many sampled configs in milliseconds instead of compiling each.
"""
from __future__ import annotations


def python_njit(*args, **kwargs):
    def keep(fn):
        return fn
    return keep


def interpreted_steps(source: str) -> list:
    namespace: dict = {"__name__": "autosched_interpreted"}
    code = source.replace("from numba import njit", "from codegen.interpret import python_njit as njit")
    exec(compile(code.replace("cache=CACHE", "cache=False"), "<autosched interpreted>", "exec"), namespace)
    return namespace["STEPS"]
