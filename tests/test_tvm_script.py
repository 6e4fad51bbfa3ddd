"""The TVM MetaSchedule comparison script: its workloads are the bench suite's, and without
TVM it says how to get it instead of failing."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tuner.baselines import Workload
from tuner.bench import DEFAULT_SUITE, label_of
from tuner.commands import read_suite

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "tvm_metaschedule.py"


def _script():
    spec = importlib.util.spec_from_file_location("tvm_metaschedule", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_its_workloads_are_the_bench_suites_under_the_same_labels():
    entries, _ = read_suite("default", DEFAULT_SUITE)
    suite = {label_of(Workload(name, params)): (name, params) for name, params, _ in entries}
    workloads = _script().WORKLOADS
    assert len(workloads) == 5
    for label, (name, params) in workloads.items():
        assert label in suite and suite[label][0] == name, label
        assert {k: v for k, v in suite[label][1].items()} == params, label


def test_without_tvm_it_explains_how_to_install_it(capsys):
    if importlib.util.find_spec("tvm") is not None:
        pytest.skip("TVM is installed here")
    with pytest.raises(SystemExit) as stop:
        _script().main(["--only", "softmax*"])
    assert stop.value.code == 2
    assert "TVM is not installed" in capsys.readouterr().err
