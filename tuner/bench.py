"""`autosched bench`: tuned kernels against numpy, PyTorch, ONNX Runtime and OpenVINO, in one run.

Each workload's kernel is the best record in the database, or is tuned now with the given
budget, or falls back to the default schedule; the table says which. Every implementation is
checked against the operator's reference before it is timed, and timings are medians of
repeated calls, with a pause before each so BLAS threads spinning after a numpy call do not
steal cores from the next measurement.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import socket
import time
from dataclasses import dataclass, field

from .baselines import BaselineUnavailable, Workload, make_baselines, parameter_names, versions

# Square matmuls, BERT-base dense layers, ResNet-50 and MobileNet convolutions at batch 1,
# and transformer-sized softmax and layer norm.
DEFAULT_SUITE = """\
# autosched bench suite: workloads as {op: NAME, ...constructor arguments of schedules.ops}
trials: 64
workloads:
  - {op: matmul, M: 256, N: 256, K: 256}
  - {op: matmul, M: 512, N: 512, K: 512}
  - {op: matmul, M: 1024, N: 1024, K: 1024}
  - {op: matmul, M: 2048, N: 2048, K: 2048}
  - {op: dense, M: 128, N: 768, K: 768, bias: true}
  - {op: dense, M: 128, N: 3072, K: 768, bias: true, activation: gelu}
  - {op: dense, M: 128, N: 768, K: 3072, bias: true}
  - {op: conv2d, N: 1, C: 3, H: 224, W: 224, K: 64, R: 7, S: 7, stride: 2, padding: 3, bias: true, activation: relu}
  - {op: conv2d, N: 1, C: 64, H: 56, W: 56, K: 64, R: 3, S: 3, padding: 1, bias: true, activation: relu}
  - {op: conv2d, N: 1, C: 64, H: 56, W: 56, K: 256, R: 1, S: 1, bias: true}
  - {op: conv2d, N: 1, C: 128, H: 28, W: 28, K: 128, R: 3, S: 3, padding: 1, bias: true, activation: relu}
  - {op: conv2d, N: 1, C: 256, H: 14, W: 14, K: 256, R: 3, S: 3, padding: 1, bias: true, activation: relu}
  - {op: conv2d, N: 1, C: 512, H: 7, W: 7, K: 512, R: 3, S: 3, padding: 1, bias: true, activation: relu}
  - {op: depthwise_conv2d, N: 1, C: 32, H: 112, W: 112, R: 3, S: 3, padding: 1, bias: true, activation: relu}
  - {op: depthwise_conv2d, N: 1, C: 144, H: 56, W: 56, R: 3, S: 3, padding: 1, bias: true, activation: relu}
  - {op: depthwise_conv2d, N: 1, C: 384, H: 14, W: 14, R: 3, S: 3, padding: 1, bias: true, activation: relu}
  - {op: softmax, M: 1536, N: 128}
  - {op: softmax, M: 4096, N: 1000}
  - {op: layer_norm, M: 128, N: 768}
  - {op: layer_norm, M: 8192, N: 768}
