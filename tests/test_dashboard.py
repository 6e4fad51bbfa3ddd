"""The dashboard rendered from databases filled by real tuning and bench runs."""
import dataclasses
import json
import os
import re
import threading
import urllib.error
import urllib.request

import pytest
from markupsafe import escape
from hypothesis import given, strategies as st

from schedules import as_target, ops
from tuner import Database, tune
from tuner.baselines import Workload
from tuner.bench import run_bench
from tuner.cli import main
from tuner.dashboard import DashboardError, load_snapshot, render_site, write_site
from tuner.dashboard.figures import convergence_series, ranks, spearman
from tuner.measure import MeasureOptions
from tuner.models import SCHEMA_VERSION

FAST = MeasureOptions(min_seconds=0.001, min_repeats=2, build_timeout=60, run_timeout=60)
SOFTMAX = dict(M=8, N=32)
LAYER_NORM = dict(M=8, N=32)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A database with a real xgb run (softmax), a real random run (layer_norm) and a bench
    run; and a second database tuned under another target description, to compare with."""
    root = tmp_path_factory.mktemp("dash")
    db = Database(str(root / "records.db"))
    softmax, layer_norm = ops.softmax(**SOFTMAX), ops.layer_norm(**LAYER_NORM)
    tune(softmax, "cpu", database=db, trials=12, seed=0, strategy="xgb", options=FAST)
    tune(layer_norm, "cpu", database=db, trials=4, seed=0, strategy="random", options=FAST)
    run_bench([(Workload("softmax", SOFTMAX), 0)], db, trials=0, seconds=0.01, pause=0.0,
              progress=False, log=lambda *_: None, baselines=("numpy",))
    other = Database(str(root / "other.db"))
    one_core = dataclasses.replace(as_target("cpu"), cores=1)
    tune(softmax, one_core, database=other, trials=3, seed=1, strategy="random", options=FAST)
    return dict(root=root, db=db, url=str(root / "records.db"), other=str(root / "other.db"),
                softmax=softmax, layer_norm=layer_norm, one_core=one_core)


@pytest.fixture(scope="module")
def site(filled):
    out = filled["root"] / "site"
    write_site(filled["url"], str(out), [filled["other"]])
    return out


def _page(site, name) -> str:
    return (site / name).read_text(encoding="utf-8")


def _slug(filled, op, target="cpu"):
    snap = load_snapshot(filled["url"])
    return next(e.slug for t in snap.targets for e in t.entries
                if e.workload_key == op.workload_key and t.key == as_target(target).key)


def _figure(page: str, div_id: str) -> dict:
    m = re.search(rf'<script type="application/json" id="{div_id}-spec">(.*?)</script>', page, re.S)
    assert m, f"no figure {div_id}"
    return json.loads(m.group(1))


def test_every_page_is_written_with_its_assets(filled, site):
    snap = load_snapshot(filled["url"])
    [target] = snap.targets
    names = {p.name for p in site.iterdir()}
    expected = {"index.html", "compare.html", f"target-{target.slug}.html", f"costmodel-{target.slug}.html"}
    expected |= {f"{k}-{e.slug}.html" for e in target.entries for k in ("workload", "explorer")}
    assert expected <= names and len(target.entries) == 2
    assets = {p.name for p in (site / "assets").iterdir()}
    assert assets == {"plotly.min.js", "dashboard.js", "dashboard.css"}
    assert (site / "assets" / "plotly.min.js").stat().st_size > 1_000_000  # the real library
    for name in expected:  # offline: nothing is loaded from another host
        assert not re.search(r'(src|href)="(https?:)?//', _page(site, name)), name


def test_leaderboard_shows_best_times_gflops_speedups_and_trials(filled, site):
    db, softmax = filled["db"], filled["softmax"]
    page = _page(site, f"target-t{load_snapshot(filled['url']).targets[0].id}.html")
    best = db.best(softmax, "cpu")
    row = re.search(r'<tr>(\s*<td class="workload"><a href="workload-[^"]+">softmax M8 N32</a>.*?)</tr>',
                    page, re.S).group(1)
    cells = [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells[1] == softmax.name
    assert cells[2] == f"{best.seconds * 1e3:.3f}"
    assert cells[3] == f"{softmax.flops() / best.seconds / 1e9:.1f}"
    assert cells[4] != "–"  # % of peak: the bench run measured the peak
    [bench] = load_snapshot(filled["url"]).entry(_slug(filled, softmax)).bench
    assert cells[5] == f"{bench.seconds['numpy'] / bench.ours:.2f}x"
    assert cells[6] == "first run"  # nothing earlier to have beaten
    assert cells[7] == str(len(db.records(softmax, "cpu")))
    assert re.search(r">layer_norm 8x32 32 32<", page)  # never benched: named by its shapes


def test_convergence_is_best_so_far_per_run(filled, site):
    softmax = filled["softmax"]
    page = _page(site, f"workload-{_slug(filled, softmax)}.html")
    fig = _figure(page, "by-trial")
    [trace] = fig["data"]
    seconds = [r.seconds for r in filled["db"].records(softmax, "cpu")]
    expected = [min(s for s in seconds[:n] if s is not None) * 1e3 for n in range(1, len(seconds) + 1)]
    assert trace["x"] == list(range(1, len(seconds) + 1))
    assert trace["y"] == pytest.approx(expected)
    assert "xgb" in trace["name"]
    assert _figure(page, "by-time")["data"][0]["y"] == pytest.approx(expected)


def test_explorer_shows_best_against_default_and_the_best_kernel_source(filled, site):
    from codegen import kernel_source
    softmax = filled["softmax"]
    best = filled["db"].best(softmax, "cpu")
    page = _page(site, f"explorer-{_slug(filled, softmax)}.html")
    assert str(escape(kernel_source(softmax, "cpu", best.config))) in page
    default = softmax.space("cpu").default()
    changed = {k for k in default if json.dumps(default[k]) != json.dumps(best.config[k])}
    shown = set(re.findall(r'<tr class="changed"><td>([^<]+)</td>', page))
    assert shown == changed
    assert page.count('<tr class="best">') == 1
    assert len(re.findall(r"<tr( class=\"best\")?>\s*<td class=\"num\">\d+</td>", page)) == 12


def test_cost_model_page_reports_saved_scores_and_a_held_out_check(filled, site):
    page = _page(site, f"costmodel-t{load_snapshot(filled['url']).targets[0].id}.html")
    saved = _figure(page, "saved-ranks")
    traces = [t for t in saved["data"] if t["name"] != "perfect ranking"]
    scored = [r for r in filled["db"].records(filled["softmax"], "cpu") if r.predicted is not None and r.error is None]
    assert [t["name"] for t in traces] == ["softmax M8 N32"] and len(traces[0]["x"]) == len(scored) > 0
    assert sorted(traces[0]["x"]) == ranks(sorted(r.seconds for r in scored))
    assert "held-ranks-spec" in page  # 12 records: the older 6 train, the newer 6 are ranked


def test_compare_page_offers_targets_of_both_databases(filled, site):
    page = _page(site, "compare.html")
    data = json.loads(re.search(r'<script type="application/json" id="compare-data">(.*?)</script>',
                                page, re.S).group(1))
    keys = [t["label"].split(" · ", 1)[1] for t in data["targets"]]
    assert keys == [as_target("cpu").key, filled["one_core"].key]
    softmax_key = filled["softmax"].workload_key
    first, second = (data["best"][t["id"]] for t in data["targets"])
    assert first[softmax_key]["seconds"] == filled["db"].best(filled["softmax"], "cpu").seconds
    assert second[softmax_key]["seconds"] == Database(filled["other"]).best(filled["softmax"], filled["one_core"]).seconds


def test_empty_databases_give_an_empty_state(tmp_path):
    fresh = tmp_path / "fresh.db"
    Database(str(fresh)).close()           # tables, no records
    blank = tmp_path / "blank.db"
    blank.write_bytes(b"")                 # a new SQLite file, no tables at all
    for path in (fresh, blank):
        pages = render_site(load_snapshot(str(path)))
        assert list(pages) == ["index.html"]
        assert "No tuning records yet" in pages["index.html"] and "autosched tune" in pages["index.html"]


def test_older_newer_and_foreign_databases_give_clear_messages(tmp_path, filled, capsys):
    import sqlite3
    old = tmp_path / "old.db"
    _copy_database(filled["url"], old)
    with sqlite3.connect(old) as c:
        c.execute("UPDATE autosched_meta SET value='3' WHERE key='schema_version'")
    with pytest.raises(DashboardError, match=r"schema version 3, older .*autosched upgrade --database"):
        load_snapshot(str(old))
    assert main(["dashboard", "--database", str(old), "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "autosched upgrade" in err and "Traceback" not in err
    newer = tmp_path / "newer.db"
    _copy_database(filled["url"], newer)
    with sqlite3.connect(newer) as c:
        c.execute("UPDATE autosched_meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(DashboardError, match="newer than this autosched"):
        load_snapshot(str(newer))
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(DashboardError, match="not an autosched records database"):
        load_snapshot(str(foreign))
    with pytest.raises(DashboardError, match="no records database at"):
        load_snapshot(str(tmp_path / "missing.db"))
    assert not (tmp_path / "missing.db").exists()  # reading never creates a database


def test_upgrade_command_migrates_an_old_database_for_the_dashboard(tmp_path, capsys):
    import sqlite3
    path = tmp_path / "v3.db"
    db = Database(str(path))
    op = ops.softmax(4, 8)
    tune(op, "cpu", database=db, trials=2, seed=0, strategy="random", options=FAST)
    db.close()
    with sqlite3.connect(path) as c:  # what version 3 wrote
        c.execute("ALTER TABLE records DROP COLUMN predicted")
        c.execute("ALTER TABLE workloads DROP COLUMN definition")
        c.execute("DROP TABLE confirmations")
        c.execute("UPDATE autosched_meta SET value='3' WHERE key='schema_version'")
    assert main(["upgrade", "--database", str(path)]) == 0
    assert f"schema version {SCHEMA_VERSION}" in capsys.readouterr().out
    snap = load_snapshot(str(path))
    [entry] = snap.targets[0].entries
    assert len(entry.records) == 2 and entry.operator is None  # definitions were not stored then
    pages = render_site(snap)
    assert "recorded before autosched stored operator definitions" in pages[f"explorer-{entry.slug}.html"]


def test_dashboard_command_writes_the_site(filled, tmp_path, capsys):
    out = tmp_path / "cli-site"
    assert main(["dashboard", "--database", filled["url"], "--out", str(out), "--quiet"]) == 0
    assert "open" in capsys.readouterr().out and (out / "index.html").exists()
    assert main(["dashboard", "--database", filled["url"]]) == 1  # neither --out nor --serve
    assert "exactly one of --out" in capsys.readouterr().err


def test_live_server_serves_pages_and_refreshes_when_records_arrive(tmp_path):
    from tuner.dashboard.serve import LiveSite, make_server
    path = tmp_path / "live.db"
    db = Database(str(path))
    site = LiveSite(str(path))
    server = make_server(site, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"

    def get(name):
        with urllib.request.urlopen(base + name, timeout=30) as r:
            return r.read().decode()
    try:
        first = json.loads(get("api/version"))["version"]
        assert "No tuning records yet" in get("")
        assert 'name="autosched-live"' in get("index.html")
        op = ops.softmax(4, 16)
        tune(op, "cpu", database=db, trials=2, seed=0, strategy="random", options=FAST)
        assert json.loads(get("api/version"))["version"] != first
        index = get("index.html")
        assert as_target("cpu").key in index
        slug = load_snapshot(str(path)).targets[0].slug
        assert ">softmax 4x16<" in get(f"target-{slug}.html")
        assert len(get("assets/plotly.min.js")) > 1_000_000
        with pytest.raises(urllib.error.HTTPError) as err:
            get("workload-w999-t999.html")
        assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
        site.close()


@given(st.lists(st.floats(0.001, 1e3, allow_nan=False), min_size=1, max_size=30))
def test_ranks_are_a_tie_aware_permutation(values):
    r = ranks(values)
    assert sorted(r) == pytest.approx(ranks(sorted(values)))
    assert sum(r) == pytest.approx(len(values) * (len(values) + 1) / 2)
    for i in range(len(values)):
        for j in range(len(values)):
            if values[i] < values[j]:
                assert r[i] < r[j]


@given(st.lists(st.floats(0.001, 1e3, allow_nan=False), min_size=3, max_size=30, unique=True))
def test_spearman_is_one_for_the_same_order_and_minus_one_for_the_reverse(values):
    r = ranks(values)
    assert spearman(r, r) == pytest.approx(1.0)
    assert spearman(r, ranks(values, reverse=True)) == pytest.approx(-1.0)


def test_failed_candidates_count_as_trials_but_never_improve_the_best(filled):
    snap = load_snapshot(filled["url"])
    entry = snap.entry(_slug(filled, filled["softmax"]))
    broken = dataclasses.replace(entry.records[0], id=10**6, seconds=None, error="runtime_error")
    patched = dataclasses.replace(entry, records=(broken,) + entry.records)
    [series] = convergence_series(patched)
    [original] = convergence_series(entry)
    assert series["trials"] == [n + 1 for n in original["trials"]]
    assert series["best_ms"] == original["best_ms"]


def test_text_from_the_database_cannot_break_out_of_the_page(filled, tmp_path):
    import sqlite3
    path = tmp_path / "hostile.db"
    _copy_database(filled["url"], path)
    with sqlite3.connect(path) as c:
        c.execute("UPDATE bench_results SET label='</script><script>alert(1)</script>'")
        c.execute("UPDATE records SET error_message='<img src=x onerror=alert(1)>'")
    pages = render_site(load_snapshot(str(path)))
    for name, page in pages.items():
        assert "<script>alert(1)</script>" not in page, name
        assert "<img src=x" not in page, name


# -- in a real browser: Debian's chromium driven by Playwright ------------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """CI installs chromium and sets AUTOSCHED_REQUIRE_BROWSER=1, so there these tests cannot skip."""
    required = os.environ.get("AUTOSCHED_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed")
    if not os.path.exists(CHROMIUM):
        if required:
            pytest.fail(f"{CHROMIUM} is missing; install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


class _Page:
    """A browser page that collects console errors and uncaught exceptions."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, url):
        self.page.goto(url)
        self.page.wait_for_load_state("load")
        return self.page

    def visible_rows(self, table_id):
        return self.page.eval_on_selector_all(f"#{table_id} tbody tr", "rows => rows.filter(r => !r.hidden).length")


