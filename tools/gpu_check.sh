#!/usr/bin/env bash
# tools/gpu_check.sh: build, test and benchmark simkern.cuda on a fresh GPU machine, unattended, in one go.
#
#   tools/gpu_check.sh OUT_DIR            (or: SIMKERN_GPU_OUT=OUT_DIR tools/gpu_check.sh)
#
# Meant for an H100 / H200 image with torch, triton, cupy, nvcc 13 (/usr/local/cuda/bin), cmake, ninja, pybind11,
# scikit-build-core and pytest, and no internet. What such an image may lack (hypothesis, ml_dtypes, the build
# backend, flash-maxsim) is fetched beforehand on a machine with PyPI by tools/gpu_prepare.sh into tools/gpu_wheels/
# (git-ignored, ~7 MB): carry that folder to the GPU machine (the device tool's `carry`). Run from anywhere; it works in the repository that holds it.
# Every step runs even when an earlier one failed; the script remembers failures and exits 1 if any step failed
# (0 when all passed, 2 on a usage error).
#
# Steps (name: what -> output in OUT_DIR):
#   nvidia-smi  nvidia-smi                                                    -> nvidia-smi.txt
#   env         Python, pip packages, nvcc, git revision                      -> env.txt
#   wheels      pip install --no-index of the extra wheels that travel with the checkout (shared/wheels,
#               tools/gpu_wheels): hypothesis, ml_dtypes, scipy, flash-maxsim, faiss-gpu...; failures ignored
#   build       SIMKERN_ENABLE_CUDA=ON pip install -v ".[test]" for this GPU only
#               (cmake.define.CMAKE_CUDA_ARCHITECTURES from nvidia-smi's compute_cap: "9.0" -> 90-real; default
#               90-real), CMAKE_BUILD_PARALLEL_LEVEL=$(nproc), --no-build-isolation when scikit_build_core and
#               pybind11 import; offline (--no-index), so when a test extra is missing it installs "." alone
#                                                                             -> build.log
#   info        python -m simkern info                                        -> simkern_info.txt
#   device      simkern.cuda.device_info() as JSON (fails unless available)   -> device_info.json
#   pytest      pytest -m cuda tests/test_cuda.py (timeout 240 s)             -> pytest_cuda.log, junit_cuda.xml
#   memcheck    compute-sanitizer --tool memcheck over the quick test subset (SIMKERN_CUDA_TEST_QUICK=1, -x,
#               PYTORCH_NO_CUDA_MEMORY_CACHING=1 so that overruns of torch tensors are caught; timeout 150 s)
#                                                                             -> memcheck.log
#   bench       python bench/bench_cuda.py (--quick when SIMKERN_GPU_QUICK=1; timeout 200 s)
#                                                                             -> bench_cuda.json, bench_cuda.txt
#                                                                                (table), bench_cuda.log (progress)
# Always: gpu_check.log (everything above, timestamped) and summary.json (each step's name, rc, seconds; rewritten
# after every step, so a killed run keeps the steps it finished).
#
# Time: about 8 minutes in all. SIMKERN_GPU_BUDGET_S (default 480) caps the whole run: a step's timeout is the
# smaller of its own and what is left (a step with under 15 s left is skipped: rc 125, counted as a failure);
# pytest and memcheck leave SIMKERN_GPU_BENCH_RESERVE_S (default 100) of the budget to the benchmark, which gets
# --time-limit to stop cleanly (and write its table) before its timeout. Per-step timeouts: SIMKERN_GPU_BUILD_TIMEOUT
# (default 330), SIMKERN_GPU_PYTEST_TIMEOUT (240), SIMKERN_GPU_MEMCHECK_TIMEOUT (150), SIMKERN_GPU_BENCH_TIMEOUT
# (200). SIMKERN_GPU_SKIP: comma list of step names not to run (e.g. "memcheck" or "build" to rerun on a warm
# machine). SIMKERN_GPU_WHEELS: the packages the wheels step tries (space separated).
set -uo pipefail

OUT=${1:-${SIMKERN_GPU_OUT:-}}
if [ -z "$OUT" ]; then
  sed -n '2,4p' "$0" >&2
  echo "usage: tools/gpu_check.sh OUT_DIR (or set SIMKERN_GPU_OUT)" >&2
  exit 2