"""


@dataclass(frozen=True)
class Timing:
    implementation: str
    seconds: float | None          # median; None when it did not run
    costs: tuple = ()
    detail: str = ""               # where the kernel came from, or why it did not run
    config: str | None = None      # our kernel's config (JSON), so a result can be rebuilt


@dataclass(frozen=True)
class BenchRow:
    label: str
    workload: Workload
    workload_key: str
    flops: int
    ours: Timing
    baselines: tuple               # Timings, in the order asked for

    def gflops(self, t: Timing):
        return None if t.seconds is None else self.flops / t.seconds / 1e9

    def ratio(self, baseline: Timing):
        """How many times faster autosched is (baseline time / ours); >1 is a win."""
        if baseline.seconds is None or self.ours.seconds is None:
            return None
        return baseline.seconds / self.ours.seconds


@dataclass(frozen=True)
class BenchReport:
    rows: tuple
    peak_gflops: float
    threads: int
    machine: dict
    versions: dict
    started: str
    baselines: tuple = field(default=())

    def to_json(self) -> dict:
        def timing(t):
            config = {} if t.config is None else {"config": json.loads(t.config)}
            return {"seconds": t.seconds, "costs": list(t.costs), "detail": t.detail, **config}
        return {
            "started": self.started, "machine": self.machine, "versions": self.versions,
            "peak_gflops": self.peak_gflops, "threads": self.threads, "baselines": list(self.baselines),
            "rows": [{"label": r.label, "op": r.workload.op_name, "params": r.workload.params,
                      "workload_key": r.workload_key, "flops": r.flops,
                      "autosched": timing(r.ours) | {"gflops": r.gflops(r.ours),
                                                     "peak_fraction": _frac(r.gflops(r.ours), self.peak_gflops)},
                      "baselines": {t.implementation: timing(t) | {"gflops": r.gflops(t), "speedup": r.ratio(t)}
                                    for t in r.baselines}}
                     for r in self.rows]}


def _frac(g, peak):
    return None if g is None or not peak else g / peak


def label_of(workload: Workload) -> str:
    args = ",".join(f"{k}={v}" for k, v in workload.params.items())
    return f"{workload.op_name}({args})"


def machine_facts(threads: int) -> dict:
    from schedules import as_target
    tgt = as_target("cpu")
    return {"host": socket.gethostname(), "cpu": tgt.model, "arch": tgt.arch, "cores": tgt.cores,
            "threads": threads, "platform": platform.platform()}


def run_bench(jobs, database, target="cpu", *, trials: int | None = None, seconds: float = 0.5,
              baselines=("numpy", "pytorch", "onnxruntime", "openvino"), strategy: str = "xgb",
              seed: int = 0, pause: float = 0.3, progress: bool = True, log=print,
              suite_name: str = "default", rounds: int = 3) -> BenchReport:
    """Time each (Workload, suite trials) in `jobs` against the baselines; store the run.

    trials=None uses each job's own budget; 0 never tunes (database records or defaults).
    Each workload's implementations are timed in `rounds` interleaved rounds of seconds/rounds.
    """
    if rounds < 1 or seconds <= 0:
        raise ValueError(f"bench needs rounds >= 1 and seconds > 0, got rounds={rounds}, seconds={seconds}")
    from codegen.parallel import thread_count
    from codegen.peak import fp32_peak_gflops
    threads = thread_count()
    peak = fp32_peak_gflops(threads)
    log(f"machine peak: {peak:.1f} GFLOPS fp32 on {threads} threads (FMA micro-benchmark)")
    impls = make_baselines(baselines)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    rows = []
    for i, (workload, job_trials) in enumerate(jobs, 1):
        budget = job_trials if trials is None else trials
        label = label_of(workload)
        log(f"[{i}/{len(jobs)}] {label}")
        rows.append(_bench_one(workload, label, database, target, budget, seconds, impls, threads,
                               strategy, seed, pause, progress, log, rounds))
    # The machine is shared: a probe taken in a slow moment understates the peak and would
    # inflate "% of peak". Probe again at the end and keep the better of the two.
    peak = max(peak, fp32_peak_gflops(threads))
    log(f"machine peak: {peak:.1f} GFLOPS fp32 (best of the probes before and after)")
    report = BenchReport(tuple(rows), peak, threads, machine_facts(threads), versions(), started,
                         tuple(b.name for b in impls))
    if database is not None:
        from .bench_records import store_report
        store_report(database, target, report, suite_name)
    return report


def _bench_one(workload, label, db, target, budget, seconds, impls, threads, strategy, seed, pause,
               progress, log, rounds) -> BenchRow:
    import numpy as np

    from .commands import make_operator
    op = make_operator(workload.op_name, dict(workload.params))
    inputs = op.random_inputs(0)
    ref = op.reference(*inputs)
    params = parameter_names(workload)
    kernel, detail = _our_kernel(op.with_constants(*params), db, target, budget, strategy, seed, progress)
    free = inputs
    if params and hasattr(kernel, "bind"):
        # The same weights the frameworks hold as parameters (ONNX initializers) are bound,
        # so operands packed from them are packed once, as those frameworks do.
        kernel, free = kernel.bind_inputs(inputs, params)
        if kernel.packed:
            detail += f"; {', '.join(n for n, _ in kernel.loopnest.prepacked)} packed once"
    runs = [("autosched", lambda: kernel(*free), detail)]
    failed = {}
    for impl in impls:
        try:
            fn = impl.prepare(workload, op, [np.array(a) for a in inputs], threads)
        except BaselineUnavailable as exc:
            failed[impl.name] = Timing(impl.name, None, (), str(exc))
        except Exception as exc:  # a framework refusing a model is a result, not a crash
            failed[impl.name] = Timing(impl.name, None, (), f"{impl.name} failed: {type(exc).__name__}: {exc}")
        else:
            runs.append((impl.name, fn, ""))
    timed = _timed_in_rounds(runs, ref, seconds, pause, rounds, failed)
    t_ours = dataclasses.replace(timed["autosched"], config=kernel.config.to_json())
    log(f"    autosched   {_ms(t_ours)}  {detail}")
    timings = [timed[impl.name] for impl in impls]
    for t in timings:
        log(f"    {t.implementation:<11} {_ms(t)}  {t.detail}")
    return BenchRow(label, workload, op.workload_key, op.flops(), t_ours, tuple(timings))


def _ms(t: Timing) -> str:
    return f"{t.seconds * 1e3:9.3f} ms" if t.seconds is not None else "        -   "


def _our_kernel(op, db, target, budget, strategy, seed, progress):
    """(kernel, where its config came from): the database's best record of `op` (tuned with
    its constants bound, when it has them), tuned now when the budget asks for more; else the
    best record of the plain operator (tuned with nothing bound, as older databases hold);
    else the default schedule. The kernel is built with op's constants either way."""
    from codegen import build
    if db is None:
        return build(op, target), "default schedule (no database)"
    from .build_best import build_best
    from .tune import tune
    from .versions import codegen_version
    space = op.space(target)
    measured = len(db.measured_configs(op, target, space.version))
    if budget and measured < budget:
        tune(op, target, database=db, trials=budget, seed=seed, strategy=strategy, progress=progress)
        measured = len(db.measured_configs(op, target, space.version))
    held = f" with {', '.join(op.constants)} bound" if op.constants else ""
    if db.best(op, target, space.version, codegen_version()) is not None:
        return build_best(op, target, db), f"tuned{held}, best of {measured} measured configs"
    plain = op.with_constants()
    if op.constants and db.best(plain, target, space.version, codegen_version()) is not None:
        measured = len(db.measured_configs(plain, target, space.version))
        return (build_best(plain, target, db, constants=op.constants),
                f"tuned with nothing bound, best of {measured} measured configs")
    return build(op, target), "default schedule (no tuned record)"


