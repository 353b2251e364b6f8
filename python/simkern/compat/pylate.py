"""PyLate's ``colbert_scores`` call shape on simkern's MaxSim kernel.

    from simkern.compat.pylate import colbert_scores
    scores = colbert_scores(queries_embeddings, documents_embeddings, queries_mask, documents_mask)

Inputs as in ``pylate.scores.colbert_scores``: padded ``(n_queries, Lq, dim)`` and ``(n_docs, Ld, dim)`` float32
arrays (NumPy, or CPU torch tensors / anything with DLPack or ``__array__``, viewed without a copy), optional 0/1
masks ``(n_queries, Lq)`` and ``(n_docs, Ld)`` (bool, integer or float). Returns the ``(n_queries, n_docs)`` scores
``sum_i max_j <q_i, d_j>`` as float32 - a ``torch.Tensor`` when the query embeddings are one, else a NumPy array.

Masking semantics (where they differ from PyLate's): PyLate multiplies the similarity matrix by the masks, so a
masked document token still takes part in the max with similarity 0 - it wins whenever every real similarity of a
query token is negative, and a document with every token masked scores 0. Here masked tokens are removed before
scoring: they never win the max, and a document with every token masked scores -inf. Masked query tokens contribute
0 in both. On unmasked inputs (or masks that only cut padding whose similarities do not matter) the results agree
to float32 rounding. Masks must hold only 0 and 1 (PyLate would scale by other values; refused here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..maxsim import maxsim
from ..ragged import Ragged, as_array

if TYPE_CHECKING:
    import torch

__all__ = ["colbert_scores"]


def _padded(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float32]:
    arr = as_array(x, name)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be 3-D (batch, tokens, dim), got shape {arr.shape}")
    if arr.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {arr.dtype}")
    return arr


def _mask(mask: npt.ArrayLike | None, shape: tuple[int, ...], name: str) -> npt.NDArray[np.bool_] | None:
    if mask is None:
        return None
    m = as_array(mask, name)
    if m.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {m.shape}")
    if m.dtype != np.bool_:
        if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
            raise TypeError(f"{name} must be bool, integer or float, got {m.dtype}")
        if not np.isin(m, (0, 1)).all():
            raise ValueError(f"{name} must hold only 0 and 1")
        m = m != 0
    return m


def _ragged(x: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_] | None) -> Ragged:
    n, length, dim = x.shape
    if mask is None:
        return Ragged(np.ascontiguousarray(x).reshape(n * length, dim), np.arange(n + 1, dtype=np.int64) * length)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(mask.sum(axis=1), out=offsets[1:])
    return Ragged(np.ascontiguousarray(x[mask]), offsets)  # the kept tokens, in order (one copy)


def colbert_scores(queries_embeddings: npt.ArrayLike, documents_embeddings: npt.ArrayLike,
                   queries_mask: npt.ArrayLike | None = None, documents_mask: npt.ArrayLike | None = None,
                   *, threads: int | None = None) -> npt.NDArray[np.float32] | torch.Tensor:
    """ColBERT late-interaction scores ``(n_queries, n_docs)``; see the module docstring for masks and types."""
    q = _padded(queries_embeddings, "queries_embeddings")
    d = _padded(documents_embeddings, "documents_embeddings")
    if q.shape[2] != d.shape[2]:
        raise ValueError(f"queries and documents must have the same embedding size, got {q.shape[2]} and "
                         f"{d.shape[2]}")
    qm = _mask(queries_mask, q.shape[:2], "queries_mask")
    dm = _mask(documents_mask, d.shape[:2], "documents_mask")
    scores = maxsim(_ragged(q, qm), _ragged(d, dm), threads=threads)
    if type(queries_embeddings).__module__.startswith("torch"):
        import torch
        return torch.from_numpy(scores)
    return scores
