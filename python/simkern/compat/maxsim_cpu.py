"""maxsim-cpu / fast-maxsim's API over simkern's MaxSim kernels: ``import simkern.compat.maxsim_cpu as maxsim_cpu``.

``maxsim_scores(query, docs)`` and ``maxsim_scores_variable(query, docs)`` take and return what maxsim-cpu 0.1 and
fast-maxsim 0.2 do (their src/lib.rs): ``query`` a C-contiguous float32 ``(Lq, dim)`` array; ``docs`` a
C-contiguous float32 ``(N, Ld, dim)`` array, or (``_variable``) a list / tuple / 3-D array of C-contiguous float32
``(Ld_i, dim)`` arrays; the result a float32 ``(N,)`` array of ``sum_i max_j <q_i, d_j>``. Wrong dtypes, ranks,
non-contiguous arrays and non-arrays raise TypeError with their messages; a dimension mismatch raises ValueError
with their message. Scores equal theirs to float32 rounding (the sums run in another order). Both use every pool
thread (maxsim-cpu: every rayon thread); ``simkern.set_num_threads`` sets how many.

Differences, each deliberate:
- a 3-D ``docs`` with ``Ld == 0`` scores ``-inf`` per doc (as ``maxsim_scores_variable`` scores an empty doc);
  maxsim-cpu divides by zero there and aborts the process;
- NaN or inf in ``query`` or ``docs`` raises ValueError naming the doc; maxsim-cpu ignores NaN similarities (a doc
  of NaNs scores -inf, a NaN query token adds nothing), which hides corrupt embeddings;
- an empty query (``Lq == 0``) scores ``0.0``; maxsim-cpu returns ``-0.0`` (equal as numbers).

maxsim-cpu 0.1 itself returns wrong scores for some shapes, differently from one run to the next (on a Zen 4 VM:
24 of 150 shapes with Lq 1..128, Ld 1..180, dim 8..128, e.g. Lq=64, Ld=64, dim=128; every dim > 128 tried, e.g.
Lq=32, Ld=64, dim=129 gave 3.4e20, 0 or -inf for a MaxSim of 826.78). fast-maxsim 0.2 and this shim are exact
there; the differential tests compare scores with fast-maxsim and the float64 reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..maxsim import maxsim as _maxsim
from ..ragged import Ragged

__all__ = ["maxsim_scores", "maxsim_scores_variable"]


def _array(arr: Any, name: str, ndim: int) -> npt.NDArray[np.float32]:
    """``arr`` as maxsim-cpu's bindings accept it (pyo3's PyReadonlyArray: float32, that rank, C-contiguous)."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"argument '{name}': '{type(arr).__name__}' object cannot be converted to 'PyArray<T, D>'")
    if arr.dtype != np.float32:
        raise TypeError(f"argument '{name}': type mismatch:\n from={arr.dtype}, to=float32")
    if arr.ndim != ndim:
        raise TypeError(f"argument '{name}': dimensionality mismatch:\n from={arr.ndim}, to={ndim}")
    if not arr.flags.c_contiguous:
        raise TypeError("The given array is not contiguous")
    return arr


def _scores(query: npt.NDArray[np.float32], docs: Ragged) -> npt.NDArray[np.float32]:
    """MaxSim of one query against ragged docs (simkern.maxsim: an empty doc scores -inf, an empty query 0)."""
    scores: npt.NDArray[np.float32] = _maxsim(query, docs)[0]
    return scores


def maxsim_scores(query: npt.NDArray[np.float32], docs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """MaxSim of ``query`` (Lq, dim) against each of ``docs`` (N, Ld, dim): float32 (N,)."""
    q = _array(query, "query", 2)
    d = _array(docs, "docs", 3)
    n, ld, dim = d.shape
    if dim != q.shape[1]:
        raise ValueError(f"Dimension mismatch: query dim {q.shape[1]} vs docs dim {dim}")
    return _scores(q, Ragged._trusted(d.reshape(n * ld, dim), np.arange(n + 1, dtype=np.int64) * ld))


def maxsim_scores_variable(query: npt.NDArray[np.float32],
                           docs: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    """MaxSim of ``query`` (Lq, dim) against each doc of a list of (Ld_i, dim) arrays: float32 (N,); an empty doc
    scores -inf."""
    q = _array(query, "query", 2)
    if isinstance(docs, np.ndarray):
        docs = list(docs)  # a 3-D array is a sequence of 2-D docs (its rows are C-contiguous when it is)
    elif not isinstance(docs, (list, tuple)):
        raise TypeError(f"argument 'docs': '{type(docs).__name__}' object cannot be converted to 'PyList'")
    arrays = [_array(doc, "docs", 2) for doc in docs]
    for i, doc in enumerate(arrays):
        if doc.shape[1] != q.shape[1]:
            raise ValueError(f"Dimension mismatch at doc {i}: query dim {q.shape[1]} vs doc dim {doc.shape[1]}")
    if not arrays:
        return np.zeros(0, np.float32)
    return _scores(q, Ragged.from_list(arrays))  # one copy of the docs into a flat buffer
