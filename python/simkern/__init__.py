"""simkern: SIMD kernels for vector retrieval and randomized linear algebra.

Families: MaxSim (ColBERT late interaction) over ragged token sets; product quantization (ProductQuantizer, OPQ,
PQIndex with 8-bit and 4-bit fast-scan scans); MUVERA fixed dimensional encodings (FDE); sketched least squares
(sketch, fwht, lstsq_sketched); the HNSWIndex graph; MultiVectorIndex, which composes them; drop-in shims for
hnswlib, PyLate, maxsim-cpu and muvera-python in simkern.compat. All share one runtime (ISA dispatch, thread pool):
see ``simkern.show_runtime()``; docs/API.md is the reference.
"""

from __future__ import annotations

from . import _core, datasets
from ._sketch import SKETCH_KINDS, SketchedLstsqResult, fwht, lstsq_sketched, sketch, sketch_rows_rule
from .fde import FDE
from .hnsw import HNSWIndex
from .ivfpq_index import IVFPQIndex
from .maxsim import maxsim, maxsim_pairs, maxsim_topk
from .multivector import MultiVectorIndex
from .opq import OPQ
from .pq import ProductQuantizer
from .pq_index import PQIndex
from .ragged import Ragged
from .runtime import (
    active_isa,
    available_isas,
    capabilities,
    get_num_threads,
    kernel_names,
    max_isa,
    set_max_isa,
    set_num_threads,
    show_runtime,
)

# The version CMake compiled into _core: pyproject.toml's, the wheel's (tests/test_packaging.py checks that it
# equals the installed distribution's). Read from the module, not importlib.metadata (~20 ms of `import simkern`).
__version__: str = _core.build_info()["version"]

__all__ = [
    "FDE",
    "HNSWIndex",
    "IVFPQIndex",
    "MultiVectorIndex",
    "OPQ",
    "PQIndex",
    "fwht",
    "sketch",
    "lstsq_sketched",
    "sketch_rows_rule",
    "SketchedLstsqResult",
    "SKETCH_KINDS",
    "ProductQuantizer",
    "Ragged",
    "__version__",
    "active_isa",
    "datasets",
    "available_isas",
    "capabilities",
    "get_num_threads",
    "kernel_names",
    "max_isa",
    "maxsim",
    "maxsim_pairs",
    "maxsim_topk",
    "set_max_isa",
    "set_num_threads",
    "show_runtime",
]


def __getattr__(name: str) -> object:
    """``simkern.cuda`` (the optional CUDA kernels) and ``simkern.distributed`` (Ray) are imported on first use, so
    that ``import simkern`` stays fast and never loads the CUDA module or Ray."""
    if name in ("cuda", "distributed"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'simkern' has no attribute {name!r}")