fi
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
LOG=$OUT/gpu_check.log
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
# finish CODE: let tee write the last lines, then exit
finish() { exec 1>&- 2>&-; wait "$TEE_PID" 2>/dev/null; exit "$1"; }

PY=${PYTHON:-python}
BUDGET=${SIMKERN_GPU_BUDGET_S:-480}
QUICK=${SIMKERN_GPU_QUICK:-0}
SKIP=",${SIMKERN_GPU_SKIP:-},"
# seconds the tests and memcheck leave to the benchmark that runs after them
RESERVE=${SIMKERN_GPU_BENCH_RESERVE_S:-100}
[[ $SKIP == *",bench,"* ]] && RESERVE=0
START=$(date +%s)
STARTED_UTC=$(date -u +%Y-%m-%dT%H:%M:%SZ)
if [ -d /usr/local/cuda/bin ]; then export PATH="$PATH:/usr/local/cuda/bin"; fi
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

log() { printf '[%s +%4ss] %s\n' "$(date -u +%H:%M:%S)" "$(( $(date +%s) - START ))" "$*"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# tmo DEFAULT [RESERVE]: a step's timeout: DEFAULT, capped by what is left of the budget minus RESERVE (at least 5)
tmo() {
  local l=$(( $(left) - ${2:-0} ))
  [ "$l" -lt "$1" ] || l=$1
  [ "$l" -ge 5 ] || l=5
  echo "$l"
}

NAMES=()
RCS=()
SECS=()
NOTES=()
FAILED=0

write_summary() {
  local i sep="" steps=""
  for i in "${!NAMES[@]}"; do
    steps+="$sep{\"name\": \"${NAMES[$i]}\", \"rc\": ${RCS[$i]}, \"seconds\": ${SECS[$i]}"
    [ -n "${NOTES[$i]}" ] && steps+=", \"note\": \"${NOTES[$i]}\""
    steps+="}"
    sep=$',\n  '
  done
  cat > "$OUT/summary.json" <<EOF
{"started_utc": "$STARTED_UTC", "out_dir": "$OUT", "repo": "$REPO", "quick": $([ "$QUICK" = 1 ] && echo true || echo false),
 "cuda_architectures": "${ARCH:-}", "budget_s": $BUDGET, "total_seconds": $(( $(date +%s) - START )), "failed_steps": $FAILED,
 "steps": [
  $steps
 ]}
EOF
}

# run_step NAME MIN_SECONDS FUNCTION: run FUNCTION (its own redirections and timeout), log and record it
run_step() {
  local name=$1 need=$2 fn=$3 rc t0 t1 note=""
  t0=$(date +%s.%N)
  if [[ $SKIP == *",$name,"* ]]; then
    log "=== $name: skipped (SIMKERN_GPU_SKIP)"
    rc=0
    note="skipped: SIMKERN_GPU_SKIP"
  elif [ "$(left)" -lt "$need" ]; then
    log "=== $name: skipped: $(left) s of the ${BUDGET} s budget left"
    rc=125
    note="skipped: budget spent"
  else
    log "=== $name: start"
    "$fn"
    rc=$?
  fi
  t1=$(date +%s.%N)
  [ "$rc" -eq 124 ] && note="timed out"
  NAMES+=("$name")
  RCS+=("$rc")
  NOTES+=("$note")
  SECS+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')")
  if [ "$rc" -ne 0 ]; then
    FAILED=$((FAILED + 1))
    log "=== $name: FAILED (rc $rc${note:+, $note})"
  elif [ -z "$note" ]; then
    log "=== $name: ok"
  fi
  write_summary
  return 0
}

# tail_into_log FILE N: the last N lines of a step's own log, indented, for the main log
tail_into_log() { [ -f "$1" ] && tail -n "$2" "$1" | sed 's/^/    | /'; return 0; }

# ---------------------------------------------------------------------------------------------------- steps

step_nvidia_smi() {
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  local rc=$?
  head -n 15 "$OUT/nvidia-smi.txt" | sed 's/^/    | /'
  return $rc
}

step_env() {
  {
    echo "date: $(date -u)"
    echo "host: $(uname -a)"
    echo "cpus: $(nproc)"
    echo "python: $(command -v "$PY") $("$PY" --version 2>&1)"
    echo "nvcc: $(command -v nvcc || echo "${CUDACXX:-none}")"
    "${CUDACXX:-nvcc}" --version 2>&1 | tail -n 2
    echo "compute-sanitizer: $(command -v compute-sanitizer || echo none)"
    echo "git: $(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo 'no git') $(git -C "$REPO" status --short 2>/dev/null | wc -l) changed"
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1
    "$PY" -m pip list 2>/dev/null | grep -iE '^(torch|triton|cupy|numpy|ml.dtypes|scipy|hypothesis|pytest|pybind11|scikit.build|cmake|ninja|flash.maxsim|faiss|simkern)' 
  } > "$OUT/env.txt" 2>&1
  sed 's/^/    | /' "$OUT/env.txt"
  return 0
}

step_wheels() {
  local dir pkg norm found=0
  local pkgs=${SIMKERN_GPU_WHEELS:-"hypothesis ml_dtypes scipy flash-maxsim faiss-gpu-cu12 faiss-gpu"}
  for dir in "$REPO/shared/wheels" "$REPO/tools/gpu_wheels"; do
    [ -d "$dir" ] || continue
    found=1
    log "wheels in $dir: $(ls "$dir" | tr '\n' ' ')"
    for pkg in $pkgs; do
      norm=$(echo "$pkg" | tr '-' '_')
      if ls "$dir" | grep -qiE "^(${norm}|${pkg})-"; then
        "$PY" -m pip install --no-index --find-links "$dir" "$pkg" 2>&1 | tail -n 2 | sed 's/^/    | /' \
          || log "pip install $pkg from $dir failed (ignored)"
      fi
    done
  done
  [ "$found" = 1 ] || log "no shared/wheels or tools/gpu_wheels folder: nothing to install"
  return 0
}

step_build() {
  local cap iso=() links=() dir t rc
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .\r')
  if [[ $cap =~ ^[0-9]+$ ]]; then ARCH="${cap}-real"; else ARCH="90-real"; fi
  if "$PY" -c 'import scikit_build_core, pybind11' 2>/dev/null; then
    iso=(--no-build-isolation)
  else
    log "scikit_build_core or pybind11 not importable: isolated build (needs them as wheels; offline it fails)"
  fi
  for dir in "$REPO/shared/wheels" "$REPO/tools/gpu_wheels"; do
    [ -d "$dir" ] && links+=(--find-links "$dir")
  done
  export SIMKERN_ENABLE_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
  log "CUDA architectures $ARCH, $CMAKE_BUILD_PARALLEL_LEVEL parallel jobs, ${iso[*]:-build isolation}"
  t=$(tmo "${SIMKERN_GPU_BUILD_TIMEOUT:-330}")
  timeout -k 10 "$t" "$PY" -m pip install -v --no-index ${links[@]+"${links[@]}"} ${iso[@]+"${iso[@]}"} \
    --config-settings=cmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCH" ".[test]" > "$OUT/build.log" 2>&1
  rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] \
     && grep -qiE 'No matching distribution|Could not find a version' "$OUT/build.log"; then
    # offline and a test extra (hypothesis, scipy) is missing: the package alone (its build dir is reused)
    log "'.[test]' needs packages that are not installed and no wheel provides: installing '.' without dependencies"
    t=$(tmo "${SIMKERN_GPU_BUILD_TIMEOUT:-330}")
    timeout -k 10 "$t" "$PY" -m pip install -v --no-index --no-deps ${links[@]+"${links[@]}"} ${iso[@]+"${iso[@]}"} \
      --config-settings=cmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCH" . >> "$OUT/build.log" 2>&1
    rc=$?
  fi
  grep -E 'simkern: building simkern._cuda|Successfully installed|error:|Error' "$OUT/build.log" | tail -n 12 \
    | sed 's/^/    | /'
  [ "$rc" -eq 0 ] || tail_into_log "$OUT/build.log" 30
  return $rc
}

