"""Plotly figures of the dashboard, as JSON specs the pages draw with the bundled plotly.js."""
from __future__ import annotations

import math

# One look for every plot: small margins, the page's font, hover on the nearest point.
_LAYOUT = dict(margin=dict(l=60, r=20, t=90, b=50), template="plotly_white", hovermode="closest",
               font=dict(family="system-ui, sans-serif", size=12), height=380,
               title=dict(y=0.97, yanchor="top"),
               legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom"))


def _figure(*traces):
    """A figure with the dashboard's look, which each plot's own layout then refines."""
    import plotly.graph_objects as go
    fig = go.Figure(list(traces))
    fig.update_layout(**_LAYOUT)
    return fig


def _spec(fig, **overrides) -> str:
    fig.update_layout(**overrides)
    return fig.to_json()


def _run_name(run) -> str:
    if run is None:
        return "imported records"
    return f"run {run.id} ({run.strategy}, seed {run.seed}, {run.started_at:%Y-%m-%d %H:%M})"


def convergence_series(entry) -> list:
    """Per run: trial numbers, wall seconds since the run started, and best-so-far times in ms.
    Failed candidates count as trials but cannot improve the best."""
    by_run: dict = {}
    for r in entry.records:
        by_run.setdefault(r.run_id if r.run_id in entry.runs else None, []).append(r)
    out = []
    for run_id, recs in by_run.items():
        run = entry.runs.get(run_id)
        start = run.started_at if run is not None else recs[0].measured_at
        trials, wall, best, cur = [], [], [], math.inf
        for n, r in enumerate(recs, 1):
            if r.error is None and r.seconds is not None:
                cur = min(cur, r.seconds)
            if math.isfinite(cur):
                trials.append(n)
                wall.append(max(0.0, (r.measured_at - start).total_seconds()))
                best.append(cur * 1e3)
        out.append(dict(name=_run_name(run), strategy=run.strategy if run else "imported",
                        trials=trials, wall=wall, best_ms=best))
    return out


def convergence_figures(entry) -> tuple:
    """(best-so-far against trials, against wall time)."""
    import plotly.graph_objects as go
    by_trial, by_time = _figure(), _figure()
    for s in convergence_series(entry):
        by_trial.add_trace(go.Scatter(x=s["trials"], y=s["best_ms"], mode="lines+markers",
                                      name=s["name"], line_shape="hv"))
        by_time.add_trace(go.Scatter(x=s["wall"], y=s["best_ms"], mode="lines+markers",
                                     name=s["name"], line_shape="hv"))
    by_trial.update_layout(title="Best so far against trials", xaxis_title="trial",
                           yaxis_title="best time (ms, log)", yaxis_type="log")
    by_time.update_layout(title="Best so far against wall time", xaxis_title="seconds since the run started",
                          yaxis_title="best time (ms, log)", yaxis_type="log")
    return _spec(by_trial), _spec(by_time)


def ranks(values, reverse: bool = False) -> list:
    """1-based ranks, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=reverse)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def rank_pairs(entry) -> tuple:
    """(predicted ranks, measured ranks, record ids) of the correct records a cost model scored:
    rank 1 is the candidate the model liked most, and the fastest one."""
    scored = [r for r in entry.valid if r.predicted is not None]
    return (ranks([r.predicted for r in scored], reverse=True), ranks([r.seconds for r in scored]),
            [r.id for r in scored])


def spearman(a, b) -> float | None:
    """Rank correlation of two rank lists: 1 is a perfect ordering, 0 is no better than chance."""
    n = len(a)
    if n < 3:
        return None
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va, vb = sum((x - ma) ** 2 for x in a), sum((y - mb) ** 2 for y in b)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else None


def rank_figure(series, title: str) -> str:
    """Predicted rank against measured rank, one trace per workload: (label, predicted, measured)."""
    import plotly.graph_objects as go
    fig = _figure()
    top = 1
    for label, pred, meas in series:
        if not pred:
            continue
        top = max(top, len(pred))
        fig.add_trace(go.Scatter(x=meas, y=pred, mode="markers", name=label, marker=dict(size=7, opacity=0.7)))
    fig.add_trace(go.Scatter(x=[1, top], y=[1, top], mode="lines", name="perfect ranking",
                             line=dict(dash="dot", color="gray")))
    fig.update_layout(title=title, height=520, xaxis_title="measured rank (1 = fastest)",
                      yaxis_title="predicted rank (1 = best score)")
    # One trace per workload: a long legend goes beside the plot, not above it.
    return _spec(fig, legend=dict(orientation="v", x=1.02, y=1, yanchor="top", font=dict(size=11)),
                 margin=dict(l=60, r=20, t=60, b=50))


def speedup_figure(rows, baselines) -> str:
    """Grouped bars: each baseline's time over autosched's, per workload (above 1: faster)."""
    import plotly.graph_objects as go
    fig = _figure()
    labels = [r["label"] for r in rows]
    for b in baselines:
        fig.add_trace(go.Bar(x=labels, y=[r["speedups"].get(b) for r in rows], name=f"vs {b}"))
    fig.add_hline(y=1.0, line_dash="dot", line_color="gray")
    fig.update_layout(title="Speedup against each baseline (same bench run; log scale)", barmode="group",
                      yaxis_title="baseline time / autosched time", yaxis_type="log",
                      xaxis_tickangle=-45, xaxis_tickfont_size=10, xaxis_automargin=True, height=760)
    return _spec(fig)


def empty_compare_figure() -> str:
    """The comparison page's plot; its bars are filled in the browser for the chosen targets."""
    import plotly.graph_objects as go
    fig = _figure(go.Bar(x=[], y=[], name="A time / B time"))
    fig.add_hline(y=1.0, line_dash="dot", line_color="gray")
    fig.update_layout(title="Best time of A over best time of B (above 1: B is faster)",
                      yaxis_title="ratio", xaxis_tickangle=-30, height=420)
    return _spec(fig)
