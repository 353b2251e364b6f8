"""PyLate's ColBERT scoring and reranking on simkern's MaxSim kernels: ``from simkern.compat import pylate``.

    from simkern.compat.pylate import colbert_scores, colbert_scores_pairwise, colbert_kd_scores, rerank
    scores = colbert_scores(queries_embeddings, documents_embeddings, queries_mask, documents_mask)
    ranked = rerank(documents_ids, queries_embeddings, documents_embeddings)

The call shapes and results of ``pylate.scores.colbert_scores``, ``colbert_scores_pairwise``,
``colbert_kd_scores`` and ``pylate.rank.rerank`` (PyLate 1.6.0, ``pylate/scores/colbert.py`` and
``pylate/rank/rank.py``):

- ``colbert_scores(Q (a, s, h), D (b, t, h), queries_mask (a, s), documents_mask (b, t))`` -> ``(a, b)``;
- ``colbert_scores_pairwise(Q, D)`` -> ``(B,)``: the score of pair ``i``; ``Q`` and ``D`` are 3-D or lists of
  2-D ``(tokens, h)`` items of any lengths (no masks, as in PyLate);
- ``colbert_kd_scores(Q (a, s, h), D (a, b, t, h), queries_mask (a, s), documents_mask (a, b, t))`` -> ``(a, b)``:
  each query against its own ``b`` documents;
- ``rerank(documents_ids, queries_embeddings, documents_embeddings, device=None)``: per query, a list of
  ``{"id": ..., "score": float}`` dicts, best score first.

Semantics are PyLate's by default (``mask_mode="multiply"``): the masks multiply the similarities,
``score[a, b] = sum_i max_j qm[a, i] * dm[b, j] * <q_ai, d_bj>``. So a masked document token still takes part in
the max with similarity 0 (it wins whenever every unmasked similarity of a query token is negative), a document
with every token masked scores 0, and a masked query token adds 0. ``rerank`` pads each query's documents with
zero tokens to the longest one, as PyLate does, so there a shorter document's padding takes part in the max with
similarity 0. ``mask_mode="remove"`` gives simkern's stricter semantics instead: masked tokens (and ``rerank``'s
padding) are removed before scoring, never win the max, and a document with no token left scores ``-inf``.

How it runs: with 0/1 masks, masked tokens are dropped (one copy of the kept tokens) and, in ``"multiply"``
mode, every document that had a masked token gets one zero token in their place - ``<q, 0> = 0`` is exactly
the similarity PyLate gives every masked token - then simkern's kernel scores the rest (``maxsim`` for
``colbert_scores`` and for each query of ``rerank``, ``maxsim_pairs`` for the pairwise and KD scores;
``threads=`` as there). Unmasked inputs are scored in place (no copy). Other mask values (``"multiply"`` only)
scale the tokens: ``<w q, v d> = w v <q, d>``.

Inputs: float32 NumPy arrays, CPU torch tensors (viewed through DLPack, no copy), other CPU arrays with DLPack
or ``__array__``, or lists of those stacked the way PyLate's ``convert_to_tensor`` stacks them (NumPy arrays and
nested lists as float32). Masks: bool, integer or float, of the exact shapes above. Output: ``torch.Tensor``
(CPU, float32) when an embedding argument is a tensor (or a list of tensors), else a NumPy float32 array.
Scores equal PyLate's to float32 rounding (the sums run in another order).

Differences from PyLate 1.6, each deliberate, and why:

- NumPy (and list) inputs give NumPy results; PyLate converts them and returns a ``torch.Tensor``. Why: torch is
  then not needed at all, and NumPy callers get NumPy back; tensors in still give tensors out.
- No autograd: a tensor that requires grad raises ``TypeError`` (pass ``.detach()``). ``colbert_scores`` of CUDA
  tensors runs simkern's CUDA kernel (``simkern.cuda.maxsim``, same ``mask_mode``; float32 scores on the tensors'
  device) when simkern is built with CUDA and a device is usable; every other function, and ``colbert_scores``
  without the CUDA module, takes CPU tensors only: a tensor on another device raises ``TypeError`` (move it with
  ``.cpu()``). CUDA tensors may be float32, float16 or bfloat16 (scored with float32 accumulation). Why: the
  kernels have no backward pass; moving a GPU batch or dropping its gradient silently would hide a slow path or
  break training later, so train with PyLate.
  ``backend=`` takes PyLate's values (``"auto"``, ``"torch"``, ``"flash"``, ``"lik"``; others raise
  ``ValueError``) and is ignored, as is the ``PYLATE_SCORES_BACKEND`` variable: simkern's kernel always runs.
  ``rerank``'s ``device=`` is ignored: its output (Python lists and floats) is the same on every device.
- float32 embeddings only on the CPU: other dtypes raise ``TypeError`` (PyLate computes float16 / float64 in
  that dtype).
  Why: the kernels score float32 queries; a silent cast would change float64 results and the cost of a call.
  The result is float32 even where PyLate's type promotion gives float64 (float64 masks): the kernel
  accumulates in float32 either way.
- Masks must have exactly the shapes above (PyLate broadcasts whatever torch broadcasts) and be finite (NaN or
  inf raises ``ValueError``). Why: a transposed or mis-sized mask then fails instead of broadcasting into other
  scores, and a NaN mask is corrupt input.
- NaN or inf in a scored token raises ``ValueError`` (PyLate returns NaN scores); tokens of 0/1-masked positions
  are not scored, so NaN there is ignored (PyLate: ``NaN * 0`` is NaN). Why: simkern's kernels refuse non-finite
  tokens rather than rank with NaN scores; padding is never read.
- A maximum over no document token at all scores ``-inf`` where PyLate raises ``IndexError`` (torch's max over an
  empty dimension): ``t == 0`` in ``colbert_scores`` / ``colbert_kd_scores``, an empty item in
  ``colbert_scores_pairwise``, a query in ``rerank`` whose documents all have 0 tokens. A query with no tokens
  scores 0, as in PyLate. Why: -inf is the value of an empty max (and ``simkern.maxsim``'s for an empty
  document), so such a batch ranks instead of failing.
- ``colbert_scores_pairwise`` with no pairs returns an empty result (PyLate: ``RuntimeError`` from
  ``torch.stack``); ``rerank`` returns ``[]`` for a query with no documents (PyLate: ``pad_sequence`` raises).
  Why: an empty batch or candidate list is valid input.
- Length mismatches raise ``ValueError``: ``colbert_scores_pairwise`` with more queries than documents or the
  reverse, ``rerank`` with lists of different lengths (PyLate's ``zip`` drops the extra items silently) or a
  query with more or fewer ids than documents (PyLate: ``IndexError``, or the extra ids dropped). Why: dropped
  items are a caller's bug that PyLate hides.
- ``rerank`` sorts with a stable sort: equal scores keep their input order. PyLate's
  ``torch.sort(descending=True)`` is not stable on the CPU (ties come back in an unspecified order). Why: the
  same input then always gives the same ranking.
- The queries and documents of one ``colbert_scores_pairwise`` call, and each query of ``rerank`` and its
  documents, must share the embedding size (``ValueError``); PyLate's pairwise loop lets each pair have its own.
  Why: the pairs are scored as one batch.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import numpy as np
import numpy.typing as npt

from ..maxsim import maxsim, maxsim_pairs
from ..ragged import Ragged, as_array

if TYPE_CHECKING:
    import torch

__all__ = ["RerankResult", "colbert_kd_scores", "colbert_scores", "colbert_scores_pairwise", "rerank"]

MaskMode = Literal["multiply", "remove"]
_BACKENDS = ("auto", "torch", "flash", "lik")


class RerankResult(TypedDict):
    """One entry of ``rerank``'s result (PyLate's ``pylate.rank.RerankResult``)."""

    id: Any
    score: float


# -- argument conversion --------------------------------------------------------------------------------------

def _is_tensor(x: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _wants_tensor(*xs: object) -> bool:
    """Whether the result is a tensor: an argument is a tensor, or a list whose first item is one."""
    return any(_is_tensor(x) or (isinstance(x, (list, tuple)) and len(x) > 0 and _is_tensor(x[0])) for x in xs)


def _numpy(x: object, name: str) -> npt.NDArray[Any]:
    """A NumPy view of an array-like (no copy); a tensor must be on the CPU and not require grad."""
    if _is_tensor(x):
        t: Any = x
        if t.device.type != "cpu":
            raise TypeError(f"{name} is on {t.device}: simkern scores CPU tensors only; move it with .cpu()")
        if t.requires_grad:
            raise TypeError(f"{name} requires grad: simkern's scores have no autograd; pass .detach() "
                            "(train with PyLate itself)")
    return as_array(x, name)


def _convert(x: object, name: str) -> npt.NDArray[Any]:
    """PyLate's ``convert_to_tensor`` (pylate/utils/tensor.py), to NumPy: arrays and tensors as they are; a list
    of tensors stacked; a list of arrays or of nested lists converted to one float32 array."""
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            return np.zeros(0, np.float32)
        try:
            if _is_tensor(x[0]):
                return np.stack([_numpy(t, f"{name}[{i}]") for i, t in enumerate(x)])
            return np.array(x, dtype=np.float32)
        except ValueError as e:
            raise ValueError(f"{name}: its items must all have the same shape ({e})") from None
    return _numpy(x, name)


def _embeddings(x: object, name: str, ndim: int) -> npt.NDArray[np.float32]:
    arr = _convert(x, name)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {arr.dtype}")
    return np.ascontiguousarray(arr)


def _mode(mask_mode: object) -> str:
    if mask_mode not in ("multiply", "remove"):
        raise ValueError(f"mask_mode must be 'multiply' (PyLate's) or 'remove', got {mask_mode!r}")
    return str(mask_mode)


def _backend(backend: object) -> None:
    """PyLate's backend values are accepted (and ignored: simkern's kernel always runs)."""
    if backend is not None and (not isinstance(backend, str) or backend.lower() not in _BACKENDS):
        raise ValueError(f"backend must be one of 'auto', 'torch', 'flash', 'lik' (ignored: simkern's kernel "
                         f"always runs); got {backend!r}")


def _mask(mask: object, shape: tuple[int, ...], name: str, mode: str) -> npt.NDArray[Any] | None:
    """None (nothing masked), a bool array (0/1 masks) or float32 weights (other values, "multiply" only)."""
    if mask is None:
        return None
    m = _convert(mask, name)
    if m.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {m.shape}")
    if m.dtype != np.bool_:
        if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
            raise TypeError(f"{name} must be bool, integer or float, got {m.dtype}")
        if np.issubdtype(m.dtype, np.floating) and not np.isfinite(m).all():
            raise ValueError(f"{name} holds NaN or inf")
        if not ((m == 0) | (m == 1)).all():
            if mode == "remove":
                raise ValueError(f"{name} must hold only 0 and 1 with mask_mode='remove' (mask_mode='multiply' "
                                 "scales by other values, as PyLate does)")
            return np.ascontiguousarray(m, dtype=np.float32)
        m = m != 0
    return None if m.all() else m


def _flat(x: npt.NDArray[np.float32]) -> Ragged:
    """``(n, L, h)`` as n sets of L tokens (a view)."""
    n, length, dim = x.shape
    return Ragged._trusted(x.reshape(n * length, dim), np.arange(n + 1, dtype=np.int64) * length)


def _kept(x: npt.NDArray[np.float32], keep: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.float32],
                                                                              npt.NDArray[np.int64]]:
    offsets = np.zeros(x.shape[0] + 1, np.int64)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    return x[keep], offsets  # the kept tokens in order (one copy, C-contiguous)


def _query_side(q: npt.NDArray[np.float32], mask: npt.NDArray[Any] | None) -> Ragged:
    """A masked query token adds 0 in both modes (Ld >= 1): removed; weights scale the token."""
    if mask is None:
        return _flat(q)
    if mask.dtype != np.bool_:
        return _flat(q * mask[..., None])
    return Ragged._trusted(*_kept(q, mask))


def _doc_side(d: npt.NDArray[np.float32], mask: npt.NDArray[Any] | None, mode: str) -> Ragged:
    if mask is None:
        return _flat(d)
    if mask.dtype != np.bool_:
        return _flat(d * mask[..., None])  # "multiply" only (_mask refuses weights with "remove")
    if mode == "remove":
        return Ragged._trusted(*_kept(d, mask))
    # "multiply": the first masked token of each document with one stays, zeroed: its similarity 0 is what
    # PyLate gives every masked token (the other masked ones add nothing to the max).
    rows = np.flatnonzero(~mask.all(axis=1))
    first = np.argmin(mask[rows], axis=1)  # the first False; every token before it is kept
    keep = mask.copy()
    keep[rows, first] = True
    tokens, offsets = _kept(d, keep)
    tokens[offsets[rows] + first] = 0.0
    return Ragged._trusted(tokens, offsets)


def _out(scores: npt.NDArray[np.float32], tensor: bool) -> npt.NDArray[np.float32] | torch.Tensor:
    if tensor:
        import torch
        return torch.from_numpy(scores)
    return scores


def _prepare(queries_embeddings: object, documents_embeddings: object, queries_mask: object,
             documents_mask: object, backend: object, mask_mode: object,
             doc_ndim: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], Ragged | None, Ragged | None]:
    """Checked arrays, and the query / doc Ragged to score (None, None when ``t == 0``: nothing to score)."""
    mode = _mode(mask_mode)
    _backend(backend)
    q = _embeddings(queries_embeddings, "queries_embeddings", 3)
    d = _embeddings(documents_embeddings, "documents_embeddings", doc_ndim)
    if q.shape[2] != d.shape[-1]:
        raise ValueError(f"queries and documents must have the same embedding size, got {q.shape[2]} and "
                         f"{d.shape[-1]}")
    if doc_ndim == 4 and d.shape[0] != q.shape[0]:
        raise ValueError(f"documents_embeddings must have one group of documents per query ({q.shape[0]}), got "
                         f"shape {d.shape}")
    qm = _mask(queries_mask, q.shape[:2], "queries_mask", mode)
    dm = _mask(documents_mask, d.shape[:-1], "documents_mask", mode)
    if mode == "multiply" and d.shape[-2] == 0:
        return q, d, None, None
    flat_d = d.reshape(int(np.prod(d.shape[:-2])), *d.shape[-2:])
    return q, d, _query_side(q, qm), _doc_side(flat_d, None if dm is None else dm.reshape(flat_d.shape[:2]), mode)


def _no_doc_tokens(shape: tuple[int, int], lq: int) -> npt.NDArray[np.float32]:
    """A max over no document token: -inf (PyLate raises), unless the query has no tokens (a sum of nothing: 0)."""
    return np.full(shape, -np.inf if lq > 0 else 0.0, np.float32)


# -- the scores -----------------------------------------------------------------------------------------------

def colbert_scores(queries_embeddings: npt.ArrayLike | Sequence[Any],
                   documents_embeddings: npt.ArrayLike | Sequence[Any],
                   queries_mask: npt.ArrayLike | None = None, documents_mask: npt.ArrayLike | None = None,
                   backend: str | None = None, *, mask_mode: MaskMode = "multiply",
                   threads: int | None = None) -> npt.NDArray[np.float32] | torch.Tensor:
    """ColBERT scores ``(n_queries, n_docs)`` of padded ``(n_queries, Lq, h)`` queries against padded
    ``(n_docs, Ld, h)`` documents, masks ``(n_queries, Lq)`` / ``(n_docs, Ld)``; see the module docstring."""
    if _on_cuda(queries_embeddings) or _on_cuda(documents_embeddings):
        return _colbert_scores_cuda(queries_embeddings, documents_embeddings, queries_mask, documents_mask, backend,
                                    mask_mode)
    tensor = _wants_tensor(queries_embeddings, documents_embeddings)
    q, d, qr, dr = _prepare(queries_embeddings, documents_embeddings, queries_mask, documents_mask, backend,
                            mask_mode, 3)
    if qr is None or dr is None:
        return _out(_no_doc_tokens((q.shape[0], d.shape[0]), q.shape[1]), tensor)
    return _out(maxsim(qr, dr, threads=threads), tensor)


def _on_cuda(x: object) -> bool:
    return _is_tensor(x) and getattr(x, "device", None) is not None and x.device.type == "cuda"  # type: ignore[attr-defined]


def _colbert_scores_cuda(q: Any, d: Any, queries_mask: Any, documents_mask: Any, backend: str | None,
                         mask_mode: MaskMode) -> Any:
    """colbert_scores of CUDA tensors on simkern's CUDA kernel (simkern.cuda.maxsim): PyLate's formula
    (``mask_mode="multiply"``) or simkern's (``"remove"``), float32 scores on the tensors' device."""
    from .. import cuda

    _backend(backend)
    mode = _mode(mask_mode)
    for name, t in (("queries_embeddings", q), ("documents_embeddings", d)):
        if not _on_cuda(t):
            raise TypeError(f"{name} must be a CUDA tensor like the other embeddings, got "
                            f"{getattr(t, 'device', type(t).__name__)}")
        if t.requires_grad:
            raise TypeError(f"{name} requires grad: simkern's scores have no autograd; pass .detach() "
                            "(train with PyLate itself)")
        if t.ndim != 3:
            raise ValueError(f"{name} must be 3-D (n, tokens, h), got shape {tuple(t.shape)}")
    if not cuda.is_available():
        raise TypeError(f"queries_embeddings is on {q.device}: this simkern has no usable CUDA kernels "
                        f"({cuda.device_info().get('reason', '')}); move the tensors with .cpu()")
    return cuda.maxsim(q, d, query_mask=queries_mask, doc_mask=documents_mask, mask_mode=mode)  # type: ignore[arg-type]


def colbert_kd_scores(queries_embeddings: npt.ArrayLike | Sequence[Any],
                      documents_embeddings: npt.ArrayLike | Sequence[Any],
                      queries_mask: npt.ArrayLike | None = None, documents_mask: npt.ArrayLike | None = None,
                      backend: str | None = None, *, mask_mode: MaskMode = "multiply",
                      threads: int | None = None) -> npt.NDArray[np.float32] | torch.Tensor:
    """Knowledge-distillation scores ``(n_queries, n_candidates)``: query ``a`` ``(n_queries, Lq, h)`` against its
    own candidates ``documents_embeddings[a]`` ``(n_queries, n_candidates, Ld, h)``; masks ``(n_queries, Lq)`` /
    ``(n_queries, n_candidates, Ld)``. See the module docstring."""
    tensor = _wants_tensor(queries_embeddings, documents_embeddings)
    q, d, qr, dr = _prepare(queries_embeddings, documents_embeddings, queries_mask, documents_mask, backend,
                            mask_mode, 4)
    a, b = d.shape[:2]
    if qr is None or dr is None:
        return _out(_no_doc_tokens((a, b), q.shape[1]), tensor)
    ids = np.arange(a * b, dtype=np.int64)
    return _out(maxsim_pairs(qr, dr, ids // max(b, 1), ids, threads=threads).reshape(a, b), tensor)


def _items(x: object, name: str) -> list[Any]:
    """The items of a list, or the rows of an array (views)."""
    if isinstance(x, (list, tuple)):
        return list(x)
    arr = _numpy(x, name)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be a list or an array of embeddings, got a scalar")
    return list(arr)


def _matrix(x: object, name: str, dim: int | None) -> npt.NDArray[np.float32]:
    """One ``(tokens, h)`` float32 item."""
    if type(x) is np.ndarray and x.ndim == 2 and x.dtype == np.float32 and x.flags.c_contiguous:
        arr: npt.NDArray[np.float32] = x  # the common case, without the general path's calls
    else:
        arr = _embeddings(x, name, 2)
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has embedding size {arr.shape[1]}, expected {dim} (its query's)")
    return arr


def _ragged_items(x: object, name: str, dim: int | None = None) -> tuple[Ragged, int]:
    """A 3-D array in place, or a list of 2-D items concatenated (one copy); and the embedding size."""
    if not isinstance(x, (list, tuple)):
        arr = _embeddings(x, name, 3)
        return _flat(arr), arr.shape[2]
    items = [_matrix(v, f"{name}[{i}]", dim) for i, v in enumerate(x)]
    if dim is None:
        dim = items[0].shape[1] if items else 0
        for i, v in enumerate(items):
            if v.shape[1] != dim:
                raise ValueError(f"{name}[{i}] has embedding size {v.shape[1]}, expected {dim} ({name}[0]'s)")
    return (Ragged.from_list(items) if items else Ragged.from_list([], dim=dim)), dim


def colbert_scores_pairwise(queries_embeddings: npt.ArrayLike | Sequence[Any],
                            documents_embeddings: npt.ArrayLike | Sequence[Any],
                            backend: str | None = None, *,
                            threads: int | None = None) -> npt.NDArray[np.float32] | torch.Tensor:
    """The score of each ``(queries_embeddings[i], documents_embeddings[i])`` pair: ``(n_pairs,)``. Each argument a
    3-D ``(n_pairs, L, h)`` array (every row scored, padding included, as in PyLate) or a list of ``(L_i, h)``
    items of any lengths. See the module docstring."""
    _backend(backend)
    tensor = _wants_tensor(queries_embeddings, documents_embeddings)
    qr, dim = _ragged_items(queries_embeddings, "queries_embeddings")
    dr, ddim = _ragged_items(documents_embeddings, "documents_embeddings", dim if len(qr) else None)
    if len(qr) != len(dr):
        raise ValueError(f"queries_embeddings and documents_embeddings must have the same length (one query per "
                         f"document), got {len(qr)} and {len(dr)}")
    if len(qr) and dim != ddim:
        raise ValueError(f"queries and documents must have the same embedding size, got {dim} and {ddim}")
    if len(qr) == 0:
        return _out(np.zeros(0, np.float32), tensor)
    ids = np.arange(len(qr), dtype=np.int64)
    return _out(maxsim_pairs(qr, dr, ids, ids, threads=threads), tensor)


# -- rerank ---------------------------------------------------------------------------------------------------

def rerank(documents_ids: Sequence[Sequence[Any]], queries_embeddings: Any, documents_embeddings: Any,
           device: Any = None, *, mask_mode: MaskMode = "multiply",
           threads: int | None = None) -> list[list[RerankResult]]:
    """Each query's documents sorted by ColBERT score, best first: ``[[{"id": ..., "score": float}, ...], ...]``.

    ``queries_embeddings``: a list of ``(Lq_i, h)`` items, a 3-D array, or one 2-D array (one query).
    ``documents_embeddings``: per query, a list of ``(Ld_j, h)`` items (or a 3-D array); ``documents_ids``: per
    query, the ids of those documents in the same order. ``device`` is ignored (see the module docstring).
    ``mask_mode="multiply"`` (PyLate's) pads each query's documents with zero tokens to the longest one, and the
    padding takes part in the max; ``"remove"`` scores each document on its own tokens.
    """
    mode = _mode(mask_mode)
    if isinstance(queries_embeddings, np.ndarray) or _is_tensor(queries_embeddings):
        if queries_embeddings.ndim == 2:  # PyLate's reshape_embeddings: one query
            queries_embeddings = queries_embeddings[None]
    queries = [_matrix(v, f"queries_embeddings[{i}]", None)
               for i, v in enumerate(_items(queries_embeddings, "queries_embeddings"))]
    groups = _items(documents_embeddings, "documents_embeddings")
    ids = list(documents_ids)
    if not len(queries) == len(ids) == len(groups):
        raise ValueError(f"documents_ids, queries_embeddings and documents_embeddings must have one entry per "
                         f"query, got {len(ids)}, {len(queries)} and {len(groups)}")
    if not queries:
        return []
    docs: list[list[npt.NDArray[np.float32]]] = []
    for i, group in enumerate(groups):
        items = [_matrix(v, f"documents_embeddings[{i}][{j}]", queries[i].shape[1])
                 for j, v in enumerate(_items(group, f"documents_embeddings[{i}]"))]
        if len(items) != len(ids[i]):
            raise ValueError(f"documents_ids[{i}] has {len(ids[i])} ids for {len(items)} documents")
        docs.append(items)

    # Per query, its documents copied into one buffer (reused: it stays in cache, which a single buffer of every
    # query's documents would not) and scored with the query; with "multiply", a document shorter than the
    # longest of its query's gets one zero token (the similarity PyLate's zero padding gives).
    lengths = [np.array([len(v) for v in items], np.int64) for items in docs]
    pads = [n < n.max() if mode == "multiply" and len(n) else np.zeros(len(n), bool) for n in lengths]
    flat = np.empty(max(int((n + p).sum()) * q.shape[1] for q, n, p in zip(queries, lengths, pads)), np.float32)
    results: list[list[RerankResult]] = []
    for i, (q, items, n, pad) in enumerate(zip(queries, docs, lengths, pads)):
        offsets = np.zeros(len(items) + 1, np.int64)
        np.cumsum(n + pad, out=offsets[1:])
        buffer = flat[:int(offsets[-1]) * q.shape[1]].reshape(int(offsets[-1]), q.shape[1])
        for v, start, rows, zero in zip(items, offsets.tolist(), n.tolist(), pad.tolist()):
            buffer[start:start + rows] = v
            if zero:
                buffer[start + rows] = 0.0
        s = maxsim(q, Ragged._trusted(buffer, offsets), threads=threads)[0]
        order = np.argsort(-s, kind="stable").tolist()
        values = s[order].tolist()
        results.append([RerankResult(id=ids[i][j], score=v) for j, v in zip(order, values)])
    return results
