"""Screenshots of every kind of dashboard page, rendered from a records database and taken in
Debian's chromium through Playwright.

    python benchmarks/dashboard_screenshots.py --database benchmarks/.bench/bench.db \
        --out benchmarks/results/dashboard-2026-11-25
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from tuner.dashboard import load_snapshot, write_site

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pages_to_shoot(snapshot) -> list:
    """(file name of the screenshot, page, full page?) for one page of each kind."""
    target = max(snapshot.targets, key=lambda t: len(t.entries))
    most_runs = max(target.entries, key=lambda e: (len(e.runs), len(e.records)))
    return [("index.png", "index.html", False),
            ("leaderboard.png", f"target-{target.slug}.html", True),
            ("convergence.png", f"workload-{most_runs.slug}.html", False),
            ("cost-model.png", f"costmodel-{target.slug}.html", True),
            ("explorer.png", f"explorer-{most_runs.slug}.html", False),
            ("compare.png", "compare.html", False)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="records database URL or SQLite path")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="browser executable")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright
    snapshot = load_snapshot(args.database)
    if snapshot.empty:
        print(f"{args.database} has no records to show", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as site, sync_playwright() as p:
        write_site(args.database, site)
        browser = p.chromium.launch(executable_path=args.chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        for png, name, full in pages_to_shoot(snapshot):
            page.goto(f"file://{os.path.join(site, name)}")
            if name == "compare.html":  # two different targets, when the database has them
                options = page.eval_on_selector_all("#compare-b option", "o => o.map(x => x.value)")
                if len(options) > 1:
                    page.select_option("#compare-a", options[0])
                    page.select_option("#compare-b", options[1])
            page.wait_for_timeout(500)
            page.screenshot(path=os.path.join(args.out, png), full_page=full)
            print(f"{png}: {name}")
        browser.close()
    if errors:
        print("console errors:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