step_info() {
  (cd "$OUT" && "$PY" -m simkern info) > "$OUT/simkern_info.txt" 2>&1
  local rc=$?
  sed 's/^/    | /' "$OUT/simkern_info.txt"
  return $rc
}

step_device() {
  # from OUT_DIR, so that the installed simkern is imported, not the checkout's python/ folder
  (cd "$OUT" && "$PY" -c 'import json, sys, simkern.cuda as c
info = c.device_info()
print(json.dumps(info, indent=1))
sys.exit(0 if info.get("available") else 1)') > "$OUT/device_info.json"
  local rc=$?
  sed 's/^/    | /' "$OUT/device_info.json"
  return $rc
}

step_pytest() {
  local t rc
  t=$(tmo "${SIMKERN_GPU_PYTEST_TIMEOUT:-240}" "$RESERVE")
  timeout -k 10 "$t" "$PY" -m pytest -m cuda tests/test_cuda.py -q -ra --junitxml "$OUT/junit_cuda.xml" \
    > "$OUT/pytest_cuda.log" 2>&1
  rc=$?
  tail_into_log "$OUT/pytest_cuda.log" 25
  return $rc
}

step_memcheck() {
  local t rc cs
  cs=$(command -v compute-sanitizer || true)
  for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [ -z "$cs" ] && [ -x "$c" ] && cs=$c
  done
  if [ -z "$cs" ]; then
    echo "compute-sanitizer not found (PATH, /usr/local/cuda/bin)" | tee "$OUT/memcheck.log"
    return 127
  fi
  t=$(tmo "${SIMKERN_GPU_MEMCHECK_TIMEOUT:-150}" "$RESERVE")
  SIMKERN_CUDA_TEST_QUICK=1 PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout -k 10 "$t" \
    "$cs" --tool memcheck --error-exitcode 9 "$PY" -m pytest -m cuda tests/test_cuda.py -q -x -p no:cacheprovider \
    > "$OUT/memcheck.log" 2>&1
  rc=$?
  grep -E '========= (ERROR SUMMARY|Invalid|Program hit)' "$OUT/memcheck.log" | head -n 10 | sed 's/^/    | /'
  tail_into_log "$OUT/memcheck.log" 8
  return $rc
}

step_bench() {
  local t rc args=()
  t=$(tmo "${SIMKERN_GPU_BENCH_TIMEOUT:-200}")
  args=(--out "$OUT/bench_cuda.json")
  if [ "$t" -gt 60 ]; then args+=(--time-limit $((t - 30))); fi
  if [ "$QUICK" = 1 ]; then args+=(--quick); fi
  log "python bench/bench_cuda.py ${args[*]} (timeout $t s)"
  timeout -k 10 "$t" "$PY" bench/bench_cuda.py "${args[@]}" > "$OUT/bench_cuda.txt" 2> "$OUT/bench_cuda.log"
  rc=$?
  sed 's/^/    | /' "$OUT/bench_cuda.txt"
  [ "$rc" -eq 0 ] || tail_into_log "$OUT/bench_cuda.log" 20
  return $rc
}

# ------------------------------------------------------------------------------------------------------ run

log "gpu_check: repo $REPO, out $OUT, budget ${BUDGET} s, quick=$QUICK, skip=${SIMKERN_GPU_SKIP:-none}"
run_step nvidia-smi 5 step_nvidia_smi
run_step env 5 step_env
run_step wheels 15 step_wheels
run_step build 30 step_build
run_step info 5 step_info
run_step device 5 step_device
run_step pytest 15 step_pytest
run_step memcheck 15 step_memcheck
run_step bench 15 step_bench

log "summary:"
for i in "${!NAMES[@]}"; do
  printf '    %-11s rc %-4s %7s s  %s\n' "${NAMES[$i]}" "${RCS[$i]}" "${SECS[$i]}" "${NOTES[$i]}"
done
write_summary
TOTAL=$(( $(date +%s) - START ))
if [ "$FAILED" -eq 0 ]; then
  log "gpu_check: all steps passed in ${TOTAL} s; outputs in $OUT"
  finish 0
fi
log "gpu_check: $FAILED step(s) failed; total ${TOTAL} s; outputs in $OUT"
finish 1
