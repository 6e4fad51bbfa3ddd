"""Writing a benchmark's JSON result with the machine, the date and the command that made it."""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path


def write_result(out_dir, name: str, script: str, argv, fields: dict) -> Path:
    """Write benchmarks/results-style JSON to out_dir/name-DATE.json and return its path."""
    date = datetime.date.today().isoformat()
    doc = {"date": date, "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "python": platform.python_version(),
           "command": " ".join(["python", script] + list(argv if argv is not None else sys.argv[1:])),
           **fields}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{date}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
