"""The benchmarking dashboard: a static or live site built from a records database alone."""
from .data import DashboardError, load_snapshot
from .site import render_site, write_site

__all__ = ["DashboardError", "load_snapshot", "render_site", "write_site"]
