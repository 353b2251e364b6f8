"""Runtime configuration: CPU features, the active ISA level, threads, and a printable summary."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from . import _core
from ._validate import positive_int

__all__ = [
    "active_isa",
    "available_isas",
    "capabilities",
    "get_num_threads",
    "kernel_names",
    "max_isa",
    "set_max_isa",
    "set_num_threads",
    "show_runtime",
]


def capabilities() -> dict[str, bool]:
    """What this CPU (and OS) supports: ``{"avx2": True, "avx512f": False, ...}``."""
    return dict(_core.capabilities())


def available_isas() -> list[str]:
    """ISA levels compiled into this build and supported by this CPU, lowest first (always starts with 'scalar')."""
    return list(_core.available_isas())


def active_isa() -> str:
    """The level kernels run at now: the best available, capped by ``SIMKERN_MAX_ISA`` and :func:`set_max_isa`."""
    return _core.active_isa()


def set_max_isa(name: str) -> str:
    """Cap the ISA level (``"scalar"``, ``"avx2"``, ``"avx512"`` or ``"neon"``); replaces ``SIMKERN_MAX_ISA``.

    The active level becomes the highest available one whose rank is within the cap (ranks: scalar 0,
    avx2 = neon 1, avx512 2), so a cap above what the CPU has is clamped and ``"avx2"`` means NEON on aarch64.
    Returns the level now active.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    return _core.set_max_isa(name)


@contextmanager
def max_isa(name: str) -> Iterator[str]:
    """Context manager: run the block at ``min(name, best)`` and restore the previous level afterwards."""
    previous = active_isa()
    try:
        yield set_max_isa(name)
    finally:
        set_max_isa(previous)


def get_num_threads() -> int:
    """Default thread count of batch calls (``SIMKERN_NUM_THREADS``, else the CPUs this process may use)."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the default thread count used when a batch call gets ``threads=None``."""
    _core.set_num_threads(positive_int(n, "n"))


def kernel_names() -> dict[str, dict[str, str]]:
    """Kernel variant per family and doc dtype at the active ISA, e.g. ``{"maxsim": {"float32": ...}}``."""
    return {family: dict(v) for family, v in _core.kernel_names().items()}


def show_runtime(file: TextIO | None = None) -> None:
    """Print version, CPU features, ISA per kernel family, threads and build flags."""
    import numpy as np

    from . import __version__

    out = file or sys.stdout
    info = _core.build_info()
    caps = capabilities()
    print(f"simkern {__version__} (numpy {np.__version__}, Python {sys.version.split()[0]})", file=out)
    print(f"  cpu features : {' '.join(k for k, v in caps.items() if v) or '(none detected)'}", file=out)
    print(f"  isa          : active={active_isa()} best={_core.best_isa()} available={','.join(available_isas())}",
          file=out)
    print(f"  SIMKERN_MAX_ISA={os.environ.get('SIMKERN_MAX_ISA', '(unset)')} "
          f"SIMKERN_NUM_THREADS={os.environ.get('SIMKERN_NUM_THREADS', '(unset)')}", file=out)
    print(f"  threads      : {get_num_threads()} (persistent pool, no OpenMP)", file=out)
    for family, kernels in kernel_names().items():
        print(f"  {family:<12} : " + ", ".join(f"{dt}={name}" for dt, name in kernels.items()), file=out)
    if "avx512" in available_isas():
        d = _core.dispatch_info()
        how = ("SIMKERN_FMA512" if d["fma512_source"] == "SIMKERN_FMA512" else
               f"probe: {d['fma512_flops_per_ns']:.0f} vs {d['fma256_flops_per_ns']:.0f} flops/ns at 512 vs 256 bits")
        rate = "full" if d["fma512_full_rate"] else "half (no faster than 256-bit)"
        print(f"  dispatch     : 512-bit FMA rate {rate} ({how}); the avx512 level runs an avx2 kernel where its "
              f"own is not faster (names above)", file=out)
    print(f"  build        : {info['compiler']}, {info['build_type']}, compiled isas={','.join(info['compiled_isas'])}",
          file=out)
    print(f"  flags        : baseline '{info['baseline_flags'].strip()}'; per-ISA {dict(info['isa_flags'])}", file=out)
    print(f"  cuda         : {_cuda_summary()}", file=out)


def _cuda_summary() -> str:
    """One line on the optional CUDA module (simkern.cuda), without importing it when it is not built."""
    import importlib.util

    if importlib.util.find_spec("simkern._cuda") is None:
        return "not built (SIMKERN_ENABLE_CUDA=OFF)"
    from . import cuda

    d = cuda.device_info()
    build = d.get("build", {})
    kind = "emulated on the CPU (tools/cuda_emu)" if build.get("emulated") else f"archs {build.get('architectures')}"
    if d["available"]:
        devices = ", ".join(f"{x['name']} (sm_{x['compute_capability'][0]}{x['compute_capability'][1]})"
                            for x in d["devices"])
        return f"built ({kind}); devices: {devices}"
    return f"built ({kind}); unavailable: {d['reason']}"
