#!/usr/bin/env bash
# Installs an aarch64 wheel for the arm64 root's CPython and runs tools/wheel/smoke.py in it under qemu-aarch64.
#   tools/wheel/qemu_smoke.sh ROOT WHEEL [PYTEST ARGS...]
# NumPy and ml_dtypes come from PyPI as manylinux aarch64 wheels (pip --platform --target into a scratch folder:
# Debian bookworm's own numpy 1.24 is older than simkern's floor). With PYTEST ARGS, pytest and hypothesis are
# installed too and the test suite of this checkout runs under qemu with those arguments (slow: ~30x native).
set -euo pipefail
root=$(cd "$1" && pwd); wheel=$(realpath "$2"); shift 2
repo=$(cd "$(dirname "$0")/../.." && pwd)
tag=$(basename "$wheel" | cut -d- -f3)                    # cp311
pyver="${tag:2:1}.${tag:3}"                                # 3.11
py="$root/usr/bin/python$pyver"
[ -x "$py" ] || { echo "qemu_smoke.sh: no $py in the root" >&2; exit 1; }
command -v qemu-aarch64 >/dev/null || { echo "qemu_smoke.sh: qemu-aarch64 missing (apt-get install qemu-user)" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
deps=(numpy ml_dtypes)
if [ $# -gt 0 ]; then deps+=(pytest hypothesis); fi
python -m pip install -q --target "$scratch/site" --only-binary=:all: --implementation cp --python-version "$pyver" \
  --abi "$tag" --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 "${deps[@]}"
plats=()                                                  # the wheel's own platform tags
for plat in $(basename "$wheel" .whl | rev | cut -d- -f1 | rev | tr '.' ' '); do plats+=(--platform "$plat"); done
python -m pip install -q --target "$scratch/site" --no-deps --implementation cp --python-version "$pyver" \
  --abi "$tag" "${plats[@]}" "$wheel"
run() { (cd "$scratch" && PYTHONPATH="$scratch/site" qemu-aarch64 -L "$root" "$py" "$@"); }
echo "qemu_smoke: $(basename "$wheel") in $py under qemu-aarch64"
start=$SECONDS
run "$repo/tools/wheel/smoke.py"
echo "qemu_smoke: smoke test passed in $((SECONDS - start)) s"
if [ $# -gt 0 ]; then
  cp -r "$repo/tests" "$repo/pyproject.toml" "$scratch/" && mkdir -p "$scratch/tools/fuzz" &&
    cp "$repo/tools/fuzz/targets.py" "$scratch/tools/fuzz/"
  run -m pytest -p no:cacheprovider "$@"
fi
