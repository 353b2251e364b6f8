"""Fail if baseline object files contain ymm/zmm instructions (STYLE.md dispatch rule 2).

Only files under csrc/kernels/x86_* may be compiled with -m flags; an AVX instruction anywhere else would crash
older CPUs. Reads the object files of the build folders under build/ (scikit-build-core's build-dir), or of the
CMake build folders given as arguments (.ci/run also passes the zig build of the release wheel):
    python tools/check_baseline_isa.py [BUILD_DIR...]
Skips with a message (exit 0) when there is no build folder or no objdump.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
WIDE = re.compile(r"\b[yz]mm\d+\b")


def _is_lto(obj: pathlib.Path) -> bool:
    """LLVM bitcode (clang -flto) or a GCC slim LTO object (sections .gnu.lto_*, no code)."""
    data = obj.read_bytes()
    return data[:4] == b"BC\xc0\xde" or (b".gnu.lto_" in data and b".gnu.lto_.text" not in data
                                          and b"__gnu_lto_slim" in data)


def main(build_dirs: list[str]) -> int:
    objdump = shutil.which("objdump")
    if build_dirs:
        objects = [p for d in build_dirs for p in sorted(pathlib.Path(d).resolve().glob("CMakeFiles/**/*.o"))]
    else:
        objects = sorted(ROOT.glob("build/*/CMakeFiles/**/*.o"), key=lambda p: p.stat().st_mtime)
    if build_dirs and not objects:
        print(f"check_baseline_isa: no object files under {build_dirs}")
        return 1
    if not objdump or not objects:
        print("check_baseline_isa: no objdump or no build objects; skipped")
        return 0
    baseline = [p for p in objects if "/kernels/x86_" not in p.as_posix()]
    bad = []
    lto = [p for p in baseline if _is_lto(p)]  # no machine code to read: the link generates it
    for obj in lto:
        print(f"check_baseline_isa: {obj}: an LTO object (no machine code), not checked")
    for obj in (p for p in baseline if p not in lto):
        text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(obj)], capture_output=True, text=True,
                              check=True).stdout
        hits = [line.strip() for line in text.splitlines() if WIDE.search(line)]
        if hits:
            bad.append((obj, hits[:3]))
    for obj, hits in bad:
        print(f"{obj}: wide-vector instructions in a baseline object, e.g. {hits}")
    print(f"check_baseline_isa: {len(baseline) - len(lto)} baseline objects checked, {len(bad)} with ymm/zmm code"
          + (f", {len(lto)} LTO objects not checkable" if lto else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
