"""Micro-kernel epilogues in registers against the pass over each finished block, at the tuned
configs of an `autosched bench` run (benchmarks/option_ab.py with the tile-epilogue option).

    python benchmarks/tile_epilogue.py benchmarks/results/bench-2026-12-05-znver4-flat-1.json \
        --rounds 7 --out benchmarks/results/tile-epilogue.json
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from option_ab import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["tile-epilogue", *sys.argv[1:]]))
