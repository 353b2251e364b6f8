"""PQIndex: exact-ADC search against NumPy top-k, filters, rerank, recall, persistence and bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import topk_ref

import simkern


def _clustered(rng, n, dim, n_centres=50, spread=0.3):
    centres = rng.standard_normal((n_centres, dim)) * 2
    return (centres[rng.integers(0, n_centres, n)] + spread * rng.standard_normal((n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def built():
    rng = np.random.default_rng(0)
    x = _clustered(rng, 3000, 32)
    indexes = {}
    for metric in ("l2", "ip"):
        for nbits in (8, 4):
            idx = simkern.PQIndex(32, 8, nbits, metric, keep_vectors=True).train(x, iters=10)
            idx.add(x)
            indexes[metric, nbits] = idx
    queries = _clustered(np.random.default_rng(1), 20, 32)
    return x, queries, indexes


def _expected(index, queries, k, allowed=None):
    """NumPy top-k of the float ADC scores (ties: smaller id first), as search promises."""
    adc = index.pq.adc(queries, index.codes)
    smaller = index.metric == "l2"
    s, i = topk_ref(-adc if smaller else adc, k, allowed)
    return (-s if smaller else s), i


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("nbits", [8, 4])
def test_search_equals_numpy_topk_of_float_adc(isa, built, metric, nbits):
    _, queries, indexes = built
    index = indexes[metric, nbits]
    for k in (1, 10, 3001):
        for threads in (1, 3):
            d, i = index.search(queries, k, threads=threads)
            want_d, want_i = _expected(index, queries, k)
            np.testing.assert_array_equal(i, want_i)
            np.testing.assert_array_equal(d, want_d.astype(np.float32))
    assert np.isposinf(d[:, 3000]).all() if metric == "l2" else np.isneginf(d[:, 3000]).all()


def test_recall_against_brute_force(built):
    x, queries, indexes = built
    exact = ((queries[:, None, :] - x[None]) ** 2).sum(axis=2)
    gt = np.argsort(exact, axis=1, kind="stable")[:, :10]
    # Measured on this seed: 8-bit 0.53 (rerank x10: 0.995), 4-bit 0.095 (rerank x30: 0.86); random ids: 0.003.
    for nbits, threshold, rerank, rerank_threshold in ((8, 0.4, 10, 0.9), (4, 0.05, 30, 0.7)):
        _, ids = indexes["l2", nbits].search(queries, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt)])
        assert recall >= threshold, (nbits, recall)
        _, ids = indexes["l2", nbits].search(queries, 10, rerank=rerank)
        reranked = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt)])
        assert reranked >= rerank_threshold, (nbits, reranked)


@given(data=st.data())
@settings(max_examples=25)
def test_filters(built, data):
    _, queries, indexes = built
    index = indexes["l2", 8]
    n = len(index)
    kind = data.draw(st.sampled_from(["tiny", "large", "none"]))
    size = {"tiny": data.draw(st.integers(0, 5)), "large": data.draw(st.integers(n // 2, n)), "none": 0}[kind]
    allowed = np.sort(np.random.default_rng(data.draw(st.integers(0, 1000))).choice(n, size, replace=False))
    k = data.draw(st.integers(1, 12))
    want_d, want_i = _expected(index, queries[:4], k, [allowed] * 4)
    d, i = index.search(queries[:4], k, filter=allowed)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(d, want_d.astype(np.float32))
    mask = np.zeros(n, bool)
    mask[allowed] = True
    np.testing.assert_array_equal(index.search(queries[:4], k, filter=mask)[1], want_i)


def test_rerank_returns_exact_distances(built):
    x, queries, indexes = built
    index = indexes["ip", 8]
    d, i = index.search(queries, 5, rerank=3)
    cand = index.search(queries, 15)[1]
    for q in range(len(queries)):
        exact = x[cand[q]] @ queries[q]
        order = np.lexsort((cand[q], -exact))[:5]
        np.testing.assert_array_equal(i[q], cand[q][order])
        np.testing.assert_allclose(d[q], exact[order], rtol=1e-6)


def test_save_load_and_pickle_round_trip(built, tmp_path):
    _, queries, indexes = built
    for (metric, nbits), index in indexes.items():
        path = tmp_path / f"{metric}{nbits}.pqi"
        index.save(path)
        loaded = simkern.PQIndex.load(path)
        assert repr(loaded) == repr(index)
        np.testing.assert_array_equal(loaded.codes, index.codes)
        np.testing.assert_array_equal(loaded.pq.codebooks, index.pq.codebooks)
        np.testing.assert_array_equal(loaded.search(queries, 7, rerank=2)[1], index.search(queries, 7, rerank=2)[1])
        clone = pickle.loads(pickle.dumps(index))
        np.testing.assert_array_equal(clone.search(queries, 7)[1], index.search(queries, 7)[1])


@given(data=st.data())
@settings(max_examples=40)
def test_corrupted_or_truncated_files_raise_value_error(tmp_path_factory, data):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    index = simkern.PQIndex(16, 4, 4).train(x, iters=2)
    index.add(x[:50])
    path = tmp_path_factory.mktemp("pqi") / "i.pqi"
    index.save(path)
    raw = bytearray(path.read_bytes())
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= data.draw(st.integers(1, 255))
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        simkern.PQIndex.load(path)


def test_foreign_file(tmp_path):
    path = tmp_path / "foreign.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match="not a simkern PQIndex file"):
        simkern.PQIndex.load(path)


def test_bad_input(built):
    _, queries, indexes = built
    index = indexes["l2", 8]
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(queries, 0)
    with pytest.raises(ValueError, match=r"queries must have shape \(n, 32\)"):
        index.search(queries[:, :16].copy(), 3)
    with pytest.raises(ValueError, match="filter mask must have shape"):
        index.search(queries, 3, filter=np.ones(5, bool))
    with pytest.raises(ValueError, match="filter ids must lie in 0..2999"):
        index.search(queries, 3, filter=np.array([3000]))
    with pytest.raises(TypeError, match="filter must be"):
        index.search(queries, 3, filter=np.array([0.5]))
    fresh = simkern.PQIndex(32, 8)
    with pytest.raises(ValueError, match="not trained"):
        fresh.add(queries)
    with pytest.raises(ValueError, match="not trained"):
        fresh.search(queries, 3)
    no_vectors = simkern.PQIndex(32, 8).train(np.repeat(queries, 20, axis=0), iters=1)
    with pytest.raises(ValueError, match="keep_vectors=True"):
        no_vectors.search(queries, 3, rerank=2)
    with pytest.raises(ValueError, match="before add"):
        index.train(queries)


# -- OPQ -----------------------------------------------------------------------------------------------------------

def _correlated(rng, n, dim):
    """Gaussian data with a decaying spectrum in a random basis: plain PQ splits the energy badly."""
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    scales = 2.0 * np.exp(-np.arange(dim) / 6.0)
    return ((rng.standard_normal((n, dim)) * scales) @ basis.T).astype(np.float32)


def test_opq_rotation_is_orthogonal_and_lowers_error():
    rng = np.random.default_rng(11)
    x = _correlated(rng, 3000, 32)
    opq = simkern.OPQ(32, 8, iters=8).fit(x, pq_final_iters=10)
    r = opq.rotation.astype(np.float64)
    np.testing.assert_allclose(r.T @ r, np.eye(32), atol=1e-5)
    pq = simkern.ProductQuantizer(32, 8).fit(x, iters=10)
    mse_pq = float(((pq.decode(pq.encode(x)) - x) ** 2).sum(axis=1).mean())
    mse_opq = float(((opq.decode(opq.encode(x)) - x) ** 2).sum(axis=1).mean())
    assert mse_opq < 0.9 * mse_pq, (mse_opq, mse_pq)
    # Rotation preserves distances: tables on rotated queries equal the ADC of the rotated problem.
    np.testing.assert_allclose(opq.adc(x[:3], opq.encode(x[:50])),
                               ((x[:3, None, :] - opq.decode(opq.encode(x[:50]))[None]) ** 2).sum(axis=2),
                               rtol=1e-4, atol=1e-4)


def test_pq_index_with_opq_search_save_load(tmp_path):
    rng = np.random.default_rng(12)
    x = _correlated(rng, 3000, 32)
    queries = _correlated(np.random.default_rng(13), 10, 32)
    plain = simkern.PQIndex(32, 8).train(x, iters=10)
    plain.add(x)
    rotated = simkern.PQIndex(32, 8, opq=True, keep_vectors=True).train(x, iters=10)
    rotated.add(x)
    exact = ((queries[:, None, :] - x[None]) ** 2).sum(axis=2)
    gt = np.argsort(exact, axis=1, kind="stable")[:, :10]

    def recall(ids):
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt)])

    assert recall(rotated.search(queries, 10)[1]) >= recall(plain.search(queries, 10)[1]) - 0.05
    path = tmp_path / "opq.pqi"
    rotated.save(path)
    loaded = simkern.PQIndex.load(path)
    assert "opq=True" in repr(loaded)
    np.testing.assert_array_equal(loaded.opq.rotation, rotated.opq.rotation)
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], rotated.search(queries, 10)[1])
    clone = pickle.loads(pickle.dumps(rotated))
    np.testing.assert_array_equal(clone.search(queries, 10, rerank=3)[1], rotated.search(queries, 10, rerank=3)[1])


@given(n_blocks=st.integers(0, 5), n_pairs=st.integers(1, 20), nq=st.integers(1, 4),
       threshold=st.sampled_from([0, 100, 1000, 3000, 65535]), seed=st.integers(0, 2**32 - 1))
def test_scan4_kernel_matches_numpy(isa, n_blocks, n_pairs, nq, threshold, seed):
    from simkern import _core

    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (n_blocks, n_pairs, 32), dtype=np.uint8)
    luts = rng.integers(0, 128, (nq, 2 * n_pairs, 16), dtype=np.uint8)  # the scan4 contract: entries <= 127
    lo, hi = blocks & 15, blocks >> 4                                    # (n_blocks, n_pairs, 32)
    pairs = np.arange(n_pairs)[None, :, None]
    want = np.stack([(lut[2 * pairs, lo].astype(np.int64) + lut[2 * pairs + 1, hi]).sum(axis=1).reshape(-1)
                     for lut in luts])                                   # (nq, n_blocks * 32)
    sums, reported = _core._pq_scan4(blocks, luts, threshold)
    np.testing.assert_array_equal(reported, want <= threshold)          # exactly the ids at or under the threshold
    np.testing.assert_array_equal(sums[reported], want[reported].astype(np.uint16))


@given(n_blocks=st.integers(0, 3), m=st.integers(1, 64), nq=st.integers(1, 4),
       threshold=st.sampled_from([0, 1000, 4000, 65535]), seed=st.integers(0, 2**32 - 1))
def test_scan8_kernel_matches_numpy(isa, n_blocks, m, nq, threshold, seed):
    from simkern import _core

    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (n_blocks, m, 64), dtype=np.uint8)
    luts = rng.integers(0, 256, (nq, m, 256), dtype=np.uint8)
    codes = blocks.transpose(0, 2, 1).reshape(-1, m)                     # (n_blocks * 64, m), vector order
    want = np.stack([lut[np.arange(m)[None, :], codes].astype(np.int64).sum(axis=1) for lut in luts])
    sums, reported = _core._pq_scan8(blocks, luts, threshold)
    np.testing.assert_array_equal(reported, want <= threshold)
    np.testing.assert_array_equal(sums[reported], want[reported].astype(np.uint16))
