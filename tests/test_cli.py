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
        main(["bench", "sketch", "--bench-dir", str(tmp_path)])


def test_info_runs_in_a_subprocess():
    out = subprocess.run([sys.executable, "-m", "simkern", "info"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert "isa" in out


def test_bench_update_replaces_only_the_named_sections(tmp_path):
    import datetime

    from simkern.benchreport import _merge_report
    old = tmp_path / "RESULTS.md"
    old.write_text("# simkern benchmark report\n\nGenerated earlier.\n\n## Machine\n\n- old cpu\n\n"
                   "## maxsim (`bench/bench_maxsim.py`, 1 s)\n\nold maxsim\n\n"
                   "## multivector (`bench/bench_multivector.py`, 2 s)\n\n```\n## old mv table\nold mv\n```\n")
    new = ["# simkern benchmark report", "", "Generated now.", "", "## Machine", "", "- new cpu", "",
           "## multivector (`bench/bench_multivector.py`, 3 s, run now)", "", "```", "## new mv table", "new mv", "```",
           "",
           "## sketch (`bench/bench_sketch.py`, 4 s, run now)", "", "new sketch", ""]
    when = datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)
    text = "\n".join(_merge_report(str(old), new, ["multivector", "sketch"], when))
    assert "Generated earlier." in text and "Generated now." not in text
    assert "--update multivector sketch` on 2026-01-02 03:04 UTC" in text
    assert "new cpu" in text and "old cpu" not in text
    assert "old maxsim" in text and "old mv" not in text and "new mv" in text and "new sketch" in text
    assert text.count("## new mv table") == 1  # a "## " line inside a script's fenced output is not a section
    assert text.index("## maxsim") < text.index("## multivector") < text.index("## sketch")


def test_bench_update_needs_families(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--update", "--bench-dir", str(tmp_path)])
    assert e.value.code == 2