def test_every_page_loads_without_console_errors_and_draws_its_plots(browser, site):
    p = _Page(browser)
    for name in sorted(x.name for x in site.iterdir() if x.suffix == ".html"):
        page = p.open((site / name).as_uri())
        expected_plots = page.eval_on_selector_all("[data-figure]", "d => d.length")
        drawn = page.eval_on_selector_all("[data-figure] .main-svg", "d => d.length")
        assert drawn >= expected_plots, f"{name}: {drawn} plot layers for {expected_plots} plots"
    assert p.errors == []


def test_leaderboard_lists_the_workloads_and_its_filters_and_sorting_work(browser, site, filled):
    p = _Page(browser)
    slug = load_snapshot(filled["url"]).targets[0].slug
    page = p.open((site / f"target-{slug}.html").as_uri())
    names = page.eval_on_selector_all("#leaderboard tbody td.workload a:first-child", "a => a.map(x => x.textContent)")
    assert sorted(names) == ["layer_norm 8x32 32 32", "softmax M8 N32"]
    assert page.eval_on_selector_all("#speedups .bars path", "b => b.length") >= 1  # a bar was drawn
    page.fill("input[data-filter-table=leaderboard]", "softmax")
    assert p.visible_rows("leaderboard") == 1
    assert page.text_content("[data-count-for=leaderboard]") == "1 of 2 shown"
    page.fill("input[data-filter-table=leaderboard]", "")
    page.select_option("select[data-filter-table=leaderboard]", "layer_norm")
    assert p.visible_rows("leaderboard") == 1
    assert page.eval_on_selector("#leaderboard tbody tr:not([hidden]) td.workload a", "a => a.textContent") \
        == "layer_norm 8x32 32 32"
    page.select_option("select[data-filter-table=leaderboard]", "")
    for _ in range(2):  # ascending, then descending
        page.click("#leaderboard th:nth-child(3)")
        times = page.eval_on_selector_all("#leaderboard tbody tr td:nth-child(3)", "c => c.map(x => +x.dataset.sort)")
        order = page.eval_on_selector("#leaderboard th:nth-child(3)", "h => h.dataset.order")
        assert times == sorted(times, reverse=order == "desc")
    assert p.errors == []


