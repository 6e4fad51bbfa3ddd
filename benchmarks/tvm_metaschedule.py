"""TVM MetaSchedule against autosched on this CPU: each workload tuned by MetaSchedule with a
trial budget, then both sides checked against the operator's reference and timed with the
timer `autosched bench` uses, each side in fresh processes, alternating, over several rounds.

TVM is not a dependency of autosched (its wheel is 100 MB, and unpacks a 260 MB compiler
library), so it goes in an environment of its own that also sees autosched:

    python -m venv --system-site-packages /tmp/tvm-env
    /tmp/tvm-env/bin/pip install apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post0 psutil cloudpickle
    TVM_NUM_THREADS=2 /tmp/tvm-env/bin/python benchmarks/tvm_metaschedule.py \\
        --database benchmarks/.bench/bench.db --trials 64

(apache-tvm-ffi 0.1.15 makes TVM 0.27.0.post1 crash in ToJSONGraph when it writes its tuning
database, hence the pin.) The workloads are the five of the issue that set the goal "2x TVM MetaSchedule's 64-trial
time". Weights are ordinary arguments of TVM's function: `tune_tir` tunes a TIR function,
and the layout rewrites that need constant weights belong to Relax's model flow.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# label -> (operator name, parameters); the labels are those of `autosched bench`.
WORKLOADS = {
    "matmul(M=1024,N=1024,K=1024)": ("matmul", dict(M=1024, N=1024, K=1024)),
    "dense(M=128,N=3072,K=768,bias=True,activation=gelu)":
        ("dense", dict(M=128, N=3072, K=768, bias=True, activation="gelu")),
    "softmax(M=4096,N=1000)": ("softmax", dict(M=4096, N=1000)),
    "layer_norm(M=8192,N=768)": ("layer_norm", dict(M=8192, N=768)),
    "conv2d(N=1,C=64,H=56,W=56,K=64,R=3,S=3,padding=1,bias=True,activation=relu)":
        ("conv2d", dict(N=1, C=64, H=56, W=56, K=64, R=3, S=3, padding=1, bias=True, activation="relu")),
}


def tvm_function(name: str, p: dict):
    """The workload in TVM's tensor expressions: (placeholders, output), the same math as the
    autosched operator of that name (its reference checks both)."""
    import tvm
    from tvm import te, topi
    tir = tvm.tirx  # named tvm.tir before TVM 0.27
    f32 = "float32"
    if name == "matmul":
        A = te.placeholder((p["M"], p["K"]), f32, "A")
        B = te.placeholder((p["K"], p["N"]), f32, "B")
        k = te.reduce_axis((0, p["K"]), "k")
        return [A, B], te.compute((p["M"], p["N"]), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), "C")
    if name == "dense":
        x = te.placeholder((p["M"], p["K"]), f32, "x")
        w = te.placeholder((p["N"], p["K"]), f32, "weight")
        b = te.placeholder((p["N"],), f32, "bias")
        k = te.reduce_axis((0, p["K"]), "k")
        y = te.compute((p["M"], p["N"]), lambda i, j: te.sum(x[i, k] * w[j, k], axis=k), "y")

        def gelu(v):
            return 0.5 * v * (1.0 + tir.erf(v * 0.7071067811865476))
        return [x, w, b], te.compute((p["M"], p["N"]), lambda i, j: gelu(y[i, j] + b[j]), "out")
    if name == "softmax":
        x = te.placeholder((p["M"], p["N"]), f32, "x")
        return [x], topi.nn.softmax(x, axis=1)
    if name == "layer_norm":
        x = te.placeholder((p["M"], p["N"]), f32, "x")
        g = te.placeholder((p["N"],), f32, "gamma")
        b = te.placeholder((p["N"],), f32, "beta")
        return [x, g, b], topi.nn.layer_norm(x, g, b, axis=[1], epsilon=1e-5)
    if name == "conv2d":
        x = te.placeholder((p["N"], p["C"], p["H"], p["W"]), f32, "x")
        w = te.placeholder((p["K"], p["C"], p["R"], p["S"]), f32, "weight")
        b = te.placeholder((p["K"],), f32, "bias")
        y = topi.nn.conv2d_nchw(x, w, 1, p["padding"], 1)
        return [x, w, b], te.compute(y.shape, lambda n, c, h, ww: te.max(y[n, c, h, ww] + b[c], 0.0), "out")
    raise ValueError(f"no TVM expression for operator {name!r}")


def _tvm_task(name: str, params: dict, threads: int):
    """(IRModule of the workload, LLVM target for this CPU)."""
    import tvm
    from tvm import te
    args, out = tvm_function(name, params)
    target = tvm.target.Target({"kind": "llvm", "mcpu": _llvm_cpu(), "num-cores": threads})
    return tvm.IRModule({"main": te.create_prim_func([*args, out])}), target


def tune_tvm(name: str, params: dict, trials: int, threads: int, work_dir: Path, reuse: bool) -> float:
    """Seconds MetaSchedule spent measuring `trials` candidates into `work_dir`. With `reuse`,
    a database an earlier run of this script left there is kept (TVM would spend the trials
    anew), and the seconds are those that run recorded."""
    from tvm.s_tir import meta_schedule as ms  # tvm.meta_schedule before TVM 0.27
    spent = work_dir / "tuning-seconds.json"
    if reuse and spent.exists():
        return json.loads(spent.read_text())["seconds"]
    mod, target = _tvm_task(name, params, threads)
    start = time.perf_counter()
    ms.tune_tir(mod=mod, target=target, work_dir=str(work_dir), max_trials_global=trials,
                num_trials_per_iter=min(64, trials), seed=0)
    seconds = time.perf_counter() - start
    spent.write_text(json.dumps({"seconds": seconds, "trials": trials}) + "\n")
    return seconds


def compiled_tvm(label: str, name: str, params: dict, threads: int, work_dir: Path):
    """The compiled function of the best schedule in the MetaSchedule database in `work_dir`."""
    import tvm
    from tvm.s_tir import meta_schedule as ms
    mod, target = _tvm_task(name, params, threads)
    database = ms.database.JSONDatabase(work_dir=str(work_dir), allow_missing=False)
    schedule = ms.tir_integration.compile_tir(database, mod, target)
    if schedule is None:
        raise RuntimeError(f"MetaSchedule's database in {work_dir} has no valid schedule for {label}")
    return tvm.compile(schedule.mod, target=target)["main"]


def _llvm_cpu() -> str:
    import tvm
    return tvm.target.codegen.llvm_get_system_cpu()


def tvm_callable(fn, inputs, out_shape):
    """A zero-argument call of the compiled TVM function on copies of `inputs`; it returns the
    output as numpy (the copy out is outside the timed call's work only in the check)."""
    import numpy as np
    import tvm
    dev = tvm.cpu(0)
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in inputs]
    out = tvm.runtime.empty(out_shape, "float32", dev)

    def run():
        fn(*args, out)
        return out
    return run, lambda: out.numpy()


