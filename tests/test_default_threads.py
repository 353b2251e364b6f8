"""threads=None means every pool thread (get_num_threads()) for every batch call of every family.

Timing-free: the pool records, per calling thread, the widest thread count parallel_for was asked for after
resolution (_core._parallel_widest_request). The default is set to 3 here, a count that matches no core count of a
2-core machine by accident, so a call that forgot to resolve None (it used to run HNSW on one thread) shows up as 1.
"""

from __future__ import annotations

import numpy as np
import pytest
import simkern
from simkern import _core

WIDTH = 3


@pytest.fixture()
def three_threads():
    before = simkern.get_num_threads()
    simkern.set_num_threads(WIDTH)
    try:
        yield
    finally:
        simkern.set_num_threads(before)


def _rows(n, dim, seed):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _tokens(n_sets, dim, seed):
    rng = np.random.default_rng(seed)
    return simkern.Ragged.from_list([rng.standard_normal((int(t), dim)).astype(np.float32)
                                     for t in rng.integers(3, 12, n_sets)])


def _widest(call):
    _core._parallel_widest_request(True)
    call()
    return _core._parallel_widest_request(True)


def _calls():
    x, q = _rows(600, 16, 1), _rows(40, 16, 2)
    qs, ds = _tokens(40, 16, 3), _tokens(300, 16, 4)
    pq = simkern.ProductQuantizer(16, 4, nbits=8).train(x, iters=2)
    codes = pq.encode(x)
    index = simkern.PQIndex(16, 4).train(x, iters=2)
    index.add(x)
    hnsw = simkern.HNSWIndex(16)
    hnsw.add(x)
    ivf = simkern.IVFPQIndex(16, 8, 4).train(x, iters=2)
    ivf.add(x)
    fde = simkern.FDE(16, num_repetitions=4, num_simhash_projections=3, seed=0)
    mvi = simkern.MultiVectorIndex(16, fde=simkern.FDE(16, num_repetitions=2, num_simhash_projections=2, seed=0))
    mvi.add(ds)
    a = _rows(4096, 8, 5).astype(np.float64)
    b = a @ np.ones(8) + 0.01
    return {
        "maxsim": lambda: simkern.maxsim(qs, ds),
        "maxsim_topk": lambda: simkern.maxsim_topk(qs, ds, 5),
        "maxsim_pairs": lambda: simkern.maxsim_pairs(qs, ds, np.zeros(50, np.int64), np.arange(50)),
        "pq.train": lambda: simkern.ProductQuantizer(16, 4, nbits=8).train(x, iters=2),
        "pq.encode": lambda: pq.encode(x),
        "pq.distance_tables": lambda: pq.distance_tables(q),
        "pq.adc": lambda: pq.adc(q, codes),
        "pq_index.search": lambda: index.search(q, 5),
        "ivfpq.train": lambda: simkern.IVFPQIndex(16, 8, 4).train(x, iters=2),
        "ivfpq.add": lambda: ivf.add(x[:50]),
        "ivfpq.search": lambda: ivf.search(q, 5, nprobe=3),
        "hnsw.add": lambda: simkern.HNSWIndex(16).add(x),
        "hnsw.search": lambda: hnsw.search(q, 5),
        "fde.encode_documents": lambda: fde.encode_documents(ds),
        "fde.encode_queries": lambda: fde.encode_queries(qs),
        "multivector.add": lambda: simkern.MultiVectorIndex(
            16, fde=simkern.FDE(16, num_repetitions=2, num_simhash_projections=2, seed=0)).add(ds),
        "multivector.search": lambda: mvi.search(qs, 5),
        "fwht": lambda: simkern.fwht(_rows(1024, 64, 6)),
        "sketch": lambda: simkern.sketch(a, 64),
        "lstsq_sketched": lambda: simkern.lstsq_sketched(a, b),
    }


def test_threads_none_uses_every_pool_thread_in_every_family(three_threads):
    widths = {name: _widest(call) for name, call in _calls().items()}
    assert widths == {name: WIDTH for name in widths}


def test_explicit_threads_are_passed_through(three_threads):
    x = _rows(300, 16, 7)
    assert _widest(lambda: simkern.HNSWIndex(16).add(x, threads=1)) == 1
    assert _widest(lambda: simkern.maxsim(_tokens(5, 16, 8), _tokens(50, 16, 9), threads=2)) == 2
