"""Compiled-kernel cache: in memory per process, and on disk through Numba's own cache."""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
import threading
import time
from pathlib import Path

from schedules.options import options

# Part of every cache key: bump when generated code changes meaning for the same source.
CODEGEN_VERSION = "numba-1"

_memory: dict = {}
_lock = threading.Lock()


def cache_key(source: str, target_key: str) -> str:
    import numba
    import numpy
    material = "\n".join([CODEGEN_VERSION, _inlined_source_digest(), numba.__version__, numpy.__version__,
                          sys.version.split()[0], target_key, source])
    return hashlib.sha256(material.encode()).hexdigest()[:24]


@functools.lru_cache(maxsize=1)
def _inlined_source_digest() -> str:
    """Generated kernels inline numba_math's functions and the intrinsics of simd (with the
    simd_finish code they emit) and winograd_simd (with its matrices), and Numba's disk
    cache checks only the kernel file's own timestamp: any edit there must give every
    kernel a new key."""
    from . import numba_math, simd, simd_finish, winograd_simd
    from schedules import winograd_matrices
    digest = hashlib.sha256()
    for module in (numba_math, simd, simd_finish, winograd_simd, winograd_matrices):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def compiled(source: str, target_key: str):
    """(STEPS, seconds spent, cache key, origin): origin is 'memory', 'disk' or 'compiled'."""
    key = cache_key(source, target_key)
    with _lock:
        fn = _memory.get(key)
    if fn is not None:
        return fn, 0.0, key, "memory"
    start = time.perf_counter()
    opts = options()
    if opts.disk_cache:
        fn = _load_from_disk(source, key, opts.cache_dir / "kernels")
    else:
        namespace: dict = {"__name__": f"autosched_kernel_{key}"}
        exec(compile(source.replace("cache=CACHE", "cache=False"), f"<autosched {key}>", "exec"), namespace)
        fn = namespace["STEPS"]
    seconds = time.perf_counter() - start
    with _lock:
        _memory.setdefault(key, fn)
    return fn, seconds, key, _origin(fn) if opts.disk_cache else "compiled"


def _origin(steps) -> str:
    """'disk' when Numba loaded every step from its cache, else 'compiled'."""
    return "disk" if all(step.cache_hits for step, _ in steps) else "compiled"


def _load_from_disk(source: str, key: str, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"k_{key}.py"
    if not path.exists():
        # Write-then-rename: Numba's disk cache is keyed on the file's timestamp, so the file
        # is created once and never rewritten, even when several processes race to build it.
        tmp = folder / f".k_{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(source.replace("cache=CACHE", "cache=True"))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    name = f"autosched_kernel_{key}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # Numba's cached environments re-import the defining module by name on load.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module.STEPS


def clear_memory() -> None:
    with _lock:
        _memory.clear()
