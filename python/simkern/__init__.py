"""simkern: SIMD kernels for vector retrieval and randomized linear algebra.

Kernel families land one by one; today: MaxSim (ColBERT late interaction) over ragged token sets and the core of
product quantization (ProductQuantizer: training, codes, tables, exact ADC), with the runtime they all share
(ISA dispatch, thread pool). See ``simkern.show_runtime()``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from . import datasets
from ._sketch import SKETCH_KINDS, SketchedLstsqResult, fwht, lstsq_sketched, sketch, sketch_rows_rule
from .fde import FDE
from .hnsw import HNSWIndex
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

try:
    __version__ = _version("simkern")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "FDE",
    "HNSWIndex",
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
