"""PQIndex: exact-ADC search against NumPy top-k, filters, rerank, recall, persistence and bad input."""

from __future__ import annotations

import os
import pathlib
import pickle
import struct
import sys
import threading
import time

import numpy as np
import pytest
import simkern
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import topk_ref


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
    with pytest.raises(ValueError, match=r"boolean filter mask needs exactly one entry per id .*shape \(3000,\)"):
        index.search(queries, 3, filter=np.ones(5, bool))
    with pytest.raises(ValueError, match=r"filter ids must lie in 0..2\*\*63-2"):
        index.search(queries, 3, filter=np.array([-1]))
    # an id the index does not hold matches nothing (the rule of every index, docs/API.md)
    assert (index.search(queries, 3, filter=np.array([3000, 10**12]))[1] == -1).all()
    assert (index.search(queries, 3, filter=np.array([7, 3000]))[1][:, 0] == 7).all()
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
    opq = simkern.OPQ(32, 8, iters=8).train(x, pq_final_iters=10)
    r = opq.rotation.astype(np.float64)
    np.testing.assert_allclose(r.T @ r, np.eye(32), atol=1e-5)
    pq = simkern.ProductQuantizer(32, 8).train(x, iters=10)
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


# -- concurrency, filters, value checks ----------------------------------------------------------------------------