def _timed_in_rounds(runs, ref, seconds: float, pause: float, rounds: int, timed: dict) -> dict:
    """{name: Timing} for each (name, fn, detail) in `runs`: checked against the reference once,
    then timed in `rounds` rounds that each time every implementation in turn for seconds/rounds.
    This machine changes speed every few seconds, and one implementation timed whole after
    another could fall in a fast moment and the next in a slow one; interleaved, each sees the
    same moments. Failures already in `timed` are kept."""
    import numpy as np

    from .timing import median, time_callable
    refs = ref if isinstance(ref, tuple) else (ref,)
    scale = max(1.0, max(float(np.max(np.abs(r))) for r in refs))
    checked = []
    for name, fn, detail in runs:
        got = fn()
        got = got if isinstance(got, tuple) else (got,)
        wrong = [(np.asarray(g), r) for g, r in zip(got, refs) if np.asarray(g).shape != r.shape
                 or not np.allclose(np.asarray(g), r, rtol=2e-3, atol=2e-3 * scale)]
        if wrong:
            g, r = wrong[0]
            err = float(np.max(np.abs(g - r))) if g.shape == r.shape else float("nan")
            timed[name] = Timing(name, None, (), f"wrong result (max abs error {err:.3g}); not timed")
        else:
            checked.append((name, fn, detail))
    costs = {name: [] for name, _, _ in checked}
    for _ in range(rounds):
        for name, fn, _ in checked:
            # A framework's threads keep spinning for a while after its call (OpenBLAS's
            # halved the next kernel's speed); they stop during the pause.
            time.sleep(pause)
            costs[name].extend(time_callable(fn, seconds / rounds))
    for name, _, detail in checked:
        timed[name] = Timing(name, median(costs[name]), tuple(costs[name]), detail)
    return timed


def format_table(report: BenchReport) -> str:
    """A markdown table: time, GFLOPS, % of peak, and speedup against each baseline."""
    names = list(report.baselines)
    frameworks = [n for n in names if n != "numpy"]
    head = ["workload", "autosched ms", "GFLOPS", "% peak"] + [f"{n} ms" for n in names] + \
        [f"vs {n}" for n in names] + (["vs best framework"] if frameworks else []) + ["kernel"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report.rows:
        g = r.gflops(r.ours)
        by = {t.implementation: t for t in r.baselines}
        cells = [r.label, _num(r.ours.seconds, 1e3, 3), _num(g, 1, 1), _num(_frac(g, report.peak_gflops), 100, 1)]
        cells += [_num(by[n].seconds, 1e3, 3) if n in by else "-" for n in names]
        cells += [_ratio(r.ratio(by[n])) if n in by else "-" for n in names]
        if frameworks:
            cells.append(_ratio(r.ratio(best_of(r, frameworks))))
        cells.append(r.ours.detail or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_of(row: BenchRow, names) -> Timing:
    """The fastest of these baselines that ran (a not-run Timing when none did)."""
    ran = [t for t in row.baselines if t.implementation in names and t.seconds is not None]
    return min(ran, key=lambda t: t.seconds) if ran else Timing("none", None)


def _num(v, scale, digits):
    return "-" if v is None else f"{v * scale:.{digits}f}"


def _ratio(v):
    if v is None:
        return "-"
    return f"{v:.2f}x" + (" (lost)" if v < 1 else "")


def write_json(report: BenchReport, out_dir) -> str:
    from pathlib import Path
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    date = report.started[:10]
    path = out / f"bench-{date}.json"
    n = 1
    while path.exists():
        n += 1
        path = out / f"bench-{date}-{n}.json"
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return str(path)