def test_convergence_plot_draws_one_point_per_trial(browser, site, filled):
    p = _Page(browser)
    page = p.open((site / f"workload-{_slug(filled, filled['softmax'])}.html").as_uri())
    points = page.eval_on_selector_all("#by-trial .scatterlayer .points path", "p => p.length")
    assert points == len(filled["db"].records(filled["softmax"], "cpu"))
    assert p.errors == []


def test_compare_page_compares_the_chosen_targets(browser, site, filled):
    p = _Page(browser)
    page = p.open((site / "compare.html").as_uri())
    options = page.eval_on_selector_all("#compare-b option", "o => o.map(x => x.value)")
    assert len(options) == 2
    page.select_option("#compare-a", options[0])
    page.select_option("#compare-b", options[1])
    rows = page.eval_on_selector_all("#compare-table tbody tr", "r => r.map(x => x.textContent)")
    assert len(rows) == 1 and rows[0].startswith("softmax M8 N32")
    assert page.eval_on_selector_all("#compare-plot .bars path", "b => b.length") == 1
    page.select_option("#compare-b", options[0])  # a target against itself: every ratio is 1
    ratios = page.eval_on_selector_all("#compare-table tbody td:nth-child(4)", "c => c.map(x => x.textContent)")
    assert ratios == ["1.00x", "1.00x"]
    assert p.errors == []


