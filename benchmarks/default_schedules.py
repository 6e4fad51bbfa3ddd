"""Default-schedule time of each library operator next to numpy, measured in the same run."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Seconds to sleep after timing numpy and before timing our kernel: OpenBLAS worker threads keep
# spinning for a while after a BLAS call and would steal cores from our thread-pool kernels.
BLAS_SETTLE_S = 0.2
MIN_RUNS = 5
RTOL = ATOL = 1e-3
BUSY_CORES = 0.2  # other processes' CPU use above which a row is flagged as measured on a busy machine
QUICK = ("matmul_256", "softmax_128x768", "layer_norm_128x768")


import numpy_baselines as nb  # noqa: E402 - lives beside this script


# -- workloads ----------------------------------------------------------------------------------
def workloads():
    """(name, shape description, operator factory, [(numpy method name, baseline)])."""
    from schedules import ops, te
    W = []
    for n in (256, 512, 1024):
        W.append((f"matmul_{n}", f"M=N=K={n}", lambda n=n: ops.matmul(n, n, n),
                  [("a @ b", nb.np_matmul)]))
    W.append(("batch_matmul", "B=8 M=N=K=128", lambda: ops.batch_matmul(8, 128, 128, 128),
              [("np.matmul", nb.np_batch_matmul)]))
    W.append(("dense_bias_gelu", "M=128 N=768 K=768", lambda: ops.dense(
        128, 768, 768, bias=True, activation="gelu"), [("x @ w.T + b, gelu(erf)", nb.np_dense("gelu"))]))
    W.append(("dense_bias_relu", "M=128 N=3072 K=768", lambda: ops.dense(
        128, 3072, 768, bias=True, activation="relu"), [("x @ w.T + b, maximum", nb.np_dense("relu"))]))
    for layout in ("NCHW", "NHWC"):
        W.append((f"conv2d_{layout.lower()}_bias_relu", f"1x64x56x56 {layout}, K=64 3x3 s1 p1",
                  lambda layout=layout: ops.conv2d(1, 64, 56, 56, 64, 3, 3, stride=1, padding=1,
                                                   layout=layout, bias=True, activation="relu"),
                  [(m, nb.np_conv2d(layout, m, 1, 1, "relu")) for m in ("swv_tensordot", "im2col_matmul")]))
    W.append(("depthwise_conv2d", "1x128x56x56 NCHW, 3x3 s1 p1",
              lambda: ops.depthwise_conv2d(1, 128, 56, 56, 3, 3, stride=1, padding=1),
              [(m, nb.np_depthwise_nchw(m, 1, 1)) for m in ("swv_einsum", "shifted_slices")]))
    W.append(("max_pool2d", "1x64x112x112 NCHW, 3x3 s2 p1",
              lambda: ops.pool2d(1, 64, 112, 112, 3, stride=2, padding=1, pool_type="max"),
              [(m, nb.np_pool_nchw("max", m, 3, 2, 1)) for m in ("swv_max", "shifted_slices")]))
    W.append(("avg_pool2d", "1x256x14x14 NCHW, 2x2 s2 p0",
              lambda: ops.pool2d(1, 256, 14, 14, 2, stride=2, padding=0, pool_type="avg"),
              [(m, nb.np_pool_nchw("avg", m, 2, 2, 0)) for m in ("swv_mean", "shifted_slices")]))
    for m, n in ((128, 768), (1024, 1024)):
        W.append((f"softmax_{m}x{n}", f"{m}x{n}", lambda m=m, n=n: ops.softmax(m, n),
                  [("exp(x - max) / sum", nb.np_softmax)]))
    for m, n in ((128, 768), (1024, 768)):
        W.append((f"layer_norm_{m}x{n}", f"{m}x{n}", lambda m=m, n=n: ops.layer_norm(m, n, eps=nb.LN_EPS),
                  [("mean, var, normalise", nb.np_layer_norm)]))
    W.append(("elementwise_tanh_mul", "(1024,1024) * (1024,)", lambda: ops.elementwise(
        [(1024, 1024), (1024,)], lambda a, b: te.tanh(a * b) + 1.0, name="tanh_mul_plus1"),
        [("tanh(a * b) + 1", nb.np_tanh_mul)]))
    return W


# -- measurement --------------------------------------------------------------------------------
def measure(fn, args, min_seconds: float) -> dict:
    """Warm up once, then run until at least min_seconds in total and MIN_RUNS runs."""
    fn(*args)
    times = []
    total = 0.0
    while len(times) < MIN_RUNS or total < min_seconds:
        start = time.perf_counter()
        fn(*args)
        dt = time.perf_counter() - start
        times.append(dt)
        total += dt
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3,
            "runs": len(times), "total_s": total}


def compare(ours, theirs) -> dict:
    np = nb._np()
    if theirs.shape != ours.shape:
        return {"ok": False, "why": f"shape {theirs.shape} != ours {ours.shape}", "max_abs_err": None}
    err = float(np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64))))
    ok = bool(np.allclose(ours, theirs, rtol=RTOL, atol=ATOL))
    why = "" if ok else f"not allclose (max abs err {err:.3g})"
    if theirs.dtype != ours.dtype:
        why = (why + "; " if why else "") + f"numpy dtype {theirs.dtype} != ours {ours.dtype}"
    return {"ok": ok, "why": why, "max_abs_err": err}


def run_workload(name, shape, factory, baselines, repeat_seconds) -> dict:
    from codegen import build
    row = {"workload": name, "shape": shape, "operator": None, "ours_ms": None, "numpy_ms": None,
           "numpy_impl": None, "speedup": None, "ours_gflops": None, "compile_s": None,
           "build_s": None, "ok": False, "max_abs_err": None, "error": None, "numpy": {}}
    try:
        op = factory()
        row["operator"] = op.name
        row["flops"] = int(op.flops())
        start = time.perf_counter()
        kernel = build(op, "cpu")
        row["build_s"] = time.perf_counter() - start
        row["compile_s"] = float(kernel.compile_seconds)
        inputs = op.random_inputs(0)
        ours_out = kernel(*inputs)
    except Exception as exc:  # report it and go on with the other workloads
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc()
        return row

    # numpy first (every formulation), then let the BLAS threads settle, then ours.
    checks = []
    for impl, fn in baselines:
        entry = {}
        try:
            entry.update(compare(ours_out, fn(*inputs)))
            entry.update(measure(fn, inputs, repeat_seconds))
        except Exception as exc:
            entry = {"ok": False, "why": f"{type(exc).__name__}: {exc}", "max_abs_err": None}
        row["numpy"][impl] = entry
        checks.append(entry)
    time.sleep(BLAS_SETTLE_S)
    try:
        ours = measure(kernel, inputs, repeat_seconds)
    except Exception as exc:
        row["error"] = f"running our kernel: {type(exc).__name__}: {exc}"
        return row
    row["ours_ms"] = ours["median_ms"]
    row["ours_min_ms"] = ours["min_ms"]
    row["ours_runs"] = ours["runs"]
    if row["flops"] and ours["median_ms"] > 0:
        row["ours_gflops"] = row["flops"] / (ours["median_ms"] * 1e-3) / 1e9

    # The fastest formulation that agrees with our kernel; if none agrees, the fastest (ok: NO).
    timed = [(e["median_ms"], impl) for impl, e in row["numpy"].items() if "median_ms" in e]
    agreeing = [(ms, impl) for ms, impl in timed if row["numpy"][impl]["ok"]]
    timed = agreeing or timed
    if timed:
        best_ms, best_impl = min(timed)
        row["numpy_ms"] = best_ms
        row["numpy_impl"] = best_impl
        row["speedup"] = best_ms / ours["median_ms"]
    errs = [e["max_abs_err"] for e in checks if e.get("max_abs_err") is not None]
    row["max_abs_err"] = max(errs) if errs else None
    row["ok"] = bool(checks) and all(e["ok"] for e in checks)
    row["ok_detail"] = "; ".join(f"{impl}: {e['why']}" for impl, e in row["numpy"].items() if e["why"])
    return row


# -- environment --------------------------------------------------------------------------------
class OtherLoad:
    """CPU time used by other processes while a block runs, in cores on average (Linux only).

    The machine is small, so a concurrent job (a test run, say) skews multithreaded timings
    badly; this is recorded so that such a run can be recognised afterwards.
    """

    def __enter__(self):
        self.start = (self._busy(), time.process_time(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        self.end = (self._busy(), time.process_time(), time.perf_counter())
        return False

    @property
    def cores(self):
        (b0, p0, t0), (b1, p1, t1) = self.start, self.end
        if b0 is None or b1 is None or t1 <= t0:
            return None
        return max(0.0, ((b1 - b0) - (p1 - p0)) / (t1 - t0))

    @staticmethod
    def _busy():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def blas_info() -> dict:
    info = {"threads": "unknown", "source": "threadpoolctl not installed",
            "env": {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                               "MKL_NUM_THREADS") if k in os.environ}}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        info["source"] = "threadpoolctl"
        info["threads"] = pools[0]["num_threads"] if len(pools) == 1 else \
            [p["num_threads"] for p in pools] or "no BLAS pool found"
        info["libraries"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads",
                                                      "threading_layer", "filepath")} for p in pools]
    try:  # numpy >= 1.25 describes the BLAS it was built against
        import numpy as np
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = {"name": blas.get("name"), "version": blas.get("version")}
    except Exception:
        pass
    return info


def git_state() -> dict:
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        # Our own results folder does not count as a change to the code being measured.
        changes = git("status", "--porcelain", "--", ".", ":(exclude)benchmarks/results")
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(changes)}
    except Exception:
        return {"commit": None, "dirty": None}


def environment() -> dict:
    import numba
    import numpy as np
    from codegen.parallel import thread_count
    try:
        import scipy
        scipy_version = scipy.__version__
    except ImportError:
        scipy_version = None
    return {
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "affinity_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        },
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "numba": numba.__version__, "scipy": scipy_version},
        "blas": blas_info(),
        "autosched_threads": thread_count(),
        "git": git_state(),
    }


# -- report -------------------------------------------------------------------------------------
def fmt_ms(v):
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def table(rows) -> str:
    head = ["workload", "shape", "ours ms", "numpy ms", "speedup", "ours GFLOPS", "compile s", "ok",
            "numpy formulation"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 5 + ["---"] * 2) + "|"]
    for r in rows:
        ok = "error" if r["error"] else ("yes" if r["ok"] else "NO")
        lines.append("| " + " | ".join([
            r["workload"], r["shape"], fmt_ms(r["ours_ms"]), fmt_ms(r["numpy_ms"]),
            fmt(r["speedup"], ".2f"), fmt(r["ours_gflops"], ".2f"), fmt(r["compile_s"], ".2f"), ok,
            r["numpy_impl"] or "—"]) + " |")
    return "\n".join(lines)


def report(doc) -> str:
    env = doc["environment"]
    m, v, blas = env["machine"], env["versions"], env["blas"]
    lines = [
        f"# Default schedules vs numpy — {doc['date']}",
        "",
        f"- machine: {m['cpu_model'] or m['processor'] or 'unknown CPU'}; os.cpu_count {m['cpu_count']}, "
        f"affinity {m['affinity_count']}; {m['platform']}",
        f"- versions: python {v['python']}, numpy {v['numpy']}, numba {v['numba']}, scipy {v['scipy']}",
        f"- numpy BLAS: {(blas.get('numpy_blas') or {}).get('name')} "
        f"{(blas.get('numpy_blas') or {}).get('version')}; BLAS threads: {blas['threads']} "
        f"({blas['source']}); autosched kernel threads: {env['autosched_threads']}",
        f"- git: {env['git']['commit']}{' (dirty tree)' if env['git']['dirty'] else ''}",
        f"- command: `{doc['command']}`",
        f"- timing: warm-up once, then >= {doc['settings']['min_runs']} runs and "
        f">= {doc['settings']['repeat_seconds']} s; median reported. numpy timed first, then "
        f"{BLAS_SETTLE_S} s sleep, then ours. speedup = numpy ms / ours ms (> 1: ours faster). "
        f"Where several numpy formulations are listed, all are checked and the fastest that "
        f"agrees is reported.",
        f"- compile s: {doc['settings']['compile_cache']}; gelu uses {doc['settings']['gelu_erf']}",
        f"- ok: np.allclose(ours, numpy, rtol={RTOL}, atol={ATOL}) for every numpy formulation",
        f"- other processes' CPU use: {fmt(doc['other_load_cores']['before_start'], '.2f')} cores just "
        f"before the run, {fmt(doc['other_load_cores']['during_run'], '.2f')} on average during it; "
        f"total run {doc['elapsed_s']:.0f} s",
        "",
        table(doc["rows"]),
    ]
    busy = [r for r in doc["rows"] if (r.get("other_load_cores") or 0) > BUSY_CORES]
    if busy:
        lines += ["", f"Measured while other processes used more than {BUSY_CORES} cores (timings "
                      "likely skewed; rerun on an idle machine): "
                  + ", ".join(f"{r['workload']} ({r['other_load_cores']:.2f})" for r in busy)]
    bad = [r for r in doc["rows"] if r["error"] or not r["ok"]]
    if bad:
        lines += ["", "Problems:"]
        for r in bad:
            lines.append(f"- {r['workload']}: {r['error'] or r.get('ok_detail') or 'not ok'}")
    return "\n".join(lines) + "\n"


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__ + " Compiles the default schedule of each workload (Numba CPU), checks "
        "it against a hand-written numpy baseline, and times both in the same process.",
        epilog="Writes default_schedules-<date>.json and .md under --out (a --quick or --filter run "
        "adds -quick / -filtered to the names, so it does not overwrite a full run). Run from the "
        "repository root: PYTHONPATH=. python benchmarks/default_schedules.py")
    p.add_argument("--quick", action="store_true",
                   help=f"only the small workloads {', '.join(QUICK)} (a smoke check)")
    p.add_argument("--filter", metavar="SUBSTRING",
                   help="only workloads whose name contains SUBSTRING (case-insensitive)")
    p.add_argument("--out", metavar="DIR", type=Path, default=HERE / "results",
                   help="folder for the JSON and markdown results (default: benchmarks/results)")
    p.add_argument("--repeat-seconds", type=float, default=0.2, metavar="S",
                   help=f"time each measurement for at least S seconds (and at least {MIN_RUNS} "
                   "runs) after one warm-up run (default: 0.2)")
    p.add_argument("--use-cache", action="store_true",
                   help="use the configured autosched kernel cache instead of a fresh temporary "
                   "one; compile s may then be the time to load a cached kernel")
    args = p.parse_args(argv)
    if not args.repeat_seconds >= 0:
        p.error("--repeat-seconds must be a non-negative number")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    nb.ERF, erf_name = nb._erf()

    selected = workloads()
    if args.quick:
        selected = [w for w in selected if w[0] in QUICK]
    if args.filter:
        selected = [w for w in selected if args.filter.lower() in w[0].lower()]
    if not selected:
        print(f"no workload matches (--filter {args.filter!r}, --quick {args.quick})", file=sys.stderr)
        return 2

    tmp = None
    if args.use_cache:
        cache_note = "configured autosched cache (may be a cached-kernel load, not a compile)"
    else:
        tmp = tempfile.TemporaryDirectory(prefix="autosched-bench-cache-")
        os.environ["AUTOSCHED_CACHE_DIR"] = tmp.name
        cache_note = "cold Numba compile into a fresh temporary kernel cache"

    try:
        env = environment()
        today = datetime.date.today().isoformat()
        rows = []
        with OtherLoad() as before:
            time.sleep(1.0)
        if before.cores is not None and before.cores > BUSY_CORES:
            print(f"warning: other processes use {before.cores:.2f} cores right now; timings on this "
                  f"{os.cpu_count()}-core machine will be skewed", file=sys.stderr)
        t0 = time.perf_counter()
        with OtherLoad() as whole:
            for i, (name, shape, factory, baselines) in enumerate(selected, 1):
                with OtherLoad() as load:
                    row = run_workload(name, shape, factory, baselines, args.repeat_seconds)
                row["other_load_cores"] = load.cores
                rows.append(row)
                if row["error"]:
                    print(f"[{i}/{len(selected)}] {name}: ERROR {row['error']}", file=sys.stderr)
                else:
                    print(f"[{i}/{len(selected)}] {name}: compile {row['compile_s']:.2f} s, ours "
                          f"{fmt_ms(row['ours_ms'])} ms, numpy {fmt_ms(row['numpy_ms'])} ms "
                          f"({row['numpy_impl']}), ok={row['ok']}", file=sys.stderr, flush=True)
        elapsed = time.perf_counter() - t0
    finally:
        if tmp is not None:
            tmp.cleanup()

    doc = {
        "benchmark": "default_schedules",
        "date": today,
        "timestamp": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": env,
        "settings": {"repeat_seconds": args.repeat_seconds, "min_runs": MIN_RUNS,
                     "blas_settle_s": BLAS_SETTLE_S, "rtol": RTOL, "atol": ATOL, "quick": args.quick,
                     "filter": args.filter, "compile_cache": cache_note, "gelu_erf": erf_name,
                     "inputs": "op.random_inputs(0)"},
        "elapsed_s": elapsed,
        "other_load_cores": {"before_start": before.cores, "during_run": whole.cores,
                             "note": "CPU used by other processes, in cores on average (/proc/stat "
                                     "busy time minus this process's CPU time)"},
        "loadavg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "rows": rows,
    }
    text = report(doc)
    print(text)

    suffix = "-quick" if args.quick else "-filtered" if args.filter else ""
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"default_schedules-{today}{suffix}"
    json_path, md_path = args.out / f"{stem}.json", args.out / f"{stem}.md"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    md_path.write_text(text)
    print(f"wrote {json_path} and {md_path} ({elapsed:.0f} s)", file=sys.stderr)
    return 0 if all(r["ok"] and not r["error"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
