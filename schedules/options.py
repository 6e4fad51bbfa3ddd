"""The one place where autosched reads environment variables, as typed options."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Options:
    cache_dir: Path        # compiled kernels; AUTOSCHED_CACHE_DIR, else $XDG_CACHE_HOME/autosched
    disk_cache: bool       # AUTOSCHED_DISK_CACHE=0 keeps compiled kernels in memory only
    num_threads: int | None  # AUTOSCHED_NUM_THREADS caps the threads of parallel kernels
    pin_threads: bool      # AUTOSCHED_PIN_THREADS=1 pins each kernel worker thread to a core
    tile_epilogue: bool    # AUTOSCHED_TILE_EPILOGUE=0 runs micro-kernel epilogues as a block pass
    pad_rows: bool         # AUTOSCHED_PAD_ROWS=0 splits every padded copy over channels
    skip_padding_taps: bool  # AUTOSCHED_SKIP_PADDING_TAPS=0 runs every tap of swapped conv tiles


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def num_threads() -> int | None:
    """AUTOSCHED_NUM_THREADS alone: read on every kernel call, so it avoids options()'s paths."""
    threads = os.environ.get("AUTOSCHED_NUM_THREADS")
    try:
        return int(threads) if threads else None
    except ValueError:
        raise ValueError(f"AUTOSCHED_NUM_THREADS must be an integer, got {threads!r}") from None


def options() -> Options:
    """Read the environment now, so tests and tools can change it between calls."""
    explicit = os.environ.get("AUTOSCHED_CACHE_DIR")
    if explicit:
        cache = Path(explicit)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache = Path(xdg) / "autosched"
    return Options(cache_dir=cache, disk_cache=_flag("AUTOSCHED_DISK_CACHE", True),
                   num_threads=num_threads(), pin_threads=pin_threads(), tile_epilogue=tile_epilogue(),
                   pad_rows=pad_rows(), skip_padding_taps=skip_padding_taps())


def pin_threads() -> bool:
    """AUTOSCHED_PIN_THREADS alone: read when the kernel thread pool starts. Off by default:
    a pinned worker cannot leave the core where the OS has put the caller, and the two then
    take turns on one core while the other idles (softmax 4096x1000 in 0.91-1.56 ms in three
    of five processes, against 0.60-0.70 ms unpinned). Unpinned workers are kept off the
    caller's current core instead (codegen/parallel.py)."""
    return _flag("AUTOSCHED_PIN_THREADS", False)


def tile_epilogue() -> bool:
    """AUTOSCHED_TILE_EPILOGUE alone: read when a micro-kernel stage is lowered. On by default:
    bias and relu epilogues run on each tile in registers (schedules/tile_epilogue.py); 0
    keeps the pass over each finished block, to compare the two (benchmarks/option_ab.py)."""
    return _flag("AUTOSCHED_TILE_EPILOGUE", True)


def pad_rows() -> bool:
    """AUTOSCHED_PAD_ROWS alone: read when a padded copy is planned. On by default: a copy only
    micro-kernels read unpacked is split between threads over image rows where they split
    pixels (schedules/padding.py); 0 splits it over channels as every other copy is, to
    compare (benchmarks/option_ab.py)."""
    return _flag("AUTOSCHED_PAD_ROWS", True)


def skip_padding_taps() -> bool:
    """AUTOSCHED_SKIP_PADDING_TAPS alone: read when a micro-kernel stage is lowered. On by
    default: swapped conv tiles skip the row taps that read only padding (schedules/
    tensorize.py); 0 runs every tap, to compare (benchmarks/option_ab.py)."""
    return _flag("AUTOSCHED_SKIP_PADDING_TAPS", True)
