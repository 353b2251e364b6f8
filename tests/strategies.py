"""Hypothesis strategies biased to SIMD edges: 0, 1, lane - 1, lane, lane + 1 for lanes 4, 8, 16, 32, and tile
sizes of the kernels (6 and 12 doc tokens per register tile)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

EDGE_COUNTS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49, 65]
EDGE_DIMS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129, 200]

token_counts = st.sampled_from(EDGE_COUNTS) | st.integers(0, 70)
nonempty_counts = st.sampled_from([c for c in EDGE_COUNTS if c]) | st.integers(1, 70)
dims = st.sampled_from(EDGE_DIMS) | st.integers(1, 200)

# How token values are drawn. "negative" makes every similarity negative, so a kernel that lets padding (zeros)
# win the max, or starts the max at 0, fails; "small_ints" makes float32 sums exact.
VALUE_KINDS = ["normal", "uniform", "negative", "small_ints", "unit"]


def make_tokens(rng: np.random.Generator, n: int, dim: int, kind: str) -> np.ndarray:
    if kind == "normal":
        x = rng.standard_normal((n, dim))
    elif kind == "uniform":
        x = rng.uniform(-1.0, 1.0, (n, dim))
    elif kind == "negative":
        x = rng.uniform(0.1, 1.0, (n, dim))  # queries get negated by the caller
    elif kind == "small_ints":
        x = rng.integers(-3, 4, (n, dim)).astype(np.float64)
    else:
        x = rng.standard_normal((n, dim))
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x.astype(np.float32)


@st.composite
def multivector_case(draw, max_queries: int = 4, max_docs: int = 10):
    """(queries, docs, dim, kind): lists of float32 2-D arrays with edge-biased token counts and dims."""
    dim = draw(dims)
    n_queries = draw(st.integers(0, max_queries))
    n_docs = draw(st.integers(0, max_docs))
    q_lens = draw(st.lists(token_counts, min_size=n_queries, max_size=n_queries))
    d_lens = draw(st.lists(token_counts, min_size=n_docs, max_size=n_docs))
    kind = draw(st.sampled_from(VALUE_KINDS))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    queries = [make_tokens(rng, n, dim, kind) for n in q_lens]
    if kind == "negative":
        queries = [-q for q in queries]
    docs = [make_tokens(rng, n, dim, kind) for n in d_lens]
    return queries, docs, dim, kind
