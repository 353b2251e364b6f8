"""Float64 NumPy oracles. Readable first; they never call simkern."""

from __future__ import annotations

import numpy as np


def maxsim_ref(queries: list[np.ndarray], docs: list[np.ndarray]) -> np.ndarray:
    """score[q, d] = sum_i max_j <q_i, d_j> in float64.

    An empty doc scores -inf against a non-empty query; an empty query scores 0 against any doc.
    """
    out = np.zeros((len(queries), len(docs)), dtype=np.float64)
    for a, q in enumerate(queries):
        q64 = np.asarray(q, dtype=np.float64)
        for b, d in enumerate(docs):
            d64 = np.asarray(d, dtype=np.float64)
            if q64.shape[0] == 0:
                out[a, b] = 0.0
            elif d64.shape[0] == 0:
                out[a, b] = -np.inf
            else:
                out[a, b] = (q64 @ d64.T).max(axis=1).sum()
    return out


def maxsim_magnitude(queries: list[np.ndarray], docs: list[np.ndarray]) -> np.ndarray:
    """sum_i max_j sum_k |q_ik d_jk|: the scale that float32 rounding errors of a MaxSim score are relative to."""
    return maxsim_ref([np.abs(np.asarray(q, np.float64)) for q in queries],
                      [np.abs(np.asarray(d, np.float64)) for d in docs])


def maxsim_tolerance(queries, docs, dim: int, *, query_rounded_to_bf16: bool = False) -> np.ndarray:
    """Absolute tolerance per score.

    A float32 dot of length dim (FMA or not) is within about dim * 2^-24 of sum_k |q_k d_k|; the sum of Lq maxima
    adds Lq * 2^-24 of the total. We allow twice that. With the query rounded to bfloat16 (the AVX512-BF16
    kernel), each product is off by up to 2^-8 relative (|q - bf16(q)| <= 2^-9 |q|, doubled for margin).
    """
    lq = max((len(q) for q in queries), default=0)
    rel = 2.0 * (dim + lq + 4) * 2.0**-24
    if query_rounded_to_bf16:
        rel += 2.0**-8
    mag = maxsim_magnitude(queries, docs)
    return rel * np.where(np.isfinite(mag), mag, 0.0) + 1e-30


def topk_ref(scores: np.ndarray, k: int, allowed: list[np.ndarray] | None = None):
    """Top-k per row: score descending, then id ascending; pad with (-1, -inf). `allowed[q]`: candidate ids."""
    n_queries, n_docs = scores.shape
    out_ids = np.full((n_queries, k), -1, dtype=np.int64)
    out_scores = np.full((n_queries, k), -np.inf, dtype=scores.dtype)
    for q in range(n_queries):
        ids = np.arange(n_docs) if allowed is None else np.asarray(allowed[q], dtype=np.int64)
        ids = ids[ids >= 0]
        order = sorted(ids.tolist(), key=lambda i: (-scores[q, i], i))[:k]
        out_ids[q, : len(order)] = order
        out_scores[q, : len(order)] = scores[q, order]
    return out_scores, out_ids


# -- product quantization ------------------------------------------------------------------------------------------

def pq_subvectors(x: np.ndarray, m: int) -> np.ndarray:
    """(n, dim) -> (n, m, dsub) float64."""
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], m, x.shape[1] // m)


def pq_tables_ref(queries: np.ndarray, codebooks: np.ndarray, metric: str) -> np.ndarray:
    """(nq, m, ksub): ||q_m - c_mj||^2 or <q_m, c_mj> in float64."""
    cb = np.asarray(codebooks, dtype=np.float64)
    qs = pq_subvectors(queries, cb.shape[0])
    if metric == "l2":
        return ((qs[:, :, None, :] - cb[None]) ** 2).sum(axis=3)
    return (qs[:, :, None, :] * cb[None]).sum(axis=3)


def pq_table_tolerance(queries: np.ndarray, codebooks: np.ndarray, metric: str) -> np.ndarray:
    """float32 summation of dsub terms: (dsub + 2) * 2^-24 relative to the sum of |terms|, doubled."""
    cb = np.asarray(codebooks, dtype=np.float64)
    qs = pq_subvectors(queries, cb.shape[0])
    if metric == "l2":
        mag = ((np.abs(qs[:, :, None, :]) + np.abs(cb[None])) ** 2).sum(axis=3)
    else:
        mag = (np.abs(qs[:, :, None, :]) * np.abs(cb[None])).sum(axis=3)
    return 2.0 * (cb.shape[2] + 2) * 2.0**-24 * mag + 1e-30


def pq_decode_ref(codes_unpacked: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    m = codebooks.shape[0]
    return np.concatenate([codebooks[s][codes_unpacked[:, s]] for s in range(m)], axis=1)
