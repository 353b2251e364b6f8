"""The string options of every family and the integer codes the C++ side and the file headers use: one table per
option, shared by every family that takes it, and one check (``choice``). docs/API.md lists them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Distance of an index or quantizer (HNSW takes all three, PQ "l2" and "ip"); codes are in the saved headers.
METRICS = {"l2": 0, "ip": 1, "cosine": 2}
PQ_METRICS = ("l2", "ip")
# Stored vector type of HNSWIndex / MultiVectorIndex (codes in the HNSW header).
STORAGES = {"float32": 0, "float16": 1}
PQ_INITS = {"kmeans++": 0, "random": 1}
SKETCH_KINDS = {"srht": 0, "gaussian": 1, "countsketch": 2, "sparse_sign": 3}
LSTSQ_METHODS = ("solve", "precondition")
FDE_PROJECTIONS = ("identity", "ams_sketch")
FDE_EMPTY = ("error", "zeros")
# FDE.from_matrices: the sign string an empty document partition is filled from (fde.hpp, FDEFillTarget)
FDE_FILL_TARGETS = ("reference", "gray_decoded")
MULTIVECTOR_ANNS = ("hnsw", "pq", "flat", "tokens")


def choice(value: Any, name: str, options: Mapping[str, object] | Sequence[str]) -> str:
    """``value`` if it is one of ``options`` (a str), else TypeError (not a str) / ValueError naming ``name`` and
    listing the options."""
    listed = ", ".join(map(repr, options))
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {listed}; got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value