def test_live_page_reloads_when_records_arrive(browser, tmp_path):
    from tuner.dashboard.serve import LiveSite, make_server
    path = tmp_path / "live.db"
    db = Database(str(path))
    site = LiveSite(str(path))
    server = make_server(site, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    p = _Page(browser)
    try:
        page = p.open(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        assert "No tuning records yet" in page.text_content("main")
        tune(ops.softmax(4, 16), "cpu", database=db, trials=2, seed=0, strategy="random", options=FAST)
        page.wait_for_selector("#targets", timeout=20000)  # the polling script reloaded the page
        assert as_target("cpu").key in page.text_content("#targets")
    finally:
        server.shutdown()
        server.server_close()
        site.close()
    assert p.errors == []


def test_missing_dashboard_dependencies_are_named(monkeypatch, filled, tmp_path, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "plotly", None)  # as if the extra was not installed
    assert main(["dashboard", "--database", filled["url"], "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "pip install 'autosched[dashboard]'" in err and "plotly" in err


def test_serve_command_serves_until_interrupted(filled):
    import signal
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "dashboard", "--database", filled["url"],
                             "--serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with urllib.request.urlopen(url + "index.html", timeout=30) as r:
            assert as_target("cpu").key in r.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err


def test_what_got_faster_compares_the_newest_run_with_the_best_before_it(filled):
    from tuner.dashboard.data import Run, Snapshot
    snap = load_snapshot(filled["url"])
    entry = snap.entry(_slug(filled, filled["softmax"]))
    assert entry.previous_best is None and entry.gain is None  # one run so far: nothing to beat
    # Split the real records into two runs: the last four measured by a newer one.
    recs = entry.records
    newer = Run(10**6, "xgb", 1, "host", recs[-4].measured_at)
    split = tuple(r if i < len(recs) - 4 else dataclasses.replace(r, run_id=newer.id) for i, r in enumerate(recs))
    valid = [r.seconds for r in recs if r.error is None]
    # A newer run that beat the earlier best, and one that did not.
    for scale in (0.5, 2.0):
        last = tuple(dataclasses.replace(r, seconds=r.seconds * scale) if r.run_id == newer.id else r for r in split)
        e = dataclasses.replace(entry, records=last, runs={**entry.runs, newer.id: newer})
        before = min(valid[:-4])
        assert e.previous_best == before
        assert e.gain == pytest.approx(before / min(before, min(valid[-4:]) * scale))
        t = dataclasses.replace(snap.targets[0], entries=(e,))
        pages = render_site(Snapshot(snap.url, snap.label, (t,), snap.version))
        listed = ">softmax M8 N32</a>" in pages["index.html"].split("What got faster", 1)[1]
        assert listed == (e.gain > 1.0)
        assert f"{e.gain:.2f}x" in pages[f"target-{t.slug}.html"]


def _copy_database(src, dst) -> None:
    """A consistent copy of a SQLite records file, with what its write-ahead log still holds
    (a plain file copy misses tables whose pages have not been checkpointed yet)."""
    import sqlite3
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)
