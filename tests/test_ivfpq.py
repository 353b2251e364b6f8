"""IVFPQIndex: exact float-ADC search against a NumPy reference of the score formula, nprobe = nlist against
PQIndex, coarse assignment and tables against float64, training bit-identical across ISAs and threads, filters,
remove / re-add, persistence, pickle and bad input."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import simkern
from hypothesis import given, settings
from hypothesis import strategies as st
from levels import KERNEL_LEVELS, kernel_level
from simkern import _core


def _clustered(rng, n, dim, n_centres=20, spread=0.5):
    centres = rng.standard_normal((n_centres, dim)) * 2
    return (centres[rng.integers(0, n_centres, n)] + spread * rng.standard_normal((n, dim))).astype(np.float32)


def _build(x, nlist=8, m=4, nbits=8, metric="l2", by_residual=True, **kw):
    idx = simkern.IVFPQIndex(x.shape[1], nlist, m, nbits, metric, by_residual=by_residual, **kw)
    idx.train(x, iters=5)
    idx.add(x)
    return idx


def _reference(idx, queries, k, nprobe, allowed=None):
    """The score formula of ivfpq.hpp in float32, with the index's own probes and bases (checked separately),
    over every vector of the probed cells; top-k by (score, id)."""
    rotated = queries if idx.opq is None else queries @ idx.opq.rotation
    rotated = np.ascontiguousarray(rotated, dtype=np.float32)
    l2 = idx.metric == "l2"
    probes, bases = _core._ivf_coarse(rotated, idx._centroids_blk, idx._half_norms, l2, nprobe, 1)
    # the query tables of the PQ kernels (checked against float64 in test_pq.py)
    if idx.by_residual or not l2:
        tables = _core._pq_tables(rotated, idx.pq._ct, 1, 1)
        if idx.by_residual and l2:
            tables = tables * np.float32(-2.0)
    else:
        tables = _core._pq_tables(rotated, idx.pq._ct, 0, 1)
    out_s = np.full((len(queries), k), np.inf if l2 else -np.inf, np.float32)
    out_i = np.full((len(queries), k), -1, np.int64)
    for qi in range(len(queries)):
        scores, ids = [], []
        for p, c in enumerate(probes[qi]):
            codes, cell_ids = idx._lists.cell_codes(int(c)), idx._lists.cell_ids(int(c))
            acc = np.full(len(codes), bases[qi, p] if idx.by_residual else 0.0, np.float32)
            for s in range(idx.m):
                v = tables[qi, s, codes[:, s]]
                if idx._cell_tables is not None:
                    v = idx._cell_tables[c, s, codes[:, s]] + v
                acc = acc + v
            scores.append(acc)
            ids.append(cell_ids)
        s_all, i_all = np.concatenate(scores), np.concatenate(ids)
        if allowed is not None:
            keep = np.isin(i_all, allowed)
            s_all, i_all = s_all[keep], i_all[keep]
        order = np.lexsort((i_all, s_all if l2 else -s_all))[:k]
        out_s[qi, :len(order)] = s_all[order]
        out_i[qi, :len(order)] = i_all[order]
    return out_s, out_i


CONFIGS = [(nbits, metric, res) for nbits in (8, 4) for metric in ("l2", "ip") for res in (True, False)]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return _clustered(rng, 1500, 32), _clustered(np.random.default_rng(1), 12, 32)


@pytest.mark.parametrize("nbits,metric,by_residual", CONFIGS)
def test_search_equals_reference(isa, data, nbits, metric, by_residual):
    x, q = data
    idx = _build(x, 16, 8, nbits, metric, by_residual)
    for nprobe in (1, 3, 16):
        for k in (1, 10, 100):
            got = idx.search(q, k, nprobe=nprobe)
            want = _reference(idx, q, k, nprobe)
            np.testing.assert_array_equal(got[1], want[1])
            np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("nbits,metric", [(8, "l2"), (8, "ip"), (4, "l2"), (4, "ip")])
def test_full_probe_without_residual_equals_pqindex(data, nbits, metric):
    x, q = data
    idx = _build(x, 8, 8, nbits, metric, by_residual=False)
    flat = simkern.PQIndex(32, 8, nbits, metric)
    flat.pq._set_codebooks(idx.pq.codebooks.copy())
    flat.add(x)
    for k in (1, 10, 50):
        got = idx.search(q, k, nprobe=8)
        want = flat.search(q, k)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])


def test_coarse_equals_numpy(data):
    x, q = data
    for metric in ("l2", "ip"):
        idx = _build(x, 16, 8, 8, metric)
        cen = idx.centroids.astype(np.float64)
        q64 = q.astype(np.float64)
        d = ((q64[:, None] - cen[None]) ** 2).sum(-1) if metric == "l2" else -(q64 @ cen.T)
        probes, bases = _core._ivf_coarse(q, idx._centroids_blk, idx._half_norms, metric == "l2", 5, 1)
        want = np.argsort(d, axis=1, kind="stable")[:, :5]
        np.testing.assert_array_equal(probes, want)
        true_base = np.take_along_axis(d if metric == "l2" else -d, want, 1)
        # |q|^2 + |c|^2 - 2 <q, c> (L2) with a float32 dot product: cancellation bounded by the magnitudes
        scale = ((q64**2).sum(1)[:, None] + (cen[want] ** 2).sum(-1)) if metric == "l2" else 1.0
        assert (np.abs(bases - true_base) <= 1e-5 * scale + 1e-6).all()
        # assignment: the nearest cell of every vector
        cells = _core._ivf_assign(x, idx._centroids_blk, idx._half_norms, metric == "l2", 1)
        x64 = x.astype(np.float64)
        dx = ((x64[:, None] - cen[None]) ** 2).sum(-1) if metric == "l2" else -(x64 @ cen.T)
        best = dx[np.arange(len(x)), cells]
        assert (best <= dx.min(axis=1) + 1e-4 * (1 + np.abs(dx.min(axis=1)))).all()
        assert (cells == dx.argmin(axis=1)).mean() > 0.999


def test_residual_tables_equal_reference(data):
    x, _ = data
    idx = _build(x, 8, 4, 8, "l2")
    cb = idx.pq.codebooks.astype(np.float64)
    cen = idx.centroids.astype(np.float64).reshape(8, 4, 8)
    want = (cb**2).sum(-1)[None] + 2 * np.einsum("csd,sjd->csj", cen, cb)
    np.testing.assert_allclose(idx._cell_tables, want, rtol=1e-6, atol=1e-5)
    # |q - c - r|^2 = |q - c|^2 + T2 + T3 for one decoded vector
    codes = idx._lists.cell_codes(3)
    if len(codes):
        r = cb[np.arange(4), codes[0]].reshape(-1)
        y = cen[3].reshape(-1) + r
        qv = x[0].astype(np.float64)
        direct = ((qv - y) ** 2).sum()
        split = ((qv - cen[3].reshape(-1)) ** 2).sum() + want[3, np.arange(4), codes[0]].sum() - 2 * qv @ r
        assert abs(direct - split) <= 1e-9 * (1 + direct)


def test_recall_is_reasonable():
    rng = np.random.default_rng(5)
    x = _clustered(rng, 4000, 32, n_centres=40, spread=0.3)
    q = _clustered(np.random.default_rng(6), 50, 32, n_centres=40, spread=0.3)
    idx = _build(x, 32, 16, 8, "l2", keep_vectors=True)
    gt = np.argsort(((q[:, None] - x[None]) ** 2).sum(-1), axis=1)[:, :10]
    _, ids = idx.search(q, 10, nprobe=8, rerank=4)
    recall = np.mean([len(set(ids[i]) & set(gt[i])) / 10 for i in range(len(q))])
    assert recall >= 0.9  # fixed seeds: 1.0 measured
    _, ids1 = idx.search(q, 10, nprobe=1)
    recall1 = np.mean([len(set(ids1[i]) & set(gt[i])) / 10 for i in range(len(q))])
    assert recall1 < recall or recall == 1.0


def test_training_identical_across_isas_and_threads(data):
    x, _ = data
    ref = None
    for level in KERNEL_LEVELS:
        with kernel_level(level):
            for threads in (1, 2, 3):
                idx = simkern.IVFPQIndex(32, 16, 8, 8).train(x, iters=4, threads=threads)
                idx.add(x, threads=threads)
                got = (idx.centroids.tobytes(), idx.pq.codebooks.tobytes(), idx._lists.export()[1].tobytes())
                if ref is None:
                    ref = got
                assert got == ref, (level, threads)


def test_search_identical_across_threads(data):
    x, q = data
    idx = _build(x, 16, 8, 4, "l2")
    want = idx.search(q, 20, nprobe=6, threads=1)
    for threads in (2, 3, 8):
        for sub in (q, q[:1]):
            got = idx.search(sub, 20, nprobe=6, threads=threads)
            np.testing.assert_array_equal(got[1], want[1][: len(sub)])
            np.testing.assert_array_equal(got[0], want[0][: len(sub)])


@settings(max_examples=25)
@given(n=st.sampled_from([1, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200]), nlist=st.integers(1, 5),
       m=st.sampled_from([1, 2, 3, 5, 8]), nbits=st.sampled_from([4, 8]), metric=st.sampled_from(["l2", "ip"]),
       by_residual=st.booleans(), k=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_hypothesis_cells_around_blocks(n, nlist, m, nbits, metric, by_residual, k, seed):
    rng = np.random.default_rng(seed)
    dim = 2 * m
    train = rng.standard_normal((max(n, 16 if nbits == 4 else 256, nlist), dim)).astype(np.float32)
    idx = simkern.IVFPQIndex(dim, nlist, m, nbits, metric, by_residual=by_residual).train(train, iters=2)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    idx.add(x)
    q = rng.standard_normal((3, dim)).astype(np.float32)
    nprobe = int(rng.integers(1, nlist + 1))
    got = idx.search(q, k, nprobe=nprobe)
    want = _reference(idx, q, k, nprobe)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


def test_filters(data):
    x, q = data
    idx = _build(x, 16, 8, 8, "l2")
    rng = np.random.default_rng(2)
    allowed = np.sort(rng.choice(len(x), 300, replace=False))
    mask = np.zeros(idx.id_bound, bool)
    mask[allowed] = True
    want = _reference(idx, q, 10, 5, allowed)
    for f in (mask, allowed, allowed[::-1].copy(), list(allowed)):
        got = idx.search(q, 10, nprobe=5, filter=f)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    s, i = idx.search(q, 5, nprobe=5, filter=[])
    assert (i == -1).all() and np.isinf(s).all()
    with pytest.raises(ValueError, match="filter"):
        idx.search(q, 5, filter=np.ones(3, bool))


def test_remove_and_readd(data):
    x, q = data
    idx = _build(x, 16, 8, 8, "l2")
    gone = np.arange(0, len(x), 3)
    idx.remove(gone)
    assert len(idx) == len(x) - len(gone)
    assert 0 not in idx and 1 in idx
    keep = np.setdiff1d(np.arange(len(x)), gone)
    want = _reference(idx, q, 10, 16)
    got = idx.search(q, 10, nprobe=16)
    np.testing.assert_array_equal(got[1], want[1])
    assert not np.isin(got[1], gone).any()
    with pytest.raises(ValueError, match="not in the index"):
        idx.remove([0])
    with pytest.raises(ValueError, match="already in the index"):
        idx.add(x[:2], ids=[1, 2000])
    idx.add(x[gone], ids=gone)
    assert len(idx) == len(x)
    assert sorted(idx.ids().tolist()) == list(range(len(x)))
    got2 = idx.search(q, 10, nprobe=16)
    np.testing.assert_array_equal(got2[1], _reference(idx, q, 10, 16)[1])
    assert set(keep) <= set(idx.ids().tolist())


def test_rerank_exact(data):
    x, q = data
    idx = _build(x, 16, 8, 8, "l2", keep_vectors=True)
    s, i = idx.search(q, 5, nprobe=16, rerank=50)
    for qi in range(len(q)):
        exact = ((x[i[qi]].astype(np.float64) - q[qi]) ** 2).sum(1).astype(np.float32)
        np.testing.assert_array_equal(s[qi], exact)
        assert (np.diff(s[qi]) >= 0).all()


@pytest.mark.parametrize("opq,keep", [(False, False), (True, True)])
def test_save_load_mmap_pickle(tmp_path, data, opq, keep):
    x, q = data
    idx = _build(x, 16, 8, 4, "l2", opq=opq, keep_vectors=keep)
    idx.nprobe = 4
    idx.remove([5, 6, 7])
    want = idx.search(q, 10, rerank=2 if keep else None)
    path = tmp_path / "ivf.simk"
    idx.save(path)
    for loaded in (simkern.IVFPQIndex.load(path), simkern.IVFPQIndex.load(path, mmap=True),
                   pickle.loads(pickle.dumps(idx, protocol=5)), pickle.loads(pickle.dumps(idx, protocol=1)),
                   copy.deepcopy(idx)):
        assert loaded.nprobe == 4 and len(loaded) == len(idx) and loaded.id_bound == idx.id_bound
        got = loaded.search(q, 10, rerank=2 if keep else None)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
        # the loaded index keeps working: add and remove touch (and copy) the borrowed cells
        loaded.add(x[:3])
        loaded.remove([0])
        assert len(loaded) == len(idx) + 2
    mapped = simkern.IVFPQIndex.load(path, mmap=True)
    assert mapped.mmapped
    with open(path, "r+b") as f:  # change the file under the mapping
        f.seek(-200, 2)
        f.write(b"\xff" * 8)
    with pytest.raises(ValueError):
        mapped.search(q, 3)


def test_corrupt_and_truncated_files(tmp_path, data):
    x, _ = data
    idx = _build(x, 8, 4, 8, "l2")
    path = tmp_path / "a.simk"
    idx.save(path)
    raw = path.read_bytes()
    (tmp_path / "t.simk").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError):
        simkern.IVFPQIndex.load(tmp_path / "t.simk")
    for pos in (70, len(raw) // 3, len(raw) - 100):
        bad = bytearray(raw)
        bad[pos] ^= 0x40
        (tmp_path / "c.simk").write_bytes(bytes(bad))
        with pytest.raises(ValueError):
            simkern.IVFPQIndex.load(tmp_path / "c.simk")
    hnsw_path = tmp_path / "h.simk"
    h = simkern.HNSWIndex(4)
    h.add(np.ones((2, 4), np.float32))
    h.save(hnsw_path)
    with pytest.raises(ValueError):
        simkern.IVFPQIndex.load(hnsw_path)
    # a failed save leaves the previous file intact
    untrained = simkern.IVFPQIndex(32, 8, 4)
    with pytest.raises(ValueError, match="not trained"):
        untrained.save(path)
    assert path.read_bytes() == raw


def test_bad_inputs(data):
    x, q = data
    idx = simkern.IVFPQIndex(32, 8, 4)
    with pytest.raises(ValueError, match="not trained"):
        idx.search(q, 1)
    with pytest.raises(ValueError, match="not trained"):
        idx.add(x)
    with pytest.raises(ValueError, match="at least"):
        idx.train(x[:5])
    with pytest.raises(ValueError, match="multiple of m"):
        simkern.IVFPQIndex(30, 8, 4)
    with pytest.raises(ValueError, match="nbits"):
        simkern.IVFPQIndex(32, 8, 4, nbits=6)
    with pytest.raises(ValueError, match="metric"):
        simkern.IVFPQIndex(32, 8, 4, metric="cos")
    with pytest.raises(ValueError, match="nlist"):
        simkern.IVFPQIndex(32, 0, 4)
    idx.train(x, iters=2)
    idx.add(x)
    for nprobe in (0, 9, -1):
        with pytest.raises(ValueError, match="nprobe"):
            idx.search(q, 1, nprobe=nprobe)
    with pytest.raises(ValueError, match="nprobe"):
        idx.nprobe = 0
    with pytest.raises(ValueError, match="k"):
        idx.search(q, 0)
    with pytest.raises(ValueError, match="queries"):
        idx.search(q[:, :16], 1)
    with pytest.raises(TypeError):
        idx.search(q.astype(np.int32), 1)
    bad = q.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="queries"):
        idx.search(bad, 1)
    with pytest.raises(ValueError, match="x"):
        idx.add(np.full((1, 32), np.inf, np.float32))
    with pytest.raises(ValueError, match="rerank"):
        idx.search(q, 1, rerank=2)
    with pytest.raises(ValueError, match="train"):
        idx.train(x)
    with pytest.raises(ValueError, match="duplicates"):
        idx.add(x[:2], ids=[5000, 5000])
    with pytest.raises(ValueError, match="ids"):
        idx.add(x[:2], ids=[-3, 5001])
    s, i = idx.search(q, 5000, nprobe=8)  # k larger than the data: padded
    assert (i[:, len(x):] == -1).all() and np.isinf(s[:, len(x):]).all()


def test_statistics(data):
    x, _ = data
    idx = _build(x, 16, 8, 8, "l2")
    sizes = idx.list_sizes()
    assert sizes.sum() == len(x) and sizes.shape == (16,)
    assert idx.imbalance_factor >= 1.0
    assert idx.memory_bytes >= len(x) * (8 + 8)
    assert "IVFPQIndex" in repr(idx)


def test_search_during_add(data):
    import threading

    x, q = data
    idx = _build(x[:500], 8, 8, 8, "l2")
    errors = []

    def searcher():
        try:
            for _ in range(30):
                _, ids = idx.search(q, 10, nprobe=8)
                assert ((ids >= -1) & (ids < len(x) + 5000)).all()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=searcher)
    t.start()
    for start in range(500, len(x), 100):
        idx.add(x[start:start + 100])
    t.join()
    assert not errors
    assert len(idx) == len(x)
