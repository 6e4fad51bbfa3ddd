"""Runs kernel steps over their outer loop's range, split across a pool of spinning threads."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
from numba import literal_unroll, njit

from schedules.options import num_threads, pin_threads

from .spin import (YIELD_EVERY, address_of, call_step, full_fence, load_acquire, pause, store_release,
                   wait_at_least, yield_cpu)
from .step_abi import STEP_OK

_pool = None
_pool_size = 0
_lock = threading.Lock()
_cpu_list = None


def thread_count() -> int:
    n = num_threads()
    if n:
        return max(1, n)
    return _available_cores()


def _available_cores() -> int:
    return len(_cpus()) or os.cpu_count() or 1


def _cpus() -> list:
    """The CPUs this process may run on, where the OS says (Linux). Read once per process:
    the system call cost 1.7 us, a tenth of a small kernel's call."""
    global _cpu_list
    if _cpu_list is None:
        _cpu_list = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return _cpu_list


def _libc_sched_getcpu():
    """libc's sched_getcpu (Linux): the core the calling thread runs on; None elsewhere."""
    import ctypes
    import ctypes.util
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or None).sched_getcpu
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_int, []
    return fn


_current_cpu = _libc_sched_getcpu()


def _set_affinity(thread_id: int, cpus) -> None:
    try:
        os.sched_setaffinity(thread_id, cpus)
    except OSError:
        pass  # a restricted container: the OS places the thread


def _forget_pool_after_fork() -> None:
    # A forked child inherits the pool object but none of its threads; tasks posted to it
    # would wait forever. The child starts a fresh pool on first use instead.
    global _pool, _pool_size, _lock, _cpu_list
    _pool, _pool_size, _lock, _cpu_list = None, 0, threading.Lock(), None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


# Polls (a few tens of ns each) a pool thread keeps spinning after its last task before it
# sleeps, and the caller spends waiting before it polls with short sleeps: back-to-back kernel
# calls (a model, a timing loop) find the threads awake, while an idle process stops burning
# its cores within about a millisecond.
WORKER_SPINS = 40_000
CALLER_SPINS = 40_000

# One worker's control words: the caller's on one 64-byte line, the worker's on the next, so
# neither side's writes evict the line the other polls.
_SLOT = 16
_GO, _ENTRY, _LO, _HI, _BLOCK = 0, 1, 2, 3, 4       # written by the caller
_DONE, _SLEEPING, _FAILED = 8, 9, 10               # written by the worker
# What serve() returns: the worker should sleep, or run a Python task (or stop).
_IDLE, _PYTHON_TASK = 0, 1
# What fork_join() returns: all chunks done, workers asleep (wake them, then join), or the
# caller's spin ran out (keep waiting).
_JOINED, _ASLEEP, _PENDING = 0, 1, 2
_OWN_FAILED = 4  # added to the state when the caller's own chunk failed


class StepFailed(RuntimeError):
    """A compiled step stopped with an exception. Numba's C wrapper prints it (as "Exception
    ignored") and cannot raise it, so this names the failure instead."""


@njit("UniTuple(int64, 2)(int64[::1], int64, int64, int64)", nogil=True, cache=True)
def _serve(ctl, worker, expected, polls):
    """A worker's loop in native code: run every step posted to it until it has spun `polls`
    times with nothing to do, or a Python task (or the stop signal) arrives."""
    base = worker * _SLOT
    while True:
        spins = 0
        generation = load_acquire(ctl, base + _GO)
        while generation < expected:
            spins += 1
            if spins > polls:
                return _IDLE, expected
            if spins % YIELD_EVERY == 0:
                yield_cpu()
            else:
                pause()
            generation = load_acquire(ctl, base + _GO)
        entry = ctl[base + _ENTRY]
        if entry == 0:
            return _PYTHON_TASK, generation
        if call_step(entry, ctl[base + _LO], ctl[base + _HI], ctl[base + _BLOCK]) != STEP_OK:
            ctl[base + _FAILED] = 1
        store_release(ctl, base + _DONE, generation)
        expected = generation + 1


@njit("boolean(int64[::1], int64, int64)", nogil=True, cache=True)
def _announce_sleep(ctl, worker, expected):
    """Mark the worker asleep, then look for work once more: True if work came meanwhile."""
    base = worker * _SLOT
    store_release(ctl, base + _SLEEPING, 1)
    full_fence()
    if load_acquire(ctl, base + _GO) >= expected:
        store_release(ctl, base + _SLEEPING, 0)
        return True
    return False


@njit("boolean(int64[::1], int64, int64)", nogil=True, cache=True)
def _publish(ctl, workers, generation):
    """Post `generation` to the first `workers` workers; True if any of them is asleep."""
    for w in range(workers):
        store_release(ctl, w * _SLOT + _GO, generation)
    full_fence()
    for w in range(workers):
        if load_acquire(ctl, w * _SLOT + _SLEEPING):
            return True
    return False


