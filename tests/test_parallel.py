"""The spinning thread pool that runs parallel kernel steps: results, errors, sleeping workers,
pools of another size, concurrent callers and forked children."""
import os
import threading
import time

import numpy as np
import pytest

from codegen import parallel
from codegen.parallel import run_parallel
from codegen.spin import wait_at_least


def _within(seconds, fn):
    """Run fn on a helper thread; fail (instead of hanging the suite) if it does not finish."""
    box, errors = [], []

    def target():
        try:
            box.append(fn())
        except BaseException as exc:
            errors.append(exc)
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"the pool did not finish within {seconds} s"
    if errors:
        raise errors[0]
    return box[0] if box else None


def _run(step, extent, args, threads, chunks_per_thread=1):
    _within(30, lambda: run_parallel(step, extent, args, threads, chunks_per_thread))


def _recording_step():
    seen, lock = [], threading.Lock()

    def step(lo, hi, out):
        with lock:
            seen.extend(range(lo, hi))
        out[lo:hi] += 1
    return seen, step


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_every_index_runs_once_for_any_pool_size(threads):
    seen, step = _recording_step()
    out = np.zeros(37, np.int64)
    _run(step, 37, (out,), threads, chunks_per_thread=2)
    assert sorted(seen) == list(range(37)) and (out == 1).all()


def test_workers_that_fell_asleep_wake_for_the_next_call():
    out = np.zeros(8, np.int64)
    _, step = _recording_step()

    def calls():
        for _ in range(3):
            run_parallel(step, 8, (out,), 2)
            time.sleep(0.05)  # far beyond the workers' spinning time
    _within(20, calls)
    assert (out == 3).all()
    assert any(parallel._pool.sleeping)


def test_an_error_in_a_worker_chunk_reaches_the_caller_and_the_pool_goes_on():
    def step(lo, hi):
        if lo > 0:
            raise ZeroDivisionError(f"chunk {lo}")

    with pytest.raises(ZeroDivisionError, match="chunk"):
        _run(step, 2, (), 2)
    seen, ok = _recording_step()
    out = np.zeros(4, np.int64)
    _run(ok, 4, (out,), 2)
    assert (out == 1).all()


