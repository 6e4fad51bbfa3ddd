"""`autosched dashboard --serve`: the same pages, rendered on request from the newest data."""
from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .data import DashboardError, data_version, load_snapshot, open_engine, schema_state
from .site import ASSETS, asset_bytes, render_page, template_environment


class LiveSite:
    """Pages of one database (and those it is compared with), re-read when its data changes."""

    def __init__(self, url: str, compare_urls=()):
        self.url, self.compare_urls = url, tuple(compare_urls)
        self._lock = threading.Lock()
        self._snapshot = None
        self._pages: dict = {}   # page name -> HTML, for the current snapshot only
        self._env = None
        self._engine = open_engine(url)
        self.version()  # refuse a database of another schema before serving anything

    def version(self) -> str:
        if schema_state(self._engine, self.url) == "empty":
            return "empty"
        return data_version(self._engine)

    def snapshot(self):
        with self._lock:
            if self._snapshot is None or self._snapshot[0] != self.version():
                snap = load_snapshot(self.url)
                others = tuple(load_snapshot(u) for u in self.compare_urls)
                self._snapshot = (snap.version, snap, others)
                self._pages = {}
            return self._snapshot[1], self._snapshot[2]

    def page(self, name: str) -> str | None:
        """A page rendered once per data version: the cost-model page refits a model, and
        the open pages are requested again on every reload."""
        while True:
            snap, others = self.snapshot()
            with self._lock:
                if self._snapshot[1] is not snap:  # the data changed meanwhile: take the newer
                    continue
                if name not in self._pages:
                    self._env = self._env or template_environment()
                    self._pages[name] = render_page(snap, name, others, live=True, env=self._env)
                return self._pages[name]

    def close(self) -> None:
        self._engine.dispose()


def make_server(site: LiveSite, host: str = "127.0.0.1", port: int = 8050) -> ThreadingHTTPServer:
    assets = {name: asset_bytes(name) for name in ASSETS + ("plotly.min.js",)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server API)
            path = self.path.split("?", 1)[0].lstrip("/") or "index.html"
            try:
                if path == "api/version":
                    return self._send(json.dumps({"version": site.version()}).encode(), "application/json")
                if path.startswith("assets/") and path[len("assets/"):] in assets:
                    kind = "text/css" if path.endswith(".css") else "text/javascript"
                    return self._send(assets[path[len("assets/"):]], kind, cache=True)
                html = site.page(path)
            except DashboardError as exc:
                return self._send(str(exc).encode(), "text/plain; charset=utf-8", HTTPStatus.INTERNAL_SERVER_ERROR)
            if html is None:
                return self._send(f"no page {path!r} in this dashboard".encode(), "text/plain; charset=utf-8",
                                  HTTPStatus.NOT_FOUND)
            self._send(html.encode(), "text/html; charset=utf-8")

        def _send(self, body: bytes, kind: str, status=HTTPStatus.OK, cache: bool = False):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # requests are not worth a line each on the console
            pass

    return ThreadingHTTPServer((host, port), Handler)
