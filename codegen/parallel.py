"""Runs the parallel steps of a kernel: the outer loop's range split across a thread pool."""
from __future__ import annotations

import os
import threading
import time

from schedules.options import num_threads, pin_threads

_pool = None
_pool_size = 0
_lock = threading.Lock()


def thread_count() -> int:
    n = num_threads()
    if n:
        return max(1, n)
    return _available_cores()


def _available_cores() -> int:
    return len(_cpus()) or os.cpu_count() or 1


def _cpus() -> list:
    """The CPUs this process may run on, where the OS says (Linux)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _forget_pool_after_fork() -> None:
    # A forked child inherits the pool object but none of its threads; tasks submitted to it
    # would wait forever. The child starts a fresh pool on first use instead.
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


# Polls (about 27 ns each on a Zen3 core) a pool thread keeps spinning after its last task
# before it sleeps, and the caller spends waiting before it polls with short sleeps: back-to-
# back kernel calls (a model, a timing loop) find the threads awake, while an idle process
# stops burning its cores within about a millisecond.
WORKER_SPINS = 40_000
CALLER_SPINS = 40_000
_STRIDE = 8  # int64 counters one 64-byte line apart, so threads never share a cache line


class _SpinPool:
    """Worker threads that wait for work by spinning on a counter without the GIL.

    A thread pool that sleeps on a queue costs about 80 us per call on this class of machine
    (measured: two no-op tasks round-trip in 82 us median, 130 us unpinned), most of it the
    kernel waking a sleeping thread; a 384x14x14 depthwise convolution took as long on two
    threads as on one. Here the caller posts each worker a generation number, runs the first
    chunk itself, and spins until every worker has published that generation as done.
    """

    def __init__(self, workers: int, cpus: list):
        import numpy as np
        from .spin import wait_at_least
        self.workers = workers
        self.wait = wait_at_least
        self.go = np.zeros(workers * _STRIDE, np.int64)
        self.done = np.zeros(workers * _STRIDE, np.int64)
        self.tasks = [None] * workers
        self.errors = [None] * workers
        self.sleeping = [False] * workers
        self.cond = threading.Condition()
        self.busy = threading.Lock()
        self.generation = 0
        self.threads = []
        for w in range(workers):
            t = threading.Thread(target=self._work, args=(w, cpus[w] if cpus else None),
                                 name=f"autosched-{w}", daemon=True)
            t.start()
            self.threads.append(t)

    def _work(self, w: int, cpu) -> None:
        if cpu is not None:
            try:
                os.sched_setaffinity(0, {cpu})  # 0: the calling thread on Linux
            except OSError:
                pass  # a restricted container: run unpinned
        slot, expected = w * _STRIDE, 1
        while True:
            if not self.wait(self.go, slot, expected, WORKER_SPINS):
                with self.cond:
                    self.sleeping[w] = True
                    while self.go[slot] < expected:
                        self.cond.wait()
                    self.sleeping[w] = False
            generation = int(self.go[slot])
            task, self.tasks[w] = self.tasks[w], None
            if task is None:
                return  # the pool was replaced
            try:
                task[0](*task[1])
            except BaseException as exc:  # handed to the caller, which re-raises it
                self.errors[w] = exc
            self.done[slot] = generation
            expected = generation + 1

    def _post(self, tasks) -> int:
        self.generation += 1
        for w, task in enumerate(tasks):
            self.tasks[w] = task
            self.go[w * _STRIDE] = self.generation
        with self.cond:
            if any(self.sleeping[:len(tasks)]):
                self.cond.notify_all()
        return self.generation

    def run(self, calls: list) -> None:
        """Run calls[0] on this thread and the others on workers; returns when all are done."""
        if not self.busy.acquire(blocking=False):
            for fn, args in calls:  # another thread is using the pool: run serially here
                fn(*args)
            return
        try:
            rest = calls[1:]
            generation = self._post(rest)
            error = None
            try:
                calls[0][0](*calls[0][1])
            except BaseException as exc:
                error = exc
            for w in range(len(rest)):
                slot = w * _STRIDE
                if not self.wait(self.done, slot, generation, CALLER_SPINS):
                    while not self.wait(self.done, slot, generation, 200):
                        time.sleep(20e-6)
            errors = [e for e in self.errors[:len(rest)] if e is not None]
            self.errors[:len(rest)] = [None] * len(rest)
            if error is not None or errors:
                raise error if error is not None else errors[0]
        finally:
            self.busy.release()

    def close(self) -> None:
        with self.busy:
            self._post([None] * self.workers)


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
            _pool = _SpinPool(workers, cpus[1:workers + 1] if pin else [])
            _pool_size = workers
        return _pool


def run_parallel(step, extent: int, args: tuple, threads: int, chunks_per_thread: int = 1) -> None:
    """Call step(lo, hi, *args) over [0, extent); the steps release the GIL, so threads overlap.
    The calling thread runs the first chunk of each round of `threads` chunks."""
    chunks = max(1, min(extent, threads * chunks_per_thread))
    if chunks == 1 or threads == 1:
        step(0, extent, *args)
        return
    bounds = [extent * k // chunks for k in range(chunks + 1)]
    calls = [(step, (bounds[k], bounds[k + 1], *args)) for k in range(chunks)]
    width = min(threads, chunks)
    pool = _spin_pool(width - 1)
    for first in range(0, chunks, width):
        pool.run(calls[first:first + width])
