"""Versions stamped on every record, so incompatible records are kept but never applied."""
from __future__ import annotations

from importlib import metadata

try:
    AUTOSCHED_VERSION = metadata.version("autosched")
except metadata.PackageNotFoundError:  # running from a source tree
    AUTOSCHED_VERSION = "0.0.0+source"


def codegen_version() -> str:
    from codegen.cache import CODEGEN_VERSION
    from codegen.numba_math import MATH_VERSION
    return f"{CODEGEN_VERSION}.m{MATH_VERSION}"