def _operator(name: str, params: dict):
    from tuner.commands import make_operator
    return make_operator(name, params)


def our_kernel(name: str, params: dict, database: str):
    """autosched's best record for the workload, built and bound as `autosched bench` does."""
    from tuner.baselines import Workload, parameter_names
    from tuner.bench import _our_kernel
    from tuner.records import Database
    op = _operator(name, params)
    names = parameter_names(Workload(name, params))
    db = Database(database)
    kernel, detail = _our_kernel(op.with_constants(*names), db, "cpu", None, "xgb", 0, False)
    return op, kernel, names, detail


def measure(side: str, chosen: dict, args, threads: int) -> dict:
    """{label: (median seconds, detail)} for one side, each result checked first. Each side
    runs in a process of its own: TVM's runtime threads keep spinning after its calls (as
    OpenBLAS's do), and ours timed after TVM's in one process took 1.5 ms for softmax
    4096x1000 instead of 0.7."""
    import numpy as np

    from tuner.timing import median, time_callable
    out = {}
    for label, (name, params) in chosen.items():
        if side == "autosched":
            op, kernel, names, detail = our_kernel(name, params, args.database)
            inputs = op.random_inputs(0)
            bound, free = kernel.bind_inputs(inputs, names)
            run, got = (lambda: bound(*free)), bound(*free)
        else:
            fn = compiled_tvm(label, name, params, threads, Path(args.work_dir) / name)
            op = _operator(name, params)
            inputs = op.random_inputs(0)
            run, read = tvm_callable(fn, inputs, op.outputs[0].shape)
            run()
            got, detail = read(), f"MetaSchedule, {args.trials} trials"
        ref = op.reference(*inputs)
        scale = max(1.0, float(np.max(np.abs(ref))))
        if not np.allclose(got, ref, rtol=2e-3, atol=2e-3 * scale):
            raise SystemExit(f"{label}: {side} gives a wrong result "
                             f"(max abs error {float(np.max(np.abs(got - ref))):.3g})")
        costs = []
        for _ in range(3):  # rounds with pauses, as `autosched bench` pauses between runs
            time.sleep(0.3)
            costs.extend(time_callable(run, args.seconds))
        out[label] = (median(costs), detail)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", default="benchmarks/.bench/bench.db",
                    help="autosched records to compare (default: benchmarks/.bench/bench.db)")
    ap.add_argument("--trials", type=int, default=64, help="MetaSchedule's measured trials (default: 64)")
    ap.add_argument("--only", default="*", help="';'-separated label globs (default: all five)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="timing processes per side, alternating (default: 3); medians are reported")
    ap.add_argument("--seconds", type=float, default=0.5, help="timed seconds per implementation")
    ap.add_argument("--work-dir", default="benchmarks/.bench/tvm", help="MetaSchedule's logs and database")
    ap.add_argument("--reuse", action="store_true",
                    help="apply the databases an earlier run left in --work-dir instead of tuning again")
    ap.add_argument("--out", default="benchmarks/results",
                    help="folder for the JSON and Markdown result (default: benchmarks/results)")
    ap.add_argument("--side", choices=("autosched", "tvm"), help=argparse.SUPPRESS)
    ap.add_argument("--side-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import numpy as np

    from codegen.parallel import thread_count
    try:
        import tvm
    except ImportError:
        ap.error("TVM is not installed here; see this script's help for how to install it")
    threads = thread_count()
    if os.environ.get("TVM_NUM_THREADS") != str(threads):
        ap.error(f"set TVM_NUM_THREADS={threads}, the threads autosched uses, so both run alike")
    globs = [g for g in args.only.split(";") if g]
    chosen = {label: w for label, w in WORKLOADS.items() if any(fnmatch.fnmatchcase(label, g) for g in globs)}
    if args.side:
        Path(args.side_out).write_text(json.dumps(measure(args.side, chosen, args, threads)))
        return 0
    tuning = {}
    for label, (name, params) in chosen.items():
        print(f"[{label}] MetaSchedule, {args.trials} trials", flush=True)
        tuning[label] = tune_tvm(name, params, args.trials, threads, Path(args.work_dir) / name, args.reuse)
    times = {label: {"autosched": [], "tvm": []} for label in chosen}
    details = {}
    common = ["--database", args.database, "--trials", str(args.trials), "--only", args.only,
              "--seconds", str(args.seconds), "--work-dir", args.work_dir]
    side_out = Path(args.work_dir) / "side.json"
    for r in range(args.rounds):
        for side in ("autosched", "tvm"):
            subprocess.run([sys.executable, __file__, *common, "--side", side, "--side-out", str(side_out)],
                           check=True)
            for label, (seconds, detail) in json.loads(side_out.read_text()).items():
                times[label][side].append(seconds)
                details[(label, side)] = detail
                print(f"  round {r + 1} {side:<9} {seconds * 1e3:9.3f} ms  {label}", flush=True)
    rows = []
    for label in chosen:
        t_tvm, t_ours = (float(np.median(times[label][s])) for s in ("tvm", "autosched"))
        ratios = [a / b for a, b in zip(times[label]["tvm"], times[label]["autosched"])]
        rows.append(dict(label=label, tvm_ms=t_tvm * 1e3, tvm_tuning_s=tuning[label],
                         autosched_ms=t_ours * 1e3, autosched_kernel=details[(label, "autosched")],
                         speedup=t_tvm / t_ours, speedup_range=[min(ratios), max(ratios)],
                         tvm_runs_ms=[t * 1e3 for t in times[label]["tvm"]],
                         autosched_runs_ms=[t * 1e3 for t in times[label]["autosched"]]))
    stamp = datetime.now(timezone.utc)
    report = dict(date=stamp.isoformat(timespec="seconds"), machine=platform.processor() or platform.machine(),
                  cpu=_llvm_cpu(), threads=threads, trials=args.trials, rounds=args.rounds, tvm=tvm.__version__,
                  database=args.database, rows=rows)
    table = ["| workload | TVM MetaSchedule ms | its tuning s | autosched ms | TVM / autosched | range |",
             "|---|---|---|---|---|---|"]
    table += [f"| {r['label']} | {r['tvm_ms']:.3f} | {r['tvm_tuning_s']:.0f} | {r['autosched_ms']:.3f} | "
              f"{r['speedup']:.2f}x{'' if r['speedup'] >= 2 else ' (under 2x)'} | "
              f"{r['speedup_range'][0]:.2f}-{r['speedup_range'][1]:.2f}x |" for r in rows]
    print("\n".join(table))
    if args.out != "none":
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        base = out / f"tvm-{stamp:%Y-%m-%d}-{_llvm_cpu()}-{args.trials}-trials"
        base.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
        base.with_suffix(".md").write_text("\n".join(table) + "\n")
        print(f"results: {base}.json, {base}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
