"""Worker processes with per-task timeouts: a hung or crashed task costs only its worker."""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import sys
import time
import traceback


class WorkerDied(Exception):
    """The worker process exited (crashed) while running a task."""


class WorkerTimeout(Exception):
    """The task ran past its timeout; the worker was killed."""


def _context(start_method: str | None = None):
    # fork keeps templates registered in the parent visible to workers, and starts in
    # milliseconds; the parent never runs kernels, so no thread pool is forked. CUDA cannot
    # be used in a child forked after the parent touched the driver, so GPU runners spawn.
    if start_method is not None:
        return mp.get_context(start_method)
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


@contextlib.contextmanager
def _main_hidden(hide: bool):
    """A spawned child re-runs the parent's main script unless it is guarded by
    `if __name__ == "__main__"`; a user's tuning script rarely is, and would then tune again
    inside the worker. The worker needs nothing from it, so the child is not told of it."""
    main = sys.modules.get("__main__")
    if not hide or main is None:
        yield
        return
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    for k in saved:
        setattr(main, k, None) if k == "__spec__" else delattr(main, k)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


def _serve(conn, handler, parent_end=None):
    import signal
    if parent_end is not None:
        # Forked children inherit the parent's end too; closing it means a dead tuner gives
        # us end-of-file instead of an orphaned worker waiting forever.
        parent_end.close()
    # Ctrl-C is the parent's to handle: it lets in-flight candidates finish, then stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            conn.send(("ok", handler(task)))
        except BaseException as exc:  # report every failure; the parent decides what it means
            conn.send(("error", (type(exc).__name__, str(exc), traceback.format_exc(limit=6))))


class Worker:
    """One long-lived process running `handler(task)` for each task sent to it."""

    def __init__(self, handler, start_method: str | None = None):
        self.handler = handler
        self.start_method = start_method
        self.process = None
        self.conn = None

    def _start(self):
        ctx = _context(self.start_method)
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, self.handler, parent), daemon=True)
        with _main_hidden(ctx.get_start_method() != "fork"):
            self.process.start()
        child.close()
        self.conn = parent

    def submit(self, task) -> None:
        if self.process is None or not self.process.is_alive():
            self._start()
        self.conn.send(task)

    def poll(self, wait: float = 0.0):
        """The outcome if the task has finished, else None; raises WorkerDied if it crashed."""
        try:
            ready = self.conn.poll(wait)
        except (EOFError, OSError):
            ready = True
        if ready:
            try:
                return self.conn.recv()
            except (EOFError, OSError):
                pass
        elif self.process.is_alive():
            return None
        code = self.process.exitcode if self.process else None
        self.kill()
        raise WorkerDied(f"worker process exited with code {code}")

    def result(self, timeout: float):
        """('ok', value) or ('error', (type, message, traceback)); raises on timeout or death."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerTimeout(f"killed after {timeout:.1f} s without a result")
            outcome = self.poll(min(remaining, 0.2))
            if outcome is not None:
                return outcome

    def run(self, task, timeout: float):
        self.submit(task)
        return self.result(timeout)

    def kill(self) -> None:
        if self.process is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(timeout=5)
        if self.conn is not None:
            self.conn.close()
        self.process = None
        self.conn = None

    def close(self) -> None:
        if self.process is not None and self.process.is_alive():
            try:
                self.conn.send(None)
                self.process.join(timeout=2)
            except (OSError, BrokenPipeError):
                pass
        self.kill()


class WorkerPool:
    """Several workers; map() runs tasks concurrently, one per worker, each with a timeout."""

    def __init__(self, handler, size: int):
        self.workers = [Worker(handler) for _ in range(max(1, size))]

    def map(self, tasks, timeout: float) -> list:
        """Outcomes in task order: ('ok', value), ('error', info), ('timeout', msg) or ('died', msg)."""
        outcomes = [None] * len(tasks)
        pending = list(range(len(tasks)))
        busy = {}  # worker index -> (task index, deadline)
        while pending or busy:
            for w, worker in enumerate(self.workers):
                if w not in busy and pending:
                    t = pending.pop(0)
                    worker.submit(tasks[t])
                    busy[w] = (t, time.monotonic() + timeout)
            progressed = False
            for w, (t, deadline) in list(busy.items()):
                worker = self.workers[w]
                try:
                    outcome = worker.poll()
                except WorkerDied as exc:
                    outcome = ("died", str(exc))
                if outcome is None:
                    if time.monotonic() < deadline:
                        continue
                    worker.kill()
                    outcome = ("timeout", f"killed after {timeout:.1f} s without a result")
                outcomes[t] = outcome
                del busy[w]
                progressed = True
            if not progressed and busy:
                time.sleep(0.005)
        return outcomes

    def close(self) -> None:
        for w in self.workers:
            w.close()
