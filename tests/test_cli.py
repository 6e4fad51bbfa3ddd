"""The autosched command line: help on every command, and the demo job end to end."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def autosched(*args, check=True):
    exe = shutil.which("autosched")
    cmd = [exe] if exe else [sys.executable, "-m", "tuner.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=ROOT, check=check)


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"]])
def test_help(args):
    out = autosched(*args).stdout
    assert "usage: autosched" in out


def test_no_command_prints_help_and_fails():
    res = autosched(check=False)
    assert res.returncode == 2 and "demo" in res.stdout


def test_demo_builds_checks_and_times_against_numpy():
    res = autosched("demo", "--op", "softmax", "--size", "small", "--seconds", "0.05")
    out = res.stdout
    assert "matches numpy" in out
    assert "autosched" in out and "numpy" in out and "speedup" in out


def test_demo_rejects_unknown_operator():
    res = autosched("demo", "--op", "nope", check=False)
    assert res.returncode != 0 and "invalid choice" in res.stderr
