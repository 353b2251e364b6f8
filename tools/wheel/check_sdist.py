"""Checks an sdist's file list: everything a wheel build and the test suite need, nothing else.

    python tools/wheel/check_sdist.py dist/simkern-V.tar.gz

Needed: pyproject.toml, CMakeLists.txt, cmake/, csrc/ (every source CMakeLists.txt names), python/simkern/ (the
embedded demo data included), tests/ (with their data), tools/fuzz/targets.py (tests/test_fuzz_regressions.py loads
it), README.md, LICENSE, CHANGELOG.md, docs/. Not allowed: anything else (bench/, .ci/, the other tools), build
outputs (*.so, *.o, build/, dist/), caches, and files over 4 MiB (data dumps). In a git checkout every file must
also be tracked, so that an untracked file lying in the tree cannot slip in. Exits 1 with the offending names.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from pathlib import Path

REQUIRED = ["pyproject.toml", "CMakeLists.txt", "README.md", "LICENSE", "CHANGELOG.md", "cmake/isa.cmake",
            "python/simkern/__init__.py", "python/simkern/py.typed", "python/simkern/_core.pyi",
            "python/simkern/data/demo_tokens.npz", "tests/conftest.py", "tools/fuzz/targets.py", "PKG-INFO"]
ALLOWED_PREFIXES = ("cmake/", "csrc/", "python/simkern/", "tests/", "docs/")
ALLOWED_FILES = {"pyproject.toml", "CMakeLists.txt", "README.md", "LICENSE", "CHANGELOG.md", "PKG-INFO",
                 "tools/fuzz/targets.py"}
FORBIDDEN = re.compile(r"(\.so$|\.o$|\.pyc$|__pycache__/|\.hypothesis/|\.pytest_cache/|(^|/)build/|(^|/)dist/)")
MAX_BYTES = 4 << 20


def main(sdist: str) -> int:
    repo = Path(__file__).resolve().parents[2]
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
    top = {m.name.split("/", 1)[0] for m in members}
    if len(top) != 1:
        print(f"check_sdist: expected one top folder, found {sorted(top)}")
        return 1
    files = {m.name.split("/", 1)[1]: m.size for m in members}
    problems = [f"missing: {name}" for name in REQUIRED if name not in files]
    cmake_sources = set(re.findall(r"\b(csrc/[\w/]+\.cpp)\b", (repo / "CMakeLists.txt").read_text()
                                   + (repo / "cmake" / "isa.cmake").read_text()))
    problems += [f"missing: {name} (a source CMake builds)" for name in sorted(cmake_sources) if name not in files]
    for name, size in sorted(files.items()):
        if FORBIDDEN.search(name):
            problems.append(f"build output or cache: {name}")
        elif not (name in ALLOWED_FILES or name.startswith(ALLOWED_PREFIXES)):
            problems.append(f"not needed by a build or the tests: {name}")
        elif size > MAX_BYTES:
            problems.append(f"over {MAX_BYTES >> 20} MiB (a data dump?): {name} ({size} bytes)")
    if (repo / ".git").exists():
        tracked = set(subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True,
                                     check=True).stdout.split())
        problems += [f"not tracked by git: {name}" for name in sorted(files) if name != "PKG-INFO"
                     and name not in tracked]
    for p in problems:
        print(f"check_sdist: {p}")
    total = sum(files.values())
    print(f"check_sdist: {Path(sdist).name}: {len(files)} files, {total / 1e6:.1f} MB unpacked, "
          f"{Path(sdist).stat().st_size / 1e6:.1f} MB packed: {'FAILED' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: check_sdist.py SDIST")
    sys.exit(main(sys.argv[1]))
