"""simkern.compat.hnswlib: hnswlib's documented behaviour (and, when hnswlib is installed, the same answers)."""

from __future__ import annotations

import numpy as np
import pytest
import simkern.compat.hnswlib as hnswlib


def data(n=500, dim=16, seed=0):
    return np.random.default_rng(seed).random((n, dim)).astype(np.float32)


def typical(space, x, **init):
    # hnswlib's README example, unchanged apart from the import.
    p = hnswlib.Index(space=space, dim=x.shape[1])
    p.init_index(max_elements=len(x), ef_construction=100, M=16, **init)
    p.add_items(x, np.arange(len(x)))
    p.set_ef(100)
    return p


@pytest.mark.parametrize("space", ["l2", "ip", "cosine"])
def test_readme_example_and_distances(space):
    x = data()
    p = typical(space, x)
    labels, distances = p.knn_query(x[:20], k=5)
    assert labels.dtype == np.uint64 and distances.dtype == np.float32 and labels.shape == (20, 5)
    q, v = x[:20].astype(np.float64), x[labels.astype(np.int64)].astype(np.float64)
    if space == "l2":
        want = ((v - q[:, None]) ** 2).sum(-1)
    elif space == "ip":
        want = 1 - np.einsum("qkd,qd->qk", v, q)
    else:
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        vn = v / np.linalg.norm(v, axis=2, keepdims=True)
        want = 1 - np.einsum("qkd,qd->qk", vn, qn)
    np.testing.assert_allclose(distances, want, rtol=1e-4, atol=1e-5)
    assert (np.diff(distances, axis=1) >= -1e-6).all()  # nearest first
    if space != "ip":
        assert (labels[:, 0] == np.arange(20)).all()  # each point is its own nearest


def test_limits_updates_deletes_and_errors():
    x = data(100)
    p = typical("l2", x)
    assert p.get_current_count() == 100 and p.get_max_elements() == 100
    with pytest.raises(RuntimeError, match="exceeds the specified limit"):
        p.add_items(x[:1], [100])
    p.resize_index(101)
    p.add_items(x[:1] + 1, [100])
    p.add_items(x[5:6] + 7, [3])  # update of an existing label: count unchanged, vector replaced
    assert p.get_current_count() == 101
    np.testing.assert_array_equal(p.get_items([3])[0], x[5] + 7)
    p.mark_deleted(7)
    labels, _ = p.knn_query(x[7], k=10)
    assert 7 not in labels and p.get_deleted_count() == 1
    with pytest.raises(RuntimeError, match="Label not found"):
        p.mark_deleted(1000)
    p.unmark_deleted(7)
    assert p.knn_query(x[7], k=1)[0][0, 0] == 7
    with pytest.raises(RuntimeError, match="Label not found"):
        p.unmark_deleted(7)
    with pytest.raises(RuntimeError, match="contiguous 2D array"):
        p.knn_query(x[:1], k=200)
    with pytest.raises(RuntimeError, match="dimensionality"):
        p.add_items(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="resize"):
        p.resize_index(10)
    labels, _ = p.knn_query(x[:5], k=3, filter=lambda label: label % 2 == 0)
    assert (labels % 2 == 0).all()


def test_save_load_and_default_ids(tmp_path):
    x = data(300)
    p = hnswlib.Index("cosine", 16)
    p.init_index(400)
    p.add_items(x[:200])          # ids 0..199
    p.add_items(x[200:])          # ids continue: 200..299
    p.mark_deleted(5)
    p.save_index(str(tmp_path / "i.bin"))
    r = hnswlib.Index("cosine", 16)
    r.load_index(str(tmp_path / "i.bin"), max_elements=500)
    assert r.get_current_count() == 300 and r.get_max_elements() == 500 and r.get_deleted_count() == 1
    r.set_ef(50)
    p.set_ef(50)
    np.testing.assert_array_equal(r.knn_query(x[:10], k=4)[0], p.knn_query(x[:10], k=4)[0])
    assert sorted(r.get_ids_list()) == list(range(300))
    r.unmark_deleted(5)
    with pytest.raises(RuntimeError, match="holds a cosine index"):
        hnswlib.Index("l2", 16).load_index(str(tmp_path / "i.bin"))


def test_same_answers_as_hnswlib():
    real = pytest.importorskip("hnswlib")
    x = data(400, 12, 3)
    q = data(30, 12, 4)
    for space in ("l2", "ip", "cosine"):
        ours, theirs = hnswlib.Index(space, 12), real.Index(space, 12)
        for p in (ours, theirs):
            p.init_index(400, M=16, ef_construction=200)
            p.add_items(x)
            p.set_ef(400)  # a beam as wide as the data: both are exact
        lo, do = ours.knn_query(q, k=5)
        lt, dt = theirs.knn_query(q, k=5)
        np.testing.assert_array_equal(lo, lt)
        np.testing.assert_allclose(do, dt, rtol=1e-4, atol=1e-5)
