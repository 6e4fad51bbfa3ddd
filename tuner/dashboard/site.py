"""Rendering the dashboard's pages from snapshots with Jinja2, and writing the static site."""
from __future__ import annotations

import json
import os

from . import figures
from .data import load_snapshot

ASSETS = ("dashboard.css", "dashboard.js")
BASELINE_ORDER = ("numpy", "pytorch", "onnxruntime", "openvino", "cupy")
HISTORY_ROWS = 2000
PAGE_PREFIXES = ("target-", "costmodel-", "workload-", "explorer-")


def template_environment():
    """The Jinja2 environment of the dashboard's templates, with its filters."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
    env = Environment(loader=PackageLoader("tuner.dashboard", "templates"),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(ms=_ms, num=_num, when=_when, script_json=_script_json)
    return env


def _script_json(text: str):
    """JSON inside a <script> element: no character of it can close the element."""
    from markupsafe import Markup
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _ms(seconds) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.3f}"


def _num(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _when(value) -> str:
    return "–" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _target_of(key: str):
    from schedules import as_target
    from schedules.target import Target
    host = as_target("cpu")
    if host.key == key:
        return host
    try:
        return Target.from_key(key)
    except ValueError:
        return host


def _baselines(target) -> list:
    seen = {impl for e in target.entries for b in e.bench[:1] for impl in b.seconds if impl != "autosched"}
    return [b for b in BASELINE_ORDER if b in seen] + sorted(seen - set(BASELINE_ORDER))


def overview_rows(snapshot) -> list:
    rows = []
    for t in snapshot.targets:
        last = [e.last_measured for e in t.entries if e.last_measured is not None]
        rows.append(dict(target=t, workloads=len(t.entries), records=t.record_count,
                         errors=sum(sum(e.errors.values()) for e in t.entries),
                         bench_runs=len({b.run_id for e in t.entries for b in e.bench}),
                         last=max(last) if last else None))
    return rows


def improvements(snapshot, limit: int = 15) -> list:
    """What got faster: workloads whose newest tuning run beat their earlier best, most first."""
    rows = [dict(target=t, entry=e, before=e.previous_best, now=e.fastest.seconds, gain=e.gain, run=e.newest_run)
            for t in snapshot.targets for e in t.entries if e.gain is not None and e.gain > 1.0]
    return sorted(rows, key=lambda r: -r["gain"])[:limit]


def leaderboard_rows(target) -> list:
    """One row per workload: best record, GFLOPS, % of peak, bench speedups, errors, last tuned."""
    peak = target.peak_gflops
    rows = []
    for e in target.entries:
        best, flops = e.best, e.flops
        gflops = flops / best.seconds / 1e9 if best and flops else None
        bench = e.bench[0] if e.bench else None
        rows.append(dict(
            entry=e, label=e.label, op=e.op_name, best=best.seconds if best else None, gflops=gflops,
            peak_pct=100 * gflops / peak if gflops and peak else None,
            speedups=bench.speedups() if bench else {}, bench_ms=bench.ours if bench else None,
            gain=e.gain, newest_run=e.newest_run,
            trials=len(e.records), errors=dict(sorted(e.errors.items())),
            error_count=sum(e.errors.values()), last=e.last_measured))
    return rows


def cost_model_rows(target, held_out: dict) -> list:
    """Per workload: how the scores saved at tuning time, and a held-out refit, rank the
    measured candidates (Spearman rho, and where the fastest candidate was ranked)."""
    rows = []
    for e in target.entries:
        pred, meas, _ = figures.rank_pairs(e)
        h_pred, h_meas = held_out.get(e.slug, ([], []))
        rows.append(dict(entry=e, label=e.label, scored=len(pred), valid=len(e.valid),
                         rho=figures.spearman(pred, meas), best_predicted_rank=_rank_of_fastest(pred, meas),
                         pairs=(pred, meas), held_out=len(h_pred), held_pairs=(h_pred, h_meas),
                         held_rho=figures.spearman(h_pred, h_meas),
                         held_best_rank=_rank_of_fastest(h_pred, h_meas)))
    return rows


def _rank_of_fastest(pred, meas):
    return pred[meas.index(min(meas))] if meas else None


def explorer_context(entry, target_key: str) -> dict:
    """Best config against the default one, the best kernel's source, and the history."""
    best = entry.best
    op = entry.operator
    default, source, problem = {}, None, None
    if op is None:
        problem = ("this workload was recorded before autosched stored operator definitions; "
                   "tune it again (any trial count) to show its default config and kernel source")
    else:
        try:
            target = _target_of(target_key)
            default = dict(op.space(target).default())
            if best is not None:
                from codegen import kernel_source
                from schedules import Config
                source = kernel_source(op, target, Config.from_json(best.config))
        except (ValueError, KeyError, TypeError) as exc:
            problem = f"cannot regenerate the kernel of the best config with this autosched: {exc}"
    best_config = json.loads(best.config) if best else {}
    knobs = sorted(set(default) | set(best_config))
    config_rows = [dict(knob=k, default=_show(default.get(k)), best=_show(best_config.get(k)),
                        changed=k in default and k in best_config and _show(default[k]) != _show(best_config[k]))
                   for k in knobs]
    history = [dict(n=n, r=r, run=entry.runs.get(r.run_id)) for n, r in enumerate(entry.records, 1)]
    return dict(best=best, config_rows=config_rows, source=source, problem=problem,
                history=history[-HISTORY_ROWS:], history_cut=max(0, len(history) - HISTORY_ROWS))


