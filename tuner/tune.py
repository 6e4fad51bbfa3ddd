"""tune(): propose, measure, record and learn until the trial budget of a workload is spent."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from schedules import Config, as_target

from .confirm import CONFIRM_ROUNDS, CONFIRM_TOP, confirm_best
from .measure import LocalMeasurer, MeasureOptions, MeasureResult
from .polish import POLISH_TRIALS, polish_extras, runtime_neighbor_proposals
from .records import Database, TuningRecord
from .search import OptunaStrategy, Proposal

STRATEGIES = ("xgb", "tpe", "random")
from .versions import codegen_version

log = logging.getLogger("autosched.tune")

# Consecutive duplicate proposals after which a strategy is considered stuck and the space is
# sampled uniformly instead (TPE keeps proposing its favourite points once it has converged).
MAX_DUPLICATE_PROPOSALS = 64


class Measurer(Protocol):
    """Times candidates. One that sets `deterministic = True` (it replays stored or computed
    costs) is never asked to re-time the fastest records, which would tell nothing new."""

    def measure(self, op, target, configs) -> list: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Trial:
    config: Config
    seconds: float | None
    error: str | None
    error_message: str = ""
    compile_seconds: float = 0.0


@dataclass(frozen=True)
class TuneResult:
    op_name: str
    workload_key: str
    target_key: str
    best_config: Config | None
    best_seconds: float | None
    history: tuple            # Trials measured by this call, in order
    total_measured: int       # distinct configs measured for (workload, target, space version)
    interrupted: bool = False
    # The best record's median re-timing beside the other fastest ones (tuner.confirm), and
    # how many records that comparison had; None and 0 when it was not compared.
    confirmed_seconds: float | None = None
    confirmed_among: int = 0


def open_database(database) -> Database:
    if isinstance(database, Database):
        return database
    if database is None:
        raise ValueError("tune needs a database: Database('sqlite:///tuning.db') or a URL/path")
    return Database(str(database))


def tune(op, target="cpu", database=None, trials: int = 64, seed: int = 0, strategy: str = "xgb",
         timeout: float | None = None, batch_size: int | None = None,
         measurer: Measurer | None = None, options: MeasureOptions | None = None,
         progress: bool = False, callbacks: tuple = (), transfer: bool = True,
         confirm: int = CONFIRM_TOP, confirm_rounds: int = CONFIRM_ROUNDS,
         polish: int = POLISH_TRIALS) -> TuneResult:
    """Measure up to `trials` distinct configs in total for (op, target), resuming earlier runs.

    The budget counts every config already recorded for this space version, so rerunning a
    killed job continues where it stopped and never measures a config twice. `timeout` caps
    this call's wall time in seconds. Callbacks get (op, Trial) after each measurement.
    strategy: "xgb" (cost-model guided, the default), "tpe" or "random". With transfer=True
    the "xgb" model also learns from records of other workloads on the same target.

    The last min(polish, trials // 4) trials of the budget measure the runtime neighbours of
    the best record (Space.runtime_neighbors), one knob at a time, re-centred on the best
    after every batch; the search fills whatever they leave.

    At the end, the `confirm` fastest records (and the default schedule's, when close) are
    timed again in `confirm_rounds` interleaved rounds, and the best is the one with the
    fastest median there (tuner.confirm). These re-timings are stored, do not count as trials,
    and are skipped with confirm=0, with a measurer marked `deterministic`, or when the
    newest confirmation already compared the same records. They run after `timeout` too: at
    most (confirm + 1) * confirm_rounds more measurements.
    """
    if trials < 0:
        raise ValueError(f"trials must be >= 0, got {trials}")
    if confirm < 0 or confirm_rounds < 0 or polish < 0:
        raise ValueError(f"confirm, confirm_rounds and polish must be >= 0, got {confirm}, {confirm_rounds} "
                         f"and {polish}")
    tgt = as_target(target)
    if tgt.kind == "cuda" and measurer is None:
        from codegen.cuda_kernel import cupy_module
        cupy_module()  # no GPU: say so now, not as one runtime error per candidate
    db = open_database(database)
    space = op.space(tgt)
    measured = {space.canonical(c): None for c in db.measured_configs(op, tgt, space.version)}
    own_measurer = measurer is None
    measurer = measurer or LocalMeasurer(options)
    searcher = _strategy(strategy, space, seed, db, op, tgt, transfer)
    searcher_name = getattr(searcher, "name", type(searcher).__name__)
    previous = [(r.config, r.seconds) for r in db.records(op, tgt) if r.space_version == space.version]
    if hasattr(searcher, "warm_start"):
        searcher.warm_start(previous)
    run_id = db.start_run(op, tgt, searcher_name, seed)
    seeds = _plain_best(db, op, tgt, space)
    batch = batch_size or getattr(measurer, "parallelism", 1)
    deadline = None if timeout is None else time.monotonic() + timeout
    polish_from = trials - min(polish, trials // 4)
    rng = np.random.default_rng(seed + 7919)
    history, interrupted = [], False
    centres, polished = [], []  # the polish's centres and its measured neighbours (Trials)
    bar = _progress(progress, trials, len(measured), op)
    stop = _StopOnCtrlC()
    try:
        while len(measured) < trials and (deadline is None or time.monotonic() < deadline):
            if stop.requested:
                raise KeyboardInterrupt
            for c in db.measured_configs(op, tgt, space.version):  # other jobs may share the db
                measured.setdefault(space.canonical(c), None)
            if len(measured) >= trials:
                break
            want = min(batch, trials - len(measured))
            first = []
            default = space.default()
            if default not in measured:  # the heuristic schedule is the floor any tuning must beat
                first = [Proposal(default, None)]
                measured[default] = None
            while seeds and len(first) < want:
                config = seeds.pop(0)
                if config not in measured:
                    first.append(Proposal(config, None))
                    measured[config] = None
            polishing = []
            if len(measured) >= polish_from:
                centre, polishing = runtime_neighbor_proposals(db, op, tgt, space, measured, want - len(first))
                if centre is not None:
                    centres.append(centre)
            proposals = first + polishing + _unique_proposals(searcher, space, measured,
                                                              want - len(first) - len(polishing), rng)
            if not proposals:
                log.info("%s: the space has no unmeasured configs left", op.name)
                break
            results = measurer.measure(op, tgt, [p.config for p in proposals])
            for p, r in zip(proposals, results):
                trial = _record(db, op, tgt, space, p, r, run_id)
                measured[p.config] = None
                searcher.observe(p, trial.seconds, trial.error)
                history.append(trial)
                if any(p is q for q in polishing):
                    polished.append(trial)
                for cb in callbacks:
                    cb(op, trial)
                if bar is not None:
                    bar.update(1)
                    best = min((t.seconds for t in history if t.seconds is not None), default=None)
                    if best is not None:
                        bar.set_postfix_str(f"best {op.flops() / best / 1e9:.1f} GFLOPS")
        if confirm and not getattr(measurer, "deterministic", False):
            def on_round(done, total):
                if bar is not None:
                    bar.set_postfix_str(f"re-timing the fastest: round {done}/{total}")
            confirm_best(db, op, tgt, space, measurer, run_id, confirm, confirm_rounds,
                         stop=lambda: stop.requested, on_round=on_round,
                         also=polish_extras(centres, polished) if polished else ())
            if stop.requested:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
        log.warning("%s: interrupted; %d records of this run are stored", op.name, len(history))
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
        if own_measurer:
            measurer.close()
        if hasattr(searcher, "close"):
            searcher.close()
        from .build_best import clear_cache
        clear_cache()  # new records may beat what build_best remembered
    best = db.best(op, tgt, space.version, codegen_version())
    among = len(db.newest_confirmation(op, tgt, space.version, codegen_version())) \
        if best is not None and best.confirmed_seconds is not None else 0
    return TuneResult(op.name, op.workload_key, tgt.key, best.config if best else None,
                      best.seconds if best else None, tuple(history), len(measured), interrupted,
                      best.confirmed_seconds if best else None, among)


class _StopOnCtrlC:
    """The first Ctrl-C lets the candidates in flight finish and be recorded, then stops;
    a second one stops at once. Only the main thread can install the handler."""

    def __init__(self):
        self.requested = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stopping after the candidates in flight (Ctrl-C again to stop at once)")

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def _strategy(strategy, space, seed, db, op, tgt, transfer: bool):
    if not isinstance(strategy, str):
        return strategy  # a SearchStrategy object
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    url = db.url
    storage = None if url in ("sqlite://", "sqlite:///:memory:") else url
    digest = hashlib.sha256(f"{op.workload_key}|{tgt.key}|{space.version}".encode()).hexdigest()[:16]
    name = f"autosched-{op.name}-{digest}-{strategy}-seed{seed}"
    if strategy == "xgb":
        from costmodel import FEATURE_NAMES

        from .model_search import ModelGuidedStrategy
        data = db.training_data(tgt, exclude_workload=op.workload_key,
                                feature_count=len(FEATURE_NAMES)) if transfer else None
        # Its TPE helper keeps its study in memory: it is rebuilt from the measured records on
        # every start (warm_start), and each ask on a database study re-read every trial, which
        # cost 18 of the first 25 seconds of tuning a 1024^3 matmul (64 asks for the first pool).
        return ModelGuidedStrategy(space, op, tgt, seed, storage=None, study_name=name, transfer=data)
    return OptunaStrategy(space, strategy, seed, storage=storage, study_name=name)


# A workload with constants first measures this many of the plain workload's best configs.
PLAIN_SEEDS = 8


def _plain_best(db, op, tgt, space) -> list:
    """For a workload with constants (Operator.with_constants): the plain workload's fastest
    correct configs of this space version, best first. They were timed with the weights'
    packing in every call, so they are a good start, not the answer."""
    if not op.constants:
        return []
    timed = sorted((r for r in db.records(op.with_constants(), tgt)
                    if r.space_version == space.version and r.error is None and r.seconds is not None),
                   key=lambda r: r.seconds)
    out = []
    for config in (space.canonical(r.config) for r in timed):
        if len(out) >= PLAIN_SEEDS:
            break
        if config not in out:
            out.append(config)
    return out


def _unique_proposals(searcher, space, measured: dict, n: int, rng) -> list:
    out, seen, duplicates = [], set(), 0
    while len(out) < n:
        if duplicates >= MAX_DUPLICATE_PROPOSALS:
            extra = _uniform_unmeasured(space, measured, seen, n - len(out), rng)
            out.extend(extra)
            break
        batch = searcher.propose(n - len(out))
        if not batch:  # the strategy has nothing left: take what uniform sampling still finds
            out.extend(_uniform_unmeasured(space, measured, seen, n - len(out), rng))
            break
        for p in batch:
            canonical = space.canonical(p.config)
            if canonical != p.config:  # a knob with no effect differed: the same kernel
                p = dataclasses.replace(p, config=canonical)
            if p.config in measured or p.config in seen or space.violation(p.config) is not None:
                # Measured already, or past a limit of the target (Optuna's samplers do not
                # know the space's constraints): not worth a trial of the budget.
                searcher.skip(p)
                duplicates += 1
            else:
                seen.add(p.config)
                out.append(p)
    return out


def _uniform_unmeasured(space, measured, seen, n, rng) -> list:
    out = []
    for _ in range(200 * n):
        c = space.sample(rng)
        if c not in measured and c not in seen:
            seen.add(c)
            out.append(Proposal(c, None))
            if len(out) == n:
                break
    return out


def _record(db, op, tgt, space, proposal, result: MeasureResult, run_id) -> Trial:
    record = TuningRecord(op.workload_key, tgt.key, proposal.config, result.seconds, tuple(result.costs),
                          result.error, result.error_message, result.compile_seconds,
                          result.timestamp, space_version=space.version, op_name=op.name,
                          features=result.features, predicted=proposal.predicted)
    db.add(op, tgt, record, run_id)
    return Trial(proposal.config, result.seconds, result.error, result.error_message, result.compile_seconds)


def _progress(enabled: bool, total: int, done: int, op):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=min(done, total), desc=f"tuning {op.name}", unit="trial",
                dynamic_ncols=True)