@pytest.mark.parametrize("nbits", [8, 4])
def test_search_concurrent_with_add_sees_one_published_state(nbits):
    """2 searcher threads + 1 adder for 0.5 s per code width. Before, searches raised thousands of "blocked codes must
    have shape ..." errors and a stale blocked copy kept later searches failing or returning wrong ids. Every
    result must now equal the exact answer (float ADC top-k; rerank; filter) over the first n vectors for one n the
    index held while that search ran."""
    rng = np.random.default_rng(31)
    x = _clustered(rng, 40000, 16)
    queries = _clustered(np.random.default_rng(32), 3, 16)
    index = simkern.PQIndex(16, 4, nbits, keep_vectors=True).train(x[:4000], iters=2)
    index.add(x[:50])
    sizes, results, errors = [50], [], []
    stop = threading.Event()
    allowed = np.arange(0, 50, 3)  # ids present in every state the searchers can see

    def searcher(seed):
        r = np.random.default_rng(seed)
        while not stop.is_set():
            k, kind = int(r.integers(1, 12)), int(r.integers(0, 3))
            before = len(index)
            try:
                if kind == 0:
                    got = index.search(queries, k, threads=1)
                elif kind == 1:
                    got = index.search(queries, k, rerank=2, threads=1)
                else:
                    got = index.search(queries, k, filter=allowed, threads=1)
            except Exception as e:  # noqa: BLE001 - any exception fails the test below
                errors.append(e)
                return
            results.append((kind, k, before, len(index), got))

    def adder():
        r = np.random.default_rng(33)
        pos = 50
        while pos < len(x) and not stop.is_set():
            step = int(r.integers(1, 300))
            index.add(x[pos : pos + step], threads=1)
            pos = min(pos + step, len(x))
            sizes.append(pos)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: more interleavings per second
    try:
        threads = [threading.Thread(target=searcher, args=(s,)) for s in (1, 2)] + [threading.Thread(target=adder)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert not errors, f"{len(errors)} searches failed, first: {errors[0]!r}"
    assert len(sizes) > 3 and len(results) > 20, (len(sizes), len(results))

    n_final = len(index)
    np.testing.assert_array_equal(index.codes, index.pq.encode(x[:n_final]))  # in order, across buffer growth
    adc = index.pq.adc(queries, index.codes)  # codes never change once published: prefixes are the old states
    order = [np.lexsort((np.arange(n_final), adc[q])) for q in range(len(queries))]  # l2: ascending, then id
    in_allowed = np.zeros(n_final, bool)
    in_allowed[allowed] = True

    def expected(kind, k, n):
        out_d = np.full((len(queries), k), np.inf, np.float32)
        out_i = np.full((len(queries), k), -1, np.int64)
        for q in range(len(queries)):
            ids = order[q][order[q] < n]
            if kind == 2:
                ids = ids[in_allowed[ids]]
            ids = ids[: 2 * k if kind == 1 else k]
            scores = adc[q, ids]
            if kind == 1:  # exact re-scoring of the 2k ADC candidates, as _rerank computes it
                exact = ((x[ids] - queries[q]) ** 2).sum(axis=1, dtype=np.float32)
                pick = np.lexsort((ids, exact))[:k]
                ids, scores = ids[pick], exact[pick]
            out_d[q, : len(ids)], out_i[q, : len(ids)] = scores, ids
        return out_d, out_i

    for kind, k, before, after, (d, i) in results:
        candidates = [n for n in sizes if before <= n <= after]
        assert candidates, (before, after)
        for n in candidates:
            want_d, want_i = expected(kind, k, n)
            if np.array_equal(i, want_i) and np.array_equal(d, want_d):
                break
        else:
            raise AssertionError(f"search (kind {kind}, k {k}) during sizes {candidates} returned ids {i.tolist()}, "
                                 f"not the exact answer of any of those states")


def test_empty_filter_allows_no_id(built):
    """filter=[] raised TypeError (float64 dtype); HNSWIndex accepts it. Any empty array now means: no id allowed."""
    _, queries, indexes = built
    for index in indexes.values():
        pad = np.inf if index.metric == "l2" else -np.inf
        for empty in ([], (), np.array([], np.int64), np.array([]), np.array([], bool)):
            d, i = index.search(queries[:3], 4, filter=empty)
            assert (i == -1).all() and (d == pad).all()
    index = indexes["l2", 8]
    with pytest.raises(ValueError, match=r"boolean filter mask needs exactly one entry per id.*shape \(3000,\).*got "
                                         r"shape \(2999,\); pass an array of ids"):
        index.search(queries, 3, filter=np.ones(2999, bool))
    with pytest.raises(ValueError, match=r"filter ids must lie in 0..2\*\*63-2"):
        index.search(queries, 3, filter=[2**70])


def test_vectors_whose_distances_overflow_float32_are_refused(built):
    """Finite rows of norm > 2**62 (distances could overflow float32 to inf/NaN) raise ValueError naming x / queries."""
    _, queries, indexes = built
    index = indexes["l2", 4]
    huge = queries[:2].copy()
    huge[1] *= 3e19 / np.linalg.norm(huge[1])
    n = len(index)
    with pytest.raises(ValueError, match=r"x row 1 has norm 3e\+19, beyond the supported 2\*\*62"):
        index.add(huge)
    assert len(index) == n  # nothing added
    with pytest.raises(ValueError, match=r"queries row 1 has norm 3e\+19"):
        index.search(huge, 3)
    big_ok = queries[:2] * (1e18 / np.linalg.norm(queries[:2], axis=1, keepdims=True))  # within the limit
    assert np.isfinite(index.search(big_ok.astype(np.float32), 3)[0]).all()


def test_misaligned_views_give_the_aligned_result(aligned_core, misaligned, built):
    """float32 rows at odd byte offsets are copied before the kernels read them (train, add, search, rerank)."""
    x, queries, indexes = built
    for nbits in (8, 4):
        a = simkern.PQIndex(32, 8, nbits, keep_vectors=True).train(x[:1000], iters=2)
        b = simkern.PQIndex(32, 8, nbits, keep_vectors=True).train(misaligned(x[:1000]), iters=2)
        np.testing.assert_array_equal(a.pq.codebooks, b.pq.codebooks)
        a.add(x[:500])
        b.add(misaligned(x[:500]))
        np.testing.assert_array_equal(a.codes, b.codes)
        for rerank in (None, 3):
            for got, want in zip(b.search(misaligned(queries), 5, rerank=rerank), a.search(queries, 5, rerank=rerank)):
                np.testing.assert_array_equal(got, want)
    assert {"_pq_train", "_pq_encode", "_pq_tables", "_pq_search_quantised"} <= set(aligned_core)


DATA = pathlib.Path(__file__).parent / "data"


def test_version_1_files_still_load():
    """tests/data/pq_index_v1.bin was written by the version-1 writer (before the shared container)."""
    index = simkern.PQIndex.load(DATA / "pq_index_v1.bin")
    want = np.load(DATA / "pq_index_v1_expected.npz")
    d, i = index.search(want["queries"], 5)
    np.testing.assert_array_equal(i, want["ids"])
    np.testing.assert_array_equal(d, want["dist"])
    assert index.opq is not None and index.keep_vectors and len(index) == 40


@pytest.mark.parametrize("keep, opq", [(False, False), (True, True)])
def test_mmap_load_leaves_codes_in_the_file(tmp_path, keep, opq):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((600, 16)).astype(np.float32)
    index = simkern.PQIndex(16, 4, 8, keep_vectors=keep, opq=opq).train(x, iters=2)
    index.add(x[:500])
    path = tmp_path / "i.pqi"
    index.save(path)
    mapped = simkern.PQIndex.load(path, mmap=True)
    assert mapped.mmapped and not simkern.PQIndex.load(path).mmapped
    assert not mapped._snap.codes.flags.writeable  # a read-only view of the mapping, not a copy
    for a, b in zip(mapped.search(x[:7], 6, rerank=2 if keep else None),
                    index.search(x[:7], 6, rerank=2 if keep else None)):
        np.testing.assert_array_equal(a, b)
    assert mapped.add(x[500:]).tolist() == list(range(500, 600))  # add copies out of the mapping
    index.add(x[500:])
    np.testing.assert_array_equal(mapped.search(x[550:553], 4)[1], index.search(x[550:553], 4)[1])
    again = simkern.PQIndex.load(path, mmap=True)
    with open(path, "r+b") as f:  # the file changes under the mapping: searches refuse it
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(ValueError, match="changed"):
        again.search(x[:2], 3)


def test_container_rejects_every_corrupted_region(tmp_path):
    import importlib

    container = importlib.import_module("simkern._container")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    index = simkern.PQIndex(8, 2, 8, keep_vectors=True).train(x, iters=1)
    index.add(x[:37])  # odd sizes: every section ends in padding
    path = tmp_path / "i.pqi"
    index.save(path)
    raw = path.read_bytes()
    with container.Reader(path, "PQIndex", (2,)) as r:
        regions = {"reserved header bytes": 50, "meta padding": 64 + len(json_meta(raw)) + 1}
        for name, (offset, dtype, shape, _) in r.sections.items():
            nbytes = int(np.prod(shape)) * dtype.itemsize
            regions[f"{name} head"] = offset - 10
            regions[f"{name} data"] = offset + nbytes // 2
            if nbytes % 64:
                regions[f"{name} padding"] = offset + nbytes + 1
    regions["trailer"] = len(raw) - 3
    for what, pos in regions.items():
        bad = bytearray(raw)
        bad[pos] ^= 0x5A
        path.write_bytes(bytes(bad))
        with pytest.raises(ValueError):
            simkern.PQIndex.load(path)
        if what.endswith("data") and "codebooks" not in what:
            continue  # mapped loads do not read large sections (documented); the small ones are verified
        with pytest.raises(ValueError):
            simkern.PQIndex.load(path, mmap=True)
    path.write_bytes(raw + b"\0")
    with pytest.raises(ValueError, match="trailer"):
        simkern.PQIndex.load(path)
    hnsw = tmp_path / "h.skh"
    simkern.HNSWIndex(8).save(hnsw)
    with pytest.raises(ValueError, match="not a simkern PQIndex file"):
        simkern.PQIndex.load(hnsw)


def json_meta(raw: bytes) -> bytes:
    """The JSON meta of a container file (its length is at bytes 32..40 of the header)."""
    (length,) = struct.unpack_from("<Q", raw, 32)
    return raw[64:64 + length]


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("nbits", [4, 8])
def test_adds_extend_the_blocked_codes_without_changing_results(nbits, metric):
    """Searches between adds of every size around the block edges (32 / 64 codes) give exactly the float ADC
    scan's results over all codes: the blocked copy is extended, not rebuilt, and the partial last block is
    scanned apart and merged. The blocks handed out before stay as they were."""
    from simkern import _core

    rng = np.random.default_rng(nbits)
    x = rng.standard_normal((1200, 16)).astype(np.float32)
    index = simkern.PQIndex(16, 4, nbits=nbits, metric=metric).train(x, iters=2)
    q = rng.standard_normal((7, 16)).astype(np.float32)
    first_blocks = None
    done = 0
    for size in [1, 30, 1, 32, 1, 63, 64, 65, 127, 200, 5, 320]:
        index.add(x[done:done + size])
        done += size
        for k, flt in ((5, None), (40, rng.random(done) < 0.3)):
            got = index.search(q, k=k, filter=flt)
            snap = index._snap
            tables = index.pq._tables_checked(q, 1)
            want = _core._pq_search(tables, snap.codes, None if flt is None else flt.astype(np.uint8), k,
                                    metric == "l2", 1)
            np.testing.assert_array_equal(got[1], want[1])
            np.testing.assert_array_equal(got[0], want[0])
        state = snap.blocked._state[0]
        if first_blocks is None and state is not None:
            first_blocks = (state, state[:1].copy())
    assert first_blocks is not None
    np.testing.assert_array_equal(first_blocks[0][:1], first_blocks[1])  # the first block handed out is unchanged
    rows = 32 if nbits == 4 else 64
    assert index._snap.blocked._state[1] == done // rows  # every full block blocked once, the tail not