def test_concurrent_callers_each_get_their_whole_range():
    outs = [np.zeros(1000, np.int64) for _ in range(4)]

    def step(lo, hi, out):
        out[lo:hi] += 1

    def caller(out):
        for _ in range(50):
            run_parallel(step, 1000, (out,), 2)

    threads = [threading.Thread(target=caller, args=(o,), daemon=True) for o in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert all((o == 50).all() for o in outs)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_working_pool_of_its_own():
    out = np.zeros(6, np.int64)
    _, step = _recording_step()
    _run(step, 6, (out,), 2)  # the parent's pool exists before the fork
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if its own pool ran every chunk
        try:
            child = np.zeros(6, np.int64)
            run_parallel(step, 6, (child,), 2)
            os._exit(0 if (child == 1).all() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_spin_wait_sees_a_counter_reach_its_value_and_gives_up_otherwise():
    counters = np.zeros(16, np.int64)
    assert not wait_at_least(counters, 8, 1, 1000)
    counters[8] = 5
    assert wait_at_least(counters, 8, 5, 1) and not wait_at_least(counters, 8, 6, 10)


def test_every_spin_offers_its_core_to_other_threads():
    # A caller spinning on the core of the worker it waits for (or the reverse) must let that
    # worker run: each spin loop calls sched_yield between polls.
    from numba import njit
    for fn in (wait_at_least, parallel._serve):  # compiled again: cached code cannot be inspected
        fresh = njit(fn.nopython_signatures[0], nogil=True)(fn.py_func)
        [ir] = fresh.inspect_llvm().values()
        assert "call i32 @sched_yield()" in ir, fn.py_func.__name__


def test_kernel_worker_threads_are_not_pinned_unless_asked(monkeypatch):
    from schedules.options import pin_threads
    monkeypatch.delenv("AUTOSCHED_PIN_THREADS", raising=False)
    assert pin_threads() is False
    monkeypatch.setenv("AUTOSCHED_PIN_THREADS", "1")
    assert pin_threads() is True


_SHARED_CORE_PROBE = """
import os
import numpy as np
from codegen.parallel import run_parallel
run_parallel(lambda lo, hi: None, 2, (), 2)  # the pool starts, its worker pinned to core %d
os.sched_setaffinity(0, {%d})  # then the caller moves onto that core
out = np.zeros(64, np.int64)
def step(lo, hi, out):
    out[lo:hi] += 1
for _ in range(200):
    run_parallel(step, 64, (out,), 2)
print(int(out.min()), int(out.max()))
"""


_FOLLOW_PROBE = """
import json, os
from codegen import parallel
cpus = sorted(os.sched_getaffinity(0))
seen = []
parallel.run_parallel(lambda lo, hi: None, 2, (), 2)  # the pool starts with the process's cores
for core in (cpus[0], cpus[-1], cpus[0]):
    os.sched_setaffinity(0, {core})  # the caller moves
    parallel.run_parallel(lambda lo, hi: None, 2, (), 2)
    [worker] = parallel._pool.native_ids
    seen.append(sorted(os.sched_getaffinity(worker)))
print(json.dumps([cpus, seen]))
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two cores and Linux affinity")
def test_unpinned_workers_follow_the_caller_off_its_core():
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "AUTOSCHED_PIN_THREADS"}
    out = subprocess.run([sys.executable, "-c", _FOLLOW_PROBE], env=env, capture_output=True, text=True,
                         check=True, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    import json
    cpus, seen = json.loads(out.stdout)
    assert seen == [cpus[1:], cpus[:-1], cpus[1:]]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two cores and Linux affinity")
def test_a_caller_sharing_the_pinned_workers_core_still_gets_every_chunk_done():
    import subprocess
    import sys
    cpus = sorted(os.sched_getaffinity(0))
    env = dict(os.environ, AUTOSCHED_PIN_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _SHARED_CORE_PROBE % (cpus[1], cpus[1])], env=env, capture_output=True,
                         text=True, check=True, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.split() == ["200", "200"]


# Compiled steps, as generated kernels have them: called by address from native code.

from hypothesis import given, settings, strategies as st  # noqa: E402
from numba import cfunc  # noqa: E402

from codegen.parallel import StepFailed, run_step  # noqa: E402
from codegen.step_abi import STEP_SIGNATURE, array_at  # noqa: E402


@cfunc(STEP_SIGNATURE, cache=False)
def _count_step(lo, hi, args):
    """out[i] += scale * i + shift for i in [lo, hi): params scale, shift after two arrays."""
    n = args[2]
    out = array_at(args[0], (n,), np.int64)
    calls = array_at(args[1], (1,), np.int64)
    for i in range(lo, hi):
        out[i] += args[3] * i + args[4]
    calls[0] += 0  # touched, so a wrong address in the block faults the test instead of passing
    return 1


def _run_count(extent, threads, scale=3, shift=5):
    out, calls = np.zeros(extent, np.int64), np.zeros(1, np.int64)
    params = np.array([extent, scale, shift], np.int64)
    _within(30, lambda: run_step(_count_step.address, extent, (out, calls), params, threads))
    return out


@settings(max_examples=40, deadline=None)
@given(extent=st.integers(1, 200), threads=st.integers(1, 4))
def test_a_compiled_step_runs_every_index_once_with_its_knob_values(extent, threads):
    assert (_run_count(extent, threads) == 3 * np.arange(extent) + 5).all()


def test_workers_asleep_wake_for_a_compiled_step():
    for _ in range(3):
        assert (_run_count(64, 2, 1, 0) == np.arange(64)).all()
        time.sleep(0.05)  # far beyond the workers' spinning time
        assert all(parallel._pool.sleeping)


def test_compiled_steps_and_python_tasks_share_the_pool():
    seen, step = _recording_step()
    out = np.zeros(10, np.int64)
    for _ in range(20):
        assert (_run_count(10, 2, 0, 1) == 1).all()
        _run(step, 10, (out,), 2)
    assert (out == 20).all() and sorted(seen) == sorted(list(range(10)) * 20)


def test_concurrent_callers_of_compiled_steps_each_get_their_whole_range():
    results = []

    def caller():
        for _ in range(50):
            results.append((_run_count(1000, 2, 2, 1) == 2 * np.arange(1000) + 1).all())

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert len(results) == 200 and all(results)


@cfunc(STEP_SIGNATURE, cache=False)
def _allocating_step(lo, hi, args):
    """Chunks from position args[2] on allocate args[1] values (too many: an exception)."""
    scratch = np.empty(args[1] if lo >= args[2] else 4, np.float32)
    scratch[0] = 1.0
    array_at(args[0], (1,), np.float32)[0] = scratch[0]
    return 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # Numba prints it
@pytest.mark.parametrize("threads,failing_from", [(1, 0), (2, 0), (2, 1)])
def test_an_exception_inside_a_compiled_step_reaches_the_caller(threads, failing_from):
    """On the caller's own chunk, on a worker's chunk only, and alone on one thread."""
    out = np.zeros(1, np.float32)
    huge = np.array([1 << 60, failing_from], np.int64)
    with pytest.raises(StepFailed, match="stopped with an exception"):
        _within(30, lambda: run_step(_allocating_step.address, 2, (out,), huge, threads))
    run_step(_allocating_step.address, 2, (out,), np.array([4, 0], np.int64), threads)  # the pool goes on
    assert out[0] == 1.0


@cfunc(STEP_SIGNATURE, cache=False)
def _failing_step(lo, hi, args):
    scratch = np.empty(1 << 60, np.float32)
    scratch[0] = 1.0
    return 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_kernel_whose_step_fails_names_the_operator_and_config():
    from codegen import build
    from schedules import ops
    op = ops.softmax(64, 64)
    kernel = build(op, "cpu")
    kernel.__dict__["_entries"] = (_failing_step.address,) * len(kernel.steps)
    with pytest.raises(StepFailed, match=r"operator softmax \(softmax-\w+\) with config \{.*\}: step 0 of"):
        kernel(*op.random_inputs(0))
