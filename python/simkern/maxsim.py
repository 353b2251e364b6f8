"""MaxSim (ColBERT late interaction): ``score(Q, D) = sum_i max_j <q_i, d_j>``.

Inputs are multi-vector sets: a :class:`simkern.Ragged`, a list of 2-D arrays (concatenated once, one copy), a
single 2-D array (one set) or a 3-D array ``(n, L, dim)`` (n sets of L tokens); CPU arrays of other libraries
(PyTorch, JAX) are viewed through DLPack or ``__array__`` without a copy. Query tokens must be float32;
doc tokens float32, float16 or bfloat16 (``ml_dtypes.bfloat16``). Nothing else is converted: other dtypes raise
``TypeError``. Accumulation is float32.

Semantics: an empty doc scores ``-inf`` against a non-empty query; an empty query scores ``0``; NaN/inf in the
tokens that are scored raises ``ValueError`` (as does a float32 overflow).

Precision: float16/bfloat16 docs are widened exactly, so scores equal float32 scoring of the widened values,
except on CPUs with AVX512-BF16, where bfloat16 docs are scored with ``vdpbf16ps`` and the query is rounded to
bfloat16 (each token dot within ``2**-8 * sum_k |q_k d_k|``); ``simkern.kernel_names()`` tells which runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._validate import (
    check_no_overlap,
    check_out_aligned,
    int64_vector,
    is_bfloat16,
    out_pair,
    pair_into_out,
    positive_int,
    threads_arg,
)
from .ragged import Ragged, RaggedLike, aligned_tokens, as_ragged

__all__ = ["maxsim", "maxsim_pairs", "maxsim_topk"]

_DOC_DTYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}  # bfloat16: 2


def _queries(queries: RaggedLike) -> Ragged:
    q = as_ragged(queries, "queries")
    if q.dtype != np.float32:
        raise TypeError(f"queries must be float32, got {q.dtype}; convert with .astype(numpy.float32)")
    return aligned_tokens(q)


def _docs(docs: RaggedLike) -> tuple[Ragged, npt.NDArray[Any], int]:
    d = as_ragged(docs, "docs")
    code = 2 if is_bfloat16(d.dtype) else _DOC_DTYPE_CODES.get(d.dtype)
    if code is None:
        raise TypeError(f"docs must be float32, float16 or bfloat16, got {d.dtype}")
    d = aligned_tokens(d)
    tokens = d.tokens if code == 0 else d.tokens.view(np.uint16)  # zero-copy bit view for 16-bit types
    return d, tokens, code


def _check_dims(q: Ragged, d: Ragged) -> None:
    if q.dim < 1:
        raise ValueError("queries must have dim >= 1, got dim 0")
    if q.dim != d.dim:
        raise ValueError(f"docs must have dim == {q.dim} (the queries' dim), got dim {d.dim}")


def maxsim(
    queries: RaggedLike,
    docs: RaggedLike,
    *,
    threads: int | None = None,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Score every query against every doc.

    Returns float32 ``(n_queries, n_docs)``: ``out`` itself when given (float32, C-contiguous, that shape).
    Runs on ``threads`` threads (default: ``simkern.get_num_threads()``) with the GIL released.
    """
    q, (d, tokens, code) = _queries(queries), _docs(docs)
    _check_dims(q, d)
    if out is not None:
        check_no_overlap(out, "the query or doc tokens", q.tokens, tokens, q.offsets, d.offsets)
        check_out_aligned(out)
    return _core._maxsim_dense(q.tokens, q.offsets, tokens, code, d.offsets, threads_arg(threads), out)


