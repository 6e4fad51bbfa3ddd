"""The copy-bandwidth benchmark's copies are exact, ragged lengths included, and bad arguments
are refused."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from copy_bandwidth import _copy_steps, main  # noqa: E402

from codegen.parallel import run_step  # noqa: E402


@pytest.mark.parametrize("n", [1, 7, 8, 8 * 1024 + 5, (1 << 14) + 3])
def test_both_copies_are_exact(n):
    plain, streaming, chunks = _copy_steps(n)
    src = np.arange(n, dtype=np.float32) + 0.5
    raw = np.empty(n + 16, np.float32)
    dst = raw[(-raw.ctypes.data % 32) // 4:][:n]
    for step in (plain, streaming):
        dst[:] = np.nan
        run_step(step.address, chunks, (src, dst), np.empty(0, np.int64), 2)
        np.testing.assert_array_equal(dst, src)


def test_runs_end_to_end_and_refuses_bad_arguments(tmp_path, capsys):
    assert main(["--rows", "3", "--cols", "37", "--rounds", "1", "--seconds", "0.01", "--out", str(tmp_path)]) == 0
    assert "streaming stores" in capsys.readouterr().out
    assert list(tmp_path.glob("copy-bandwidth-*.json"))
    with pytest.raises(SystemExit) as exc:
        main(["--rounds", "0"])
    assert exc.value.code == 2
