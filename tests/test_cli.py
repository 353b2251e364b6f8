"""The command line: python -m simkern {info, bench} argument handling (the demo runs in CI as the README's first
command; the bench scripts themselves are exercised by bench/, not here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from simkern.__main__ import main


def test_help_lists_the_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "info" in out and "bench" in out


def test_unknown_command(capsys):
    assert main(["serve"]) == 2
    assert "unknown command 'serve'" in capsys.readouterr().err


def test_bench_rejects_unknown_families_and_missing_scripts(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["bench", "nosuchfamily", "--bench-dir", str(tmp_path)])
    assert e.value.code == 2  # argparse error
    with pytest.raises(SystemExit, match="runs the scripts of a source checkout"):
        main(["bench", "linf", "--bench-dir", str(tmp_path)])


def test_info_runs_in_a_subprocess():
    out = subprocess.run([sys.executable, "-m", "simkern", "info"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert "isa" in out