def _show(value) -> str:
    if value is None:
        return "–"
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


def compare_data(snapshots) -> dict:
    """Every target of every database with its best time per workload, for the browser to
    compare any two of them."""
    targets, best = [], {}
    for si, snap in enumerate(snapshots):
        for t in snap.targets:
            tid = f"{si}:{t.id}"
            prefix = f"{snap.label} · " if len(snapshots) > 1 else ""
            targets.append(dict(id=tid, label=f"{prefix}{t.key}"))
            best[tid] = {e.workload_key: dict(label=e.label, seconds=e.best.seconds)
                         for e in t.entries if e.best is not None}
    return dict(targets=targets, best=best)


def page_names(snapshot) -> list:
    """Every page of the site for this snapshot."""
    names = ["index.html"]
    if snapshot.empty:
        return names
    for t in snapshot.targets:
        names += [f"target-{t.slug}.html", f"costmodel-{t.slug}.html"]
        names += [f"{kind}-{e.slug}.html" for e in t.entries for kind in ("workload", "explorer")]
    return names + ["compare.html"]


def render_page(snapshot, name: str, compare=(), live: bool = False, env=None) -> str | None:
    """One page's HTML, or None when the snapshot has no such page."""
    env = env or template_environment()
    common = dict(snapshot=snapshot, live=live, version=snapshot.version)
    kind, _, slug = name.removesuffix(".html").partition("-")
    if name == "index.html":
        return env.get_template("index.html").render(page="index", title="Targets",
                                                     rows=overview_rows(snapshot),
                                                     faster=improvements(snapshot), **common)
    if snapshot.empty:
        return None
    if name == "compare.html":
        return env.get_template("compare.html").render(
            page="compare", title="Compare", data=compare_data((snapshot,) + tuple(compare)),
            figure=figures.empty_compare_figure(), **common)
    target = next((t for t in snapshot.targets if t.slug == slug), None)
    if kind == "target" and target is not None:
        rows, baselines = leaderboard_rows(target), _baselines(target)
        benched = [r for r in rows if r["speedups"]]
        return env.get_template("target.html").render(
            page="target", title=f"Leaderboard · {target.key}", target=target, rows=rows,
            baselines=baselines, ops=sorted({r["op"] for r in rows}),
            speedup_fig=figures.speedup_figure(benched, baselines) if benched else None, **common)
    if kind == "costmodel" and target is not None:
        from .model_check import held_out_ranks
        rows = cost_model_rows(target, held_out_ranks(snapshot.url, target))
        saved = [(r["label"], *r["pairs"]) for r in rows if r["scored"]]
        held = [(r["label"], *r["held_pairs"]) for r in rows if r["held_out"]]
        return env.get_template("costmodel.html").render(
            page="costmodel", title=f"Cost model · {target.key}", target=target, rows=rows,
            saved_fig=figures.rank_figure(saved, "Scores saved at tuning time: predicted against measured rank")
            if saved else None,
            held_fig=figures.rank_figure(held, "Held-out check: fitted on older records, ranking newer ones")
            if held else None, **common)
    entry = snapshot.entry(slug)
    if entry is None or kind not in ("workload", "explorer"):
        return None
    target = next(t for t in snapshot.targets if t.id == entry.target_id)
    if kind == "workload":
        by_trial, by_time = figures.convergence_figures(entry)
        return env.get_template("workload.html").render(
            page="workload", title=f"Convergence · {entry.label}", target=target, entry=entry,
            series=figures.convergence_series(entry), by_trial=by_trial, by_time=by_time, **common)
    return env.get_template("explorer.html").render(
        page="explorer", title=f"Records · {entry.label}", target=target, entry=entry,
        **explorer_context(entry, target.key), **common)


def render_site(snapshot, compare=(), live: bool = False) -> dict:
    """page file name -> HTML for every page of the site."""
    env = template_environment()
    return {name: render_page(snapshot, name, compare, live, env) for name in page_names(snapshot)}


def asset_bytes(name: str) -> bytes:
    """The bundled files the pages load: plotly.js from the plotly package, and ours."""
    if name == "plotly.min.js":
        return _plotly_js().encode()
    if name not in ASSETS:
        raise KeyError(name)
    with open(os.path.join(os.path.dirname(__file__), "assets", name), "rb") as f:
        return f.read()


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs
    return get_plotlyjs()


def write_site(url: str, out_dir: str, compare_urls=(), progress: bool = False) -> list:
    """Render every page of the database at `url` into out_dir; returns the files written."""
    snapshot = load_snapshot(url)
    others = tuple(load_snapshot(u) for u in compare_urls)
    names = page_names(snapshot)
    pages = set(names)
    os.makedirs(os.path.join(out_dir, "assets"), exist_ok=True)
    if progress:
        from tqdm import tqdm
        names = tqdm(names, desc="rendering pages", unit="page", dynamic_ncols=True)
    env, written = template_environment(), []
    for name in names:
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(render_page(snapshot, name, others, env=env))
        written.append(path)
    for name in ASSETS + ("plotly.min.js",):
        path = os.path.join(out_dir, "assets", name)
        with open(path, "wb") as f:
            f.write(asset_bytes(name))
        written.append(path)
    for name in os.listdir(out_dir):  # pages of workloads no longer in the database
        if name.endswith(".html") and name.startswith(PAGE_PREFIXES) and name not in pages:
            os.remove(os.path.join(out_dir, name))
    return written
