"""Integers beyond what C++ takes (or absurd for the argument) raise ValueError naming the argument - never
pybind11's "incompatible function arguments" TypeError - across the public API (HNSWIndex and MultiVectorIndex
have their own tests)."""

from __future__ import annotations

import numpy as np
import pytest
import simkern

BIG = [2**31, 2**40, 2**63, 2**70]
RNG = np.random.default_rng(0)
X = RNG.standard_normal((300, 8)).astype(np.float32)
A = RNG.standard_normal((64, 3))


def _trained_pq():
    return simkern.ProductQuantizer(8, 2, 4).train(X, iters=1)


def _pq_index():
    index = simkern.PQIndex(8, 2, 4).train(X, iters=1)
    index.add(X[:20])
    return index


def _q():
    return simkern.Ragged(X[:6], [0, 3, 6])


# (argument name, call taking the value, values that must be refused: all of BIG unless said)
CASES = [
    ("dim", lambda v: simkern.ProductQuantizer(v, 1), BIG),
    ("m", lambda v: simkern.ProductQuantizer(8, v), BIG),
    ("nbits", lambda v: simkern.ProductQuantizer(8, 2, v), BIG),
    ("iters", lambda v: simkern.ProductQuantizer(8, 2, 4).train(X, iters=v), BIG),
    ("max_train_points", lambda v: simkern.ProductQuantizer(8, 2, 4).train(X, max_train_points=v), BIG),
    ("dim", lambda v: simkern.OPQ(v, 1), BIG),
    ("iters", lambda v: simkern.OPQ(8, 2, iters=v), BIG),
    ("pq_iters", lambda v: simkern.OPQ(8, 2, pq_iters=v), BIG),
    ("pq_final_iters", lambda v: simkern.OPQ(8, 2, 4, iters=0).train(X, pq_final_iters=v), BIG),
    ("max_train_points", lambda v: simkern.OPQ(8, 2, 4, iters=0).train(X, max_train_points=v), BIG),
    ("dim", lambda v: simkern.PQIndex(v, 1), BIG),
    ("m", lambda v: simkern.PQIndex(8, v), BIG),
    ("dim", lambda v: simkern.PQIndex(v, 1, opq=True), BIG),
    ("iters", lambda v: simkern.PQIndex(8, 2, 4).train(X, iters=v), BIG),
    ("iters", lambda v: simkern.PQIndex(8, 2, 4, opq=True).train(X, iters=v), BIG),
    ("max_train_points", lambda v: simkern.PQIndex(8, 2, 4).train(X, max_train_points=v), BIG),
    ("k", lambda v: _pq_index().search(X[:2], v), BIG),
    ("rerank", lambda v: _pq_index_kv().search(X[:2], 3, rerank=v), BIG),
    ("filter", lambda v: _pq_index().search(X[:2], 3, filter=[v]), [2**63, 2**70]),  # other ids match nothing
    ("dim", lambda v: simkern.FDE(v), BIG),
    ("num_repetitions", lambda v: simkern.FDE(8, num_repetitions=v), BIG),
    ("num_simhash_projections", lambda v: simkern.FDE(8, num_simhash_projections=v), BIG),
    ("projection_dimension", lambda v: simkern.FDE(8, projection_dimension=v), BIG),
    ("projection_dimension", lambda v: simkern.FDE(8, projection="identity", projection_dimension=v), BIG),
    ("final_projection_dimension", lambda v: simkern.FDE(8, final_projection_dimension=v), BIG),
    ("seed", lambda v: simkern.FDE(8, seed=v), [2**40, 2**63, 2**70]),  # the reference's 32-bit seed
    ("axis", lambda v: simkern.fwht(np.ones(4), axis=v), BIG),
    ("m", lambda v: simkern.sketch(A, v, kind="gaussian"), BIG),
    ("nnz_per_column", lambda v: simkern.sketch(A, 8, kind="sparse_sign", nnz_per_column=v), BIG),
    ("seed", lambda v: simkern.sketch(A, 8, seed=v), [2**70]),  # seeds are uint64: 2**31..2**63 are valid
    ("d", lambda v: simkern.sketch_rows_rule(v), BIG),
    ("m", lambda v: simkern.lstsq_sketched(A, A[:, 0].copy(), m=v), BIG),
    ("max_iter", lambda v: simkern.lstsq_sketched(A, A[:, 0].copy(), method="precondition", max_iter=v), BIG),
    ("nnz_per_column", lambda v: simkern.lstsq_sketched(A, A[:, 0].copy(), m=10, nnz_per_column=v), BIG),
    ("seed", lambda v: simkern.lstsq_sketched(A, A[:, 0].copy(), m=10, seed=v), [2**70]),
    ("k", lambda v: simkern.maxsim_topk(_q(), _q(), v), BIG),
    ("query_ids", lambda v: simkern.maxsim_pairs(_q(), _q(), [v], [0]), BIG),
    ("doc_ids", lambda v: simkern.maxsim_pairs(_q(), _q(), [0], [v]), BIG),
    ("candidates", lambda v: simkern.maxsim_topk(_q(), _q(), 1, candidates=[[v], [0]]), BIG),
    ("candidates", lambda v: simkern.maxsim_topk(_q(), _q(), 1, candidates=np.array([[0], [v]], dtype=object)
                                                 if v >= 2**63 else np.array([[0], [v]])), BIG[:2]),
    ("dim", lambda v: simkern.Ragged.from_list([], dim=v), BIG),
    ("dim", lambda v: simkern.Ragged.from_list([X[:2]], dim=v), BIG),
    ("offsets", lambda v: simkern.Ragged(X[:2], [0, v]), BIG),
    ("lengths", lambda v: simkern.Ragged.from_padded(X[:6].reshape(2, 3, 8), [1, v]), BIG),
    ("n", lambda v: simkern.set_num_threads(v), BIG),
]


def _pq_index_kv():
    index = simkern.PQIndex(8, 2, 4, keep_vectors=True).train(X, iters=1)
    index.add(X[:20])
    return index


@pytest.mark.parametrize("name, call, bad", CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("value", BIG)
def test_huge_ints_raise_value_error_naming_the_argument(name, call, bad, value):
    if value not in bad:
        pytest.skip(f"{value} is valid for {name} (seeds, filter ids) or covered by another case")
    threads = simkern.get_num_threads()
    try:
        with pytest.raises(ValueError) as info:
            call(value)
    finally:
        simkern.set_num_threads(threads)
    message = str(info.value)
    assert name in message, message
    assert "incompatible function arguments" not in message


WRONG_TYPES = [
    lambda: simkern.ProductQuantizer(8.0, 2),
    lambda: simkern.PQIndex(8, 2, 4).train(X, iters=1.5),
    lambda: simkern.OPQ(8, 2, iters="3"),
    lambda: simkern.sketch(A, 8.0),
    lambda: simkern.FDE(8, num_repetitions=2.0),
    lambda: simkern.Ragged.from_list([], dim=2.5),
]


@pytest.mark.parametrize("call", WRONG_TYPES)
def test_wrong_types_raise_type_error(call):
    with pytest.raises(TypeError) as info:
        call()
    assert "incompatible function arguments" not in str(info.value)
