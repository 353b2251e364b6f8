"""Run pytest or a script with ``import simkern`` resolved to a staged copy of the package (python/simkern plus a
separately built ``_core``), e.g. the sanitizer build of .ci/run step 5.

    python tools/sanitize/staged.py [--sanitizers] STAGE -m pytest [pytest args]
    python tools/sanitize/staged.py [--sanitizers] STAGE path/to/script.py [args]

STAGE holds ``simkern/`` (the Python sources and the ``_core*.so`` to test). It goes first on sys.path, and a
scikit-build-core editable install of simkern (a meta-path finder that would win over sys.path) is disabled for
this process, so the staged copy is imported whether simkern is installed normally, editable, or not at all.
Exits with an error if ``simkern._core`` still comes from anywhere else.

--sanitizers: for a ``-fsanitize=address,undefined`` build (CMake option SIMKERN_SANITIZE) under a CPython that
is not built with ASan: re-executes itself with the compiler's ASan runtime preloaded (it must come first; the
C++ runtime is preloaded too, else ASan's __cxa_throw interceptor finds no real __cxa_throw and every C++
exception aborts), and defaults for

    ASAN_OPTIONS   detect_leaks=0 (CPython leaks by design at exit), abort_on_error=1,
                   allocator_may_return_null=1 (an impossible allocation raises MemoryError as without ASan)
    UBSAN_OPTIONS  halt_on_error=1:print_stacktrace=1 (the build also has -fno-sanitize-recover=undefined)
    PYTHONMALLOC   malloc (Python objects on malloc too, so that ASan sees the buffers the kernels read)

Values already in the environment win. The compiler is $CXX (default g++), as for the build.
Under --sanitizers the peers' native modules (PEERS_NOT_SANITIZED) cannot be imported: their code is not ours to
sanitize (hnswlib 0.8's knn_query frees a new[] buffer with delete, an alloc-dealloc-mismatch that ASan aborts on),
so the tests that compare with them skip here through pytest.importorskip and run in .ci/run step 1.
"""

from __future__ import annotations

import os
import runpy
import shlex
import subprocess
import sys

SANITIZER_DEFAULTS = {
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:allocator_may_return_null=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "PYTHONMALLOC": "malloc",
}


PEERS_NOT_SANITIZED = ("hnswlib", "faiss", "usearch", "maxsim_cpu", "numkong", "torch", "cupy")


class _NoPeers:
    """Meta-path finder that makes the peers' native modules unimportable (ModuleNotFoundError: as if not installed)."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in PEERS_NOT_SANITIZED:
            raise ModuleNotFoundError(f"staged.py --sanitizers: {name} (a peer's native code) is not loaded under ASan")
        return None


def _runtime(name: str) -> str:
    cxx = shlex.split(os.environ.get("CXX", "g++"))
    path = subprocess.run(cxx + [f"-print-file-name={name}"], capture_output=True, text=True, check=True).stdout.strip()
    if not os.path.isabs(path):
        sys.exit(f"staged.py: {cxx[0]} does not know {name}; install the compiler's sanitizer runtime")
    return path


def _exec_with_sanitizers() -> None:
    env = dict(os.environ)
    preload = [_runtime("libasan.so"), _runtime("libstdc++.so")]
    env["LD_PRELOAD"] = ":".join(preload + [p for p in env.get("LD_PRELOAD", "").split(":") if p])
    for key, value in SANITIZER_DEFAULTS.items():
        env.setdefault(key, value)
    env["SIMKERN_STAGED_SANITIZERS"] = "1"
    argv = [sys.executable, os.path.abspath(__file__)] + [a for a in sys.argv[1:] if a != "--sanitizers"]
    os.execve(sys.executable, argv, env)


def main() -> None:
    if "--sanitizers" in sys.argv[1:2]:
        if os.environ.get("SIMKERN_STAGED_SANITIZERS") != "1":
            _exec_with_sanitizers()
        del sys.argv[1]
    if os.environ.get("SIMKERN_STAGED_SANITIZERS") == "1":
        sys.meta_path.insert(0, _NoPeers())
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    stage = os.path.abspath(sys.argv[1])
    # scikit-build-core's editable hook for simkern lives in the module _editable_skbc_simkern (site-packages .pth)
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__module__ != "_editable_skbc_simkern"]
    sys.path.insert(0, stage)
    os.environ["PYTHONPATH"] = os.pathsep.join([stage] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    import simkern._core

    where = os.path.abspath(simkern._core.__file__)
    if not where.startswith(stage + os.sep):
        sys.exit(f"staged.py: simkern._core was imported from {where}, not from the stage {stage}")
    print(f"staged.py: simkern._core from {where}", file=sys.stderr)
    if sys.argv[2] == "-m":
        sys.argv = [sys.argv[3]] + sys.argv[4:]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[2:]
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
