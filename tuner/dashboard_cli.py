"""The `autosched dashboard` and `autosched upgrade` subcommands."""
from __future__ import annotations

import argparse

from .commands import UsageError


def _dependencies():
    try:
        import jinja2  # noqa: F401
        import plotly  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"autosched dashboard needs Jinja2 and Plotly ({exc.name} is missing): "
                         f"pip install 'autosched[dashboard]'") from None


def cmd_dashboard(args) -> int:
    _dependencies()
    if (args.out is None) == (not args.serve):
        raise UsageError("give exactly one of --out DIR (write a static site) and --serve (serve it live)")
    if args.serve:
        return _serve(args)
    from .dashboard import write_site
    files = write_site(args.database, args.out, args.compare or (), progress=not args.quiet)
    pages = sum(1 for f in files if f.endswith(".html"))
    print(f"wrote {pages} pages and their assets to {args.out}; open {args.out}/index.html")
    return 0


def _serve(args) -> int:
    from .dashboard.serve import LiveSite, make_server
    site = LiveSite(args.database, args.compare or ())
    try:
        server = make_server(site, args.host, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}; "
                         f"pick another --port") from None
    host, port = server.server_address[:2]
    print(f"serving {args.database} on http://{host}:{port}/ (pages refresh as records arrive; "
          f"Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        site.close()
    return 0


def cmd_upgrade(args) -> int:
    from sqlalchemy import text

    import os

    from .records import Database
    if "://" not in args.database and not os.path.exists(args.database):
        raise UsageError(f"no records database at {args.database}; nothing to upgrade")
    db = Database(args.database)  # opening migrates the schema in place, in one transaction per step
    with db.engine.connect() as conn:
        version = conn.execute(text("SELECT value FROM autosched_meta WHERE key='schema_version'")).scalar()
    print(f"{db.url}: schema version {version}, records kept")
    db.close()
    return 0


def add_dashboard_commands(sub) -> None:
    d = sub.add_parser(
        "dashboard", help="see tuning results, convergence and speedups in a browser",
        description="Build the benchmarking dashboard from a records database alone: targets, "
                    "per-target leaderboards with speedups from `autosched bench`, convergence per "
                    "workload, cost-model accuracy, a record explorer and a comparison of two "
                    "targets or databases. Every asset is bundled: it works offline.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  autosched dashboard --database tuning.db --out site/\n"
               "  autosched dashboard --database tuning.db --serve --port 8050\n"
               "  autosched dashboard --database a.db --compare b.db --out site/")
    d.add_argument("--database", default="autosched.db", help="SQLAlchemy URL or SQLite path (default: ./autosched.db)")
    d.add_argument("--out", help="write a self-contained static site into this folder")
    d.add_argument("--serve", action="store_true", help="serve the pages live on --host:--port instead")
    d.add_argument("--port", type=int, default=8050, help="port for --serve (default: 8050; 0 picks a free one)")
    d.add_argument("--host", default="127.0.0.1", help="address for --serve (default: 127.0.0.1, this machine only)")
    d.add_argument("--compare", action="append", metavar="URL",
                   help="another records database whose targets the Compare page offers (repeatable)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_dashboard)

    u = sub.add_parser("upgrade", help="upgrade a records database to this version's schema",
                       description="Upgrade a records database written by an older autosched to this "
                                   "version's schema, in place; every record is kept.")
    u.add_argument("--database", default="autosched.db", help="SQLAlchemy URL or SQLite path")
    u.set_defaults(func=cmd_upgrade)