@njit(nogil=True, cache=True)
def _joined(ctl, workers, generation, polls):
    for w in range(workers):
        if not wait_at_least(ctl, w * _SLOT + _DONE, generation, polls):
            return False
    return True


@njit("boolean(int64[::1], int64)", nogil=True, cache=True)
def _any_failed(ctl, workers):
    """Whether a worker's chunk stopped with an exception since the last look; clears it."""
    failed = False
    for w in range(workers):
        if ctl[w * _SLOT + _FAILED]:
            failed = True
            ctl[w * _SLOT + _FAILED] = 0
    return failed


@njit(nogil=True, cache=True)
def _pack(block, arrays, params):
    i = 0
    for a in literal_unroll(arrays):
        block[i] = address_of(a)
        i += 1
    for j in range(params.size):
        block[i + j] = params[j]
    return address_of(block)


@njit(nogil=True, cache=True)
def _run_serial(entry, lo, hi, block, arrays, params):
    return call_step(entry, lo, hi, _pack(block, arrays, params)) == STEP_OK


@njit("boolean(int64, int64, int64, int64[::1])", nogil=True, cache=True)
def _run_chunk(entry, lo, hi, block):
    return call_step(entry, lo, hi, address_of(block)) == STEP_OK


@njit(nogil=True, cache=True)
def _fork_join(ctl, chunks, generation, entry, extent, block, arrays, params, polls):
    """Post chunks 1.. of [0, extent) to workers, run chunk 0 here, and wait for the rest.
    Returns the join state, plus _OWN_FAILED when chunk 0 stopped with an exception."""
    address = _pack(block, arrays, params)
    workers = chunks - 1
    for w in range(workers):
        base = w * _SLOT
        ctl[base + _ENTRY] = entry
        ctl[base + _LO] = extent * (w + 1) // chunks
        ctl[base + _HI] = extent * (w + 2) // chunks
        ctl[base + _BLOCK] = address
    if _publish(ctl, workers, generation):
        return _ASLEEP
    failed = 0 if call_step(entry, 0, extent // chunks, address) == STEP_OK else _OWN_FAILED
    return failed + (_JOINED if _joined(ctl, workers, generation, polls) else _PENDING)


class _SpinPool:
    """Worker threads that wait for work by spinning on a counter without the GIL.

    A thread pool that sleeps on a queue costs about 80 us per call on this class of machine,
    most of it the kernel waking a sleeping thread. Here the caller posts each worker a
    generation number, runs the first chunk itself, and spins until every worker has published
    that generation as done. Compiled steps are called by address from native code on both
    sides, so no thread needs the GIL between the post and the join (a worker that needed it
    made a two-thread call cost 13-27 us instead of a few).
    """

    def __init__(self, workers: int, cpus: list, steer: list | None = None):
        self.workers = workers
        # Unpinned, the workers are kept off the core the caller runs on: Linux wakes a thread
        # on the core of the thread that woke it, and there caller and worker take turns
        # while the other core idles (conv2d 64x56x56 took 2.1-2.3 ms in two bench runs of
        # three instead of 1.2 ms). They follow the caller when it moves.
        self.steer = steer if steer and len(steer) > 1 and _current_cpu is not None else None
        self.caller_cpu = -1
        self.native_ids = [0] * workers
        self.ctl = np.zeros(workers * _SLOT, np.int64)
        self.tasks = [None] * workers
        self.errors = [None] * workers
        self.cond = threading.Condition()
        self.busy = threading.Lock()
        self.generation = 0
        self.threads = []
        for w in range(workers):
            t = threading.Thread(target=self._work, args=(w, cpus[w] if cpus else None),
                                 name=f"autosched-{w}", daemon=True)
            t.start()
            self.threads.append(t)
        deadline = time.monotonic() + 10.0
        while self.steer is not None and not all(self.native_ids):  # ids first, then steering
            if time.monotonic() > deadline:
                self.steer = None  # a worker that never started: leave placement to the OS
                break
            time.sleep(1e-4)

    @property
    def sleeping(self) -> list:
        return [bool(self.ctl[w * _SLOT + _SLEEPING]) for w in range(self.workers)]

    def _work(self, w: int, cpu) -> None:
        self.native_ids[w] = threading.get_native_id()
        if cpu is not None:
            _set_affinity(0, {cpu})  # 0: the calling thread on Linux
        expected = 1
        while True:
            status, expected = _serve(self.ctl, w, expected, WORKER_SPINS)
            if status == _IDLE:
                with self.cond:
                    if not _announce_sleep(self.ctl, w, expected):
                        while not wait_at_least(self.ctl, w * _SLOT + _GO, expected, 0):
                            self.cond.wait()
                        self.ctl[w * _SLOT + _SLEEPING] = 0
                continue
            generation = expected
            task, self.tasks[w] = self.tasks[w], None
            if task is None:
                return  # the pool was replaced
            try:
                task[0](*task[1])
            except BaseException as exc:  # handed to the caller, which re-raises it
                self.errors[w] = exc
            self.ctl[w * _SLOT + _DONE] = generation
            expected = generation + 1

    def _post_python(self, tasks: list) -> None:
        """Hand workers 0.. these Python tasks (fn, args), under a new generation."""
        self.generation += 1
        for w, task in enumerate(tasks):
            self.tasks[w] = task
            self.ctl[w * _SLOT + _ENTRY] = 0
        if _publish(self.ctl, len(tasks), self.generation):
            self._wake()

    def _keep_off_the_callers_core(self) -> None:
        here = _current_cpu()
        if here != self.caller_cpu:
            others = [c for c in self.steer if c != here] or self.steer
            for thread_id in self.native_ids:
                _set_affinity(thread_id, others)
            self.caller_cpu = here

    def _wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _join(self, workers: int, generation: int) -> None:
        if not _joined(self.ctl, workers, generation, CALLER_SPINS):
            while not _joined(self.ctl, workers, generation, 200):
                time.sleep(20e-6)

    def run_step(self, entry: int, extent: int, chunks: int, block, arrays: tuple, params):
        """Run a compiled step over [0, extent) in `chunks` chunks. None if another thread
        holds the pool (the caller then runs the step alone), else whether every chunk
        finished without an exception."""
        if not self.busy.acquire(blocking=False):
            return None
        try:
            if self.steer is not None:
                self._keep_off_the_callers_core()
            self.generation += 1
            state = _fork_join(self.ctl, chunks, self.generation, entry, extent, block, arrays,
                               params, CALLER_SPINS)
            ok = state < _OWN_FAILED
            state %= _OWN_FAILED
            if state == _ASLEEP:
                self._wake()
                ok = _run_chunk(entry, 0, extent // chunks, block)
            if state != _JOINED:
                self._join(chunks - 1, self.generation)
            return not _any_failed(self.ctl, chunks - 1) and ok
        finally:
            self.busy.release()

    def run(self, calls: list) -> None:
        """Run Python calls: calls[0] on this thread and the others on workers."""
        if not self.busy.acquire(blocking=False):
            for fn, args in calls:  # another thread is using the pool: run serially here
                fn(*args)
            return
        try:
            if self.steer is not None:
                self._keep_off_the_callers_core()
            rest = calls[1:]
            self._post_python(rest)
            error = None
            try:
                calls[0][0](*calls[0][1])
            except BaseException as exc:
                error = exc
            self._join(len(rest), self.generation)
            errors = [e for e in self.errors[:len(rest)] if e is not None]
            self.errors[:len(rest)] = [None] * len(rest)
            if error is not None or errors:
                raise error if error is not None else errors[0]
        finally:
            self.busy.release()

    def close(self) -> None:
        with self.busy:
            self._post_python([None] * self.workers)  # None: the worker stops


def _spin_pool(workers: int) -> _SpinPool:
    """The process's pool, with `workers` threads; each is pinned to its own core (not the
    first allowed one, which the calling thread tends to keep) when there are enough cores.

    Unpinned, Linux places a woken thread on the core of the thread that woke it (wake-affine),
    so both halves of a kernel could share one core for about a millisecond (an exp over
    4096x1000 floats: 2.05 ms unpinned, 1.25 ms pinned, measured with a sleeping pool)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.close()
            cpus = _cpus()
            pin = pin_threads() and workers < len(cpus)
            _pool = _SpinPool(workers, cpus[1:workers + 1] if pin else [], None if pin else cpus)
            _pool_size = workers
        return _pool


def run_step(entry: int, extent: int, arrays: tuple, params, threads: int) -> None:
    """Run the compiled step at address `entry` (codegen/step_abi.py) over [0, extent) on up
    to `threads` threads; `params` is the int64 array of its runtime knob values."""
    block = np.empty(len(arrays) + len(params), np.int64)
    chunks = max(1, min(extent, threads))
    ok = None if chunks == 1 else _spin_pool(threads - 1).run_step(entry, extent, chunks, block, arrays, params)
    if ok is None:
        ok = _run_serial(entry, 0, extent, block, arrays, params)
    if not ok:
        raise StepFailed("a compiled kernel step stopped with an exception (printed above as "
                         "'Exception ignored'); most likely a scratch allocation failed")


def run_parallel(step, extent: int, args: tuple, threads: int, chunks_per_thread: int = 1) -> None:
    """Call the Python callable step(lo, hi, *args) over [0, extent) on the pool's threads
    (a compiled step that releases the GIL overlaps). The calling thread runs the first chunk
    of each round of `threads` chunks."""
    chunks = max(1, min(extent, threads * chunks_per_thread))
    if chunks == 1 or threads == 1:
        step(0, extent, *args)
        return
    bounds = [extent * k // chunks for k in range(chunks + 1)]
    calls = [(step, (bounds[k], bounds[k + 1], *args)) for k in range(chunks)]
    width = min(threads, chunks)
    pool = _spin_pool(threads - 1)
    for first in range(0, chunks, width):
        pool.run(calls[first:first + width])
