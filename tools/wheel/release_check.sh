#!/usr/bin/env bash
# The release check (.ci/run step 2): the wheel a user installs, tested the way a user has it.
#   tools/wheel/release_check.sh WHEEL SDIST [PYTEST ARGS...]
# 1. A fresh venv of this Python gets the wheel with --no-index --no-deps, then the dependencies the wheel declares
#    (its Requires-Dist, the `test` extra included) from the index; `pip check` confirms the metadata is satisfied.
# 2. Every Python command below runs with PATH cut down to the venv's bin/ (and an empty folder): no C or C++
#    compiler (cc gcc g++ c++ clang clang++ zig) can be found, which is checked.
# 3. The sdist is unpacked in a scratch folder and the suite runs from there (its python/ folder is not on sys.path:
#    `import simkern` must resolve to the venv, which is checked before and inside the run) with PYTEST ARGS.
# 4. `python -m simkern demo $DEMO_ARGS` from an empty folder (.ci/run: --repeats 1 --copies 2, to save time).
# 5. `auditwheel show` (the venv of tools/build_wheels.sh): the wheel must be manylinux_2_28 or lower.
# 6. Reported: the wheel's size (fails over 6 MB) and `import simkern` (min over 5 fresh processes of -X importtime's
#    cumulative time; target < 150 ms; fails over 300 ms, a regression such as an eager import of ml_dtypes).
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: release_check.sh WHEEL SDIST [PYTEST ARGS...]" >&2; exit 2; fi
wheel=$(realpath "$1"); sdist=$(realpath "$2"); shift 2
repo=$(cd "$(dirname "$0")/../.." && pwd)
tools=${SIMKERN_WHEEL_TOOLS:-$repo/build/wheel-tools}
python=${PYTHON:-python}
log() { echo "release_check: $*"; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# 1. venv, wheel, declared dependencies
"$python" -m venv "$scratch/venv"
venv=$scratch/venv
"$venv/bin/python" -m pip install -q --no-index --no-deps "$wheel"
"$venv/bin/python" - > "$scratch/requirements.txt" <<'EOF'
from importlib.metadata import requires
from pip._vendor.packaging.requirements import Requirement
for line in requires("simkern") or []:
    req = Requirement(line)
    if req.marker is None or req.marker.evaluate({"extra": "test"}):
        req.marker = None
        print(req)
EOF
log "dependencies the wheel declares (with the test extra): $(tr '\n' ' ' < "$scratch/requirements.txt")"
"$venv/bin/python" -m pip install -q -r "$scratch/requirements.txt"
"$venv/bin/python" -m pip check

# 2. no compiler on the PATH the checks run with (the shell's own tools keep theirs: tar, mktemp, rm)
tar -xzf "$sdist" -C "$scratch"
src=$(ls -d "$scratch"/simkern-*/)
mkdir -p "$scratch/bin"
nocc="$venv/bin:$scratch/bin"
for cc in cc gcc g++ c++ clang clang++ zig; do
  if found=$(PATH=$nocc command -v "$cc"); then log "a compiler is on PATH: $found"; exit 1; fi
done
log "PATH=$nocc (no compiler on it)"
run() { env PATH="$nocc" "$@"; }

# 3. the suite from the unpacked sdist, against the installed wheel
cd "$src"
run "$venv/bin/python" - "$venv" <<'EOF'
import os, sys
import simkern
where = os.path.realpath(simkern.__file__)
if not where.startswith(os.path.realpath(sys.argv[1]) + os.sep):
    sys.exit(f"release_check: simkern imported from {where}, not the venv")
print(f"release_check: simkern {simkern.__version__} from {os.path.dirname(where)}")
EOF
start=$SECONDS
set +e
SIMKERN_EXPECT_INSTALLED="$venv" run "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then log "pytest collected no tests (exit 5)"; exit 1; fi
if [ "$rc" -ne 0 ]; then exit "$rc"; fi
log "suite on the installed wheel: $((SECONDS - start)) s"

# 4. the demo
mkdir -p "$scratch/empty" && cd "$scratch/empty"
# shellcheck disable=SC2086  # DEMO_ARGS: one word per argument
run "$venv/bin/python" -m simkern demo ${DEMO_ARGS:-} > "$scratch/demo.log" 2>&1 || { cat "$scratch/demo.log"; exit 1; }
log "python -m simkern demo: ok ($(wc -l < "$scratch/demo.log") lines)"

# 5. the tag
show=$("$tools/venv/bin/auditwheel" show "$wheel" 2>&1 | tr '\n' ' ' | sed -e 's/  */ /g')
tag=$(echo "$show" | grep -o 'platform tag: "[^"]*"' | head -1 | cut -d'"' -f2)
glibc_minor=$(echo "$tag" | sed -n 's/^manylinux_2_\([0-9]*\)_.*/\1/p')
if [ -z "$glibc_minor" ] || [ "$glibc_minor" -gt 28 ]; then log "auditwheel show: $show"; exit 1; fi
log "auditwheel show: consistent with $tag (target: manylinux_2_28 or lower)"

# 6. size and import time
size=$(stat -c %s "$wheel")
log "wheel $(basename "$wheel"): $((size / 1024)) KiB (target < 6 MB)"
if [ "$size" -ge 6000000 ]; then log "the wheel is over 6 MB"; exit 1; fi
best=""
for _ in 1 2 3 4 5; do
  us=$(run "$venv/bin/python" -X importtime -c "import simkern" 2>&1 | awk -F'|' '$3 ~ /^ simkern$/ {gsub(/ /, "", $2); print $2}')
  if [ -z "$best" ] || [ "$us" -lt "$best" ]; then best=$us; fi
done
verdict=$([ "$best" -lt 150000 ] && echo met || echo "NOT met")
log "import simkern: $((best / 1000)) ms (min of 5 fresh processes; target < 150 ms: $verdict)"
if [ "$best" -ge 300000 ]; then log "import simkern takes over 300 ms"; exit 1; fi
log "passed"