def maxsim_pairs(queries: RaggedLike, docs: RaggedLike, query_ids: npt.ArrayLike, doc_ids: npt.ArrayLike, *,
                 threads: int | None = None,
                 out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
    """Score only the given ``(query_ids[p], doc_ids[p])`` pairs; returns float32 ``(P,)`` (``out`` if given).

    ``query_ids`` / ``doc_ids`` are 1-D integer arrays of equal length (converted to int64 if needed).
    """
    q, (d, tokens, code) = _queries(queries), _docs(docs)
    _check_dims(q, d)
    qi, di = int64_vector(query_ids, "query_ids"), int64_vector(doc_ids, "doc_ids")
    if out is not None:
        check_no_overlap(out, "the query or doc tokens or ids", q.tokens, tokens, q.offsets, d.offsets, qi, di)
        check_out_aligned(out)
    return _core._maxsim_pairs(q.tokens, q.offsets, tokens, code, d.offsets, qi, di, threads_arg(threads), out)


def maxsim_topk(
    queries: RaggedLike,
    docs: RaggedLike,
    k: int = 10,
    *,
    candidates: npt.ArrayLike | None = None,
    threads: int | None = None,
    out: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The ``k`` best docs per query, best first (ties: smaller doc id first).

    Parameters
    ----------
    candidates : None, 2-D int array ``(n_queries, c)``, or a list of 1-D int arrays (one per query)
        Restrict each query to these doc ids. They are scored in place (no copy of doc tokens); ``-1`` entries
        are padding and skipped; an id listed twice for one query raises ``ValueError``.
    out : None or a ``(scores float32, ids int64)`` pair of ``(n_queries, k)`` arrays
        Write the results there (docs/API.md).

    Returns
    -------
    scores : float32 ``(n_queries, k)``
    ids : int64 ``(n_queries, k)``
        When fewer than ``k`` docs are available, the tail is padded with id ``-1`` and score ``-inf``.
    """
    q, (d, tokens, code) = _queries(queries), _docs(docs)
    _check_dims(q, d)
    k = positive_int(k, "k")
    cand_ids = cand_offsets = None
    if candidates is not None:
        cand_ids, cand_offsets = _candidates(candidates, len(q), len(d))
    dest = out_pair(out, (len(q), k))
    return pair_into_out(_core._maxsim_topk(q.tokens, q.offsets, tokens, code, d.offsets, k, cand_ids, cand_offsets,
                                            threads_arg(threads)), dest)


def _topk_checked(q: Ragged, docs: Ragged, k: int, candidates: npt.NDArray[np.int64],
                  core_threads: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """maxsim_topk for inputs the caller produced and checked (composed calls: MultiVectorIndex): ``q`` float32
    aligned finite tokens, ``docs`` a Ragged of float32 / float16 / bfloat16 tokens of the same dim, ``k >= 1``,
    ``candidates`` an int64 ``(n_queries, c)`` array of doc ids in range, -1 padded, no id twice in a row (an
    ANN's results). Not re-validated or re-sorted; the C++ binding still bounds-checks the ids."""
    d, tokens, code = _docs(docs)
    flat = np.ascontiguousarray(candidates, dtype=np.int64).reshape(-1)
    offsets = np.arange(len(q) + 1, dtype=np.int64) * candidates.shape[1]
    return _core._maxsim_topk(q.tokens, q.offsets, tokens, code, d.offsets, k, flat, offsets, core_threads)


def _candidates(
    candidates: npt.ArrayLike, n_queries: int, n_docs: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    if isinstance(candidates, np.ndarray) and candidates.ndim == 2:
        if candidates.shape[0] != n_queries:
            raise ValueError(f"candidates must have one row per query ({n_queries}), got shape {candidates.shape}")
        if candidates.dtype == np.bool_ or not np.issubdtype(candidates.dtype, np.integer):
            raise TypeError(f"candidates must hold integer doc ids, got dtype {candidates.dtype}")
        flat = np.ascontiguousarray(candidates, dtype=np.int64).reshape(-1)
        if not flat.flags.aligned:
            flat = flat.copy()
        offsets = np.arange(n_queries + 1, dtype=np.int64) * candidates.shape[1]
    elif isinstance(candidates, Sequence) and not isinstance(candidates, (str, bytes)):
        if len(candidates) != n_queries:
            raise ValueError(f"candidates must have one list per query ({n_queries}), got {len(candidates)}")
        rows = [int64_vector(c, f"candidates[{i}]") for i, c in enumerate(candidates)]
        offsets = np.zeros(n_queries + 1, dtype=np.int64)
        np.cumsum([r.shape[0] for r in rows], out=offsets[1:])
        flat = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    else:
        raise TypeError("candidates must be a 2-D integer array (n_queries, c) or a list of 1-D integer arrays")
    if flat.size:
        lo, hi = int(flat.min()), int(flat.max())
        if lo < -1 or hi >= n_docs:
            bad = lo if lo < -1 else hi
            raise ValueError(f"candidates contain doc id {bad}; valid ids are 0..{n_docs - 1} (or -1 for padding)")
        owner = np.repeat(np.arange(n_queries, dtype=np.int64), np.diff(offsets))
        valid = flat >= 0
        keys = np.sort(owner[valid] * (n_docs + 1) + flat[valid])
        dup = np.flatnonzero(keys[1:] == keys[:-1])
        if dup.size:
            key = int(keys[dup[0]])
            raise ValueError(f"candidates for query {key // (n_docs + 1)} list doc id {key % (n_docs + 1)} twice")
    return flat, offsets
