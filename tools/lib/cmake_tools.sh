# Sourced by the scripts that configure CMake directly (tools/sanitize/build.sh, tools/cuda/build.sh): finds or
# installs what they need, without touching the environment's packages.
#   cmake_tools PYTHON TOOLS_DIR
# sets pybind11_dir (pybind11 >= 3.0: the importable one, else pip-installed into TOOLS_DIR), cmake_bin (cmake >=
# 3.18 on PATH, else pip-installed into TOOLS_DIR) and generator (Ninja when on PATH).
cmake_tools() {
  local py=$1 tools=$2
  if ! "$py" -c 'import pybind11, sys; sys.exit(int(pybind11.version_info < (3, 0)))' 2>/dev/null \
     && ! PYTHONPATH="$tools" "$py" -c 'import pybind11' 2>/dev/null; then
    "$py" -m pip install -q --target "$tools" "pybind11>=3.0"
  fi
  pybind11_dir=$(PYTHONPATH="$tools${PYTHONPATH:+:$PYTHONPATH}" "$py" -m pybind11 --cmakedir)
  cmake_bin=$(command -v cmake || true)
  if [ -z "$cmake_bin" ] || ! "$cmake_bin" --version | head -1 | awk '{split($3, v, "."); exit !(v[1] > 3 || (v[1] == 3 && v[2] >= 18))}'; then
    [ -x "$tools/bin/cmake" ] || "$py" -m pip install -q --target "$tools" "cmake>=3.18"
    export PYTHONPATH="$tools${PYTHONPATH:+:$PYTHONPATH}"
    cmake_bin="$tools/bin/cmake"
  fi
  generator=()
  if command -v ninja >/dev/null; then generator=(-G Ninja); fi
}
