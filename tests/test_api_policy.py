"""The argument policy of docs/API.md, checked across every family: seeds, the training verb, what add returns,
the default k of every search, progress= on every long build, and the one filter rule of every index."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import simkern

RNG = np.random.default_rng(0)
X = RNG.standard_normal((400, 8)).astype(np.float32)
A = RNG.standard_normal((64, 3))
DOCS = [RNG.standard_normal((n, 8)).astype(np.float32) for n in (3, 5, 4, 6, 2, 7)]

def SMALL_FDE():  # noqa: N802  # a factory named like the constant it stands for
    return simkern.FDE(8, num_repetitions=2, num_simhash_projections=2, projection_dimension=4)


# (call taking the seed, the exclusive upper bound of valid seeds)
SEEDED = {
    "HNSWIndex": (lambda s: simkern.HNSWIndex(8, seed=s), 2**64),
    "ProductQuantizer.train": (lambda s: simkern.ProductQuantizer(8, 2, 4).train(X, iters=1, seed=s), 2**64),
    "ProductQuantizer.train(max_train_points)": (
        lambda s: simkern.ProductQuantizer(8, 2, 4).train(X, iters=1, seed=s, max_train_points=100), 2**64),
    "OPQ.train": (lambda s: simkern.OPQ(8, 2, 4, iters=2, pq_iters=1).train(X, pq_final_iters=1, seed=s), 2**64),
    "PQIndex.train": (lambda s: simkern.PQIndex(8, 2, 4).train(X, iters=1, seed=s), 2**64),
    "PQIndex(opq).train": (lambda s: simkern.PQIndex(8, 2, 4, opq=True).train(X, iters=1, seed=s), 2**64),
    "IVFPQIndex.train": (lambda s: simkern.IVFPQIndex(8, 4, 2, 4).train(X, iters=1, seed=s), 2**64),
    "sketch": (lambda s: simkern.sketch(A, 8, seed=s), 2**64),
    "lstsq_sketched": (lambda s: simkern.lstsq_sketched(A, A[:, 0].copy(), m=16, seed=s), 2**64),
    "FDE": (lambda s: simkern.FDE(8, seed=s), 2**32),  # the reference's 32-bit seed
    "MultiVectorIndex(hnsw)": (lambda s: simkern.MultiVectorIndex(8, ann="hnsw", seed=s).add(DOCS), 2**64),
    "MultiVectorIndex(pq)": (lambda s: simkern.MultiVectorIndex(8, ann="pq", seed=s, iters=2, fde=SMALL_FDE())
                             .add(DOCS * 50), 2**64),  # a 32-d FDE: k-means on the default 10240-d one is slow
}


@pytest.mark.parametrize("name", list(SEEDED))
def test_seeds_are_ints_in_range(name):
    call, limit = SEEDED[name]
    call(0)
    call(limit - 1)  # the largest seed works (derived seeds wrap around instead of overflowing)
    for bad in (-1, limit, 2**70):
        with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*(64|32)\)"):
            call(bad)
    for bad in (1.5, 1.0, "1", True, np.float64(2), None):
        with pytest.raises(TypeError, match="seed must be an int"):
            call(bad)
    call(np.uint64(limit - 1))  # NumPy integers are ints


def test_seeds_change_the_result_and_repeat():
    a = simkern.ProductQuantizer(8, 2, 4).train(X, iters=2, seed=2**64 - 1).codebooks
    b = simkern.ProductQuantizer(8, 2, 4).train(X, iters=2, seed=2**64 - 1).codebooks
    c = simkern.ProductQuantizer(8, 2, 4).train(X, iters=2, seed=5).codebooks
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("make", [lambda: simkern.ProductQuantizer(8, 2, 4),
                                  lambda: simkern.OPQ(8, 2, 4, iters=1, pq_iters=1)])
def test_one_training_verb_and_fit_is_a_deprecated_alias(make):
    trained = make()
    assert trained.train(X, seed=3) is trained and trained.is_trained
    old = make()
    with pytest.warns(DeprecationWarning, match=r"\.fit is deprecated: use train"):
        assert old.fit(X, seed=3) is old
    assert np.array_equal(old.encode(X), trained.encode(X))
    assert hasattr(simkern.PQIndex(8, 2, 4), "train") and not hasattr(simkern.PQIndex, "fit")


def test_add_returns_the_assigned_ids_everywhere():
    h = simkern.HNSWIndex(8)
    first = h.add(X[:10])
    assert first.dtype == np.int64 and first.tolist() == list(range(10))
    assert h.add(X[10:13], ids=[100, 50, 70]).tolist() == [100, 50, 70]
    assert h.add(X[13:15]).tolist() == [101, 102]  # default ids continue from id_bound
    assert h.add(X[:0]).shape == (0,)
    p = simkern.PQIndex(8, 2, 4).train(X, iters=1)
    assert p.add(X[:7]).tolist() == list(range(7)) and p.add(X[7:9]).tolist() == [7, 8]
    assert p.add(X[:0]).dtype == np.int64
    m = simkern.MultiVectorIndex(8, ann="flat")
    assert m.add(DOCS).tolist() == list(range(len(DOCS)))


def _searches():
    return {
        "HNSWIndex.search": simkern.HNSWIndex.search,
        "PQIndex.search": simkern.PQIndex.search,
        "IVFPQIndex.search": simkern.IVFPQIndex.search,
        "MultiVectorIndex.search": simkern.MultiVectorIndex.search,
        "maxsim_topk": simkern.maxsim_topk,
    }


@pytest.mark.parametrize("name", list(_searches()))
def test_every_search_defaults_k_to_10(name):
    assert inspect.signature(_searches()[name]).parameters["k"].default == 10


def test_every_search_runs_with_the_default_k():
    h = simkern.HNSWIndex(8)
    h.add(X)
    assert h.search(X[:2])[1].shape == (2, 10)
    p = simkern.PQIndex(8, 2, 4).train(X, iters=1)
    p.add(X)
    assert p.search(X[:2])[1].shape == (2, 10)
    docs = simkern.Ragged.from_list(DOCS * 3)
    assert simkern.maxsim_topk(DOCS[:2], docs)[1].shape == (2, 10)


@pytest.mark.parametrize("build", [
    lambda: simkern.HNSWIndex(8).add(X, progress=True),
    lambda: simkern.PQIndex(8, 2, 4).train(X, iters=1).add(X, progress=True),
    lambda: simkern.IVFPQIndex(8, 4, 2, 4).train(X, iters=1).add(X, progress=True),
    lambda: simkern.MultiVectorIndex(8, ann="flat").add(DOCS, progress=True),
])
def test_every_long_build_takes_progress(build, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):  # the plain stderr reporter, whatever is installed
        if name == "tqdm":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    build()
    err = capsys.readouterr().err
    assert ".add: " in err and err.endswith("\n")


# -- one filter rule: HNSWIndex and PQIndex behave the same ------------------------------------------------------
def _indexes():
    h = simkern.HNSWIndex(8, seed=1)
    h.add(X[:300])
    p = simkern.PQIndex(8, 2, 8).train(X, iters=2)
    p.add(X[:300])
    ivf = simkern.IVFPQIndex(8, 4, 2, 8).train(X, iters=2)
    ivf.add(X[:300])
    ivf.nprobe = 4
    return {"hnsw": h, "pq": p, "ivfpq": ivf}


@pytest.mark.parametrize("kind", ["hnsw", "pq", "ivfpq"])
def test_one_filter_rule_for_every_index(kind):
    index = _indexes()[kind]
    assert index.id_bound == 300
    q = X[300:304]
    mask = np.zeros(index.id_bound, bool)
    mask[[3, 77, 150]] = True
    for allowed in (mask, [3, 77, 150], np.array([150, 3, 77], np.uint32), [3, 77, 150, 300, 2**62]):
        ids = index.search(q, 5, filter=allowed)[1]
        assert set(ids[:, :3].ravel().tolist()) == {3, 77, 150} and (ids[:, 3:] == -1).all(), allowed
    for empty in ([], np.array([], bool), np.array([], np.int64)):
        assert (index.search(q, 5, filter=empty)[1] == -1).all()
    for bad_length in (299, 301, 0):
        if bad_length == 0:
            bad = np.zeros((1, 300), bool)
        else:
            bad = np.ones(bad_length, bool)
        with pytest.raises(ValueError, match=r"boolean filter mask needs exactly one entry per id .*\(300,\)"):
            index.search(q, 5, filter=bad)
    for bad_id in ([-1], [2**63 - 1], [2**70]):
        with pytest.raises(ValueError, match=r"filter ids must lie in 0..2\*\*63-2"):
            index.search(q, 5, filter=bad_id)
    for bad_type in (np.array([0.5]), ["a"]):
        with pytest.raises(TypeError, match="filter must be a boolean mask over ids or a 1-D array"):
            index.search(q, 5, filter=bad_type)


def test_hnsw_id_bound_counts_removed_and_sparse_ids(tmp_path):
    h = simkern.HNSWIndex(8)
    h.add(X[:5], ids=[0, 9, 4, 2, 1])
    assert h.id_bound == 10
    h.remove([9])
    assert h.id_bound == 10 and len(h) == 4  # removals do not lower it: old masks stay valid
    mask = np.zeros(10, bool)
    mask[[4, 9]] = True
    assert h.search(X[:1], 3, filter=mask)[1].tolist() == [[4, -1, -1]]
    h.save(tmp_path / "h.idx")
    again = simkern.HNSWIndex.load(tmp_path / "h.idx")
    assert again.id_bound == 10 and again.search(X[:1], 3, filter=mask)[1].tolist() == [[4, -1, -1]]


def test_no_warnings_from_the_policy_helpers():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simkern.ProductQuantizer(8, 2, 4).train(X, iters=1, seed=np.int64(4))


# (argument, call taking the option): every string option goes through one table and one check (_enums.choice)
OPTIONS = [
    ("metric", lambda v: simkern.HNSWIndex(8, metric=v)),
    ("storage", lambda v: simkern.HNSWIndex(8, storage=v)),
    ("metric", lambda v: simkern.ProductQuantizer(8, 2, metric=v)),
    ("metric", lambda v: simkern.PQIndex(8, 2, metric=v)),
    ("init", lambda v: simkern.ProductQuantizer(8, 2, 4).train(X, iters=1, init=v)),
    ("kind", lambda v: simkern.sketch(A, 8, kind=v)),
    ("method", lambda v: simkern.lstsq_sketched(A, A[:, 0].copy(), m=16, method=v)),
    ("projection", lambda v: simkern.FDE(8, projection=v)),
    ("empty", lambda v: simkern.FDE(8).encode_documents(DOCS, empty=v)),
    ("ann", lambda v: simkern.MultiVectorIndex(8, ann=v)),
    ("storage", lambda v: simkern.MultiVectorIndex(8, storage=v)),
]


@pytest.mark.parametrize("name, call", OPTIONS, ids=[f"{i}-{c[0]}" for i, c in enumerate(OPTIONS)])
def test_string_options_share_one_check(name, call):
    with pytest.raises(ValueError, match=rf"^{name} must be one of '.*', got 'nope'$"):
        call("nope")
    for bad in (None, 1, ["l2"], b"l2"):
        with pytest.raises(TypeError, match=rf"^{name} must be a str, one of '"):
            call(bad)


def test_pq_refuses_cosine_with_the_shared_message():
    with pytest.raises(ValueError, match=r"^metric must be one of 'l2', 'ip', got 'cosine'$"):
        simkern.ProductQuantizer(8, 2, metric="cosine")


# -- out= wherever a result array is returned -------------------------------------------------------------------
def _out_cases():
    pq8 = simkern.ProductQuantizer(8, 2, 8).train(X, iters=2)
    pq4 = simkern.ProductQuantizer(8, 4, 4).train(X, iters=2)
    opq = simkern.OPQ(8, 2, 8, iters=1, pq_iters=1).train(X, pq_final_iters=1)
    codes8, codes4 = pq8.encode(X[:50]), pq4.encode(X[:50])
    h = simkern.HNSWIndex(8, seed=1)
    h.add(X[:200])
    p = simkern.PQIndex(8, 2, 8).train(X, iters=2)
    p.add(X[:200])
    ivf = simkern.IVFPQIndex(8, 4, 2, 8).train(X, iters=2)
    ivf.add(X[:200])
    mv = simkern.MultiVectorIndex(8, ann="flat")
    mv.add(DOCS * 4)
    docs = simkern.Ragged.from_list(DOCS * 4)
    # name: (call(out=...), out arrays to pass)
    return {
        "ProductQuantizer.encode 8-bit": (lambda **o: pq8.encode(X[:50], **o), (np.uint8, (50, 2))),
        "ProductQuantizer.encode 4-bit": (lambda **o: pq4.encode(X[:50], **o), (np.uint8, (50, 2))),
        "ProductQuantizer.decode": (lambda **o: pq8.decode(codes8, **o), (np.float32, (50, 8))),
        "ProductQuantizer.decode 4-bit": (lambda **o: pq4.decode(codes4, **o), (np.float32, (50, 8))),
        "ProductQuantizer.adc": (lambda **o: pq8.adc(X[:3], codes8, **o), (np.float32, (3, 50))),
        "ProductQuantizer.distance_tables": (lambda **o: pq8.distance_tables(X[:3], **o), (np.float32, (3, 2, 256))),
        "OPQ.rotate": (lambda **o: opq.rotate(X[:5], **o), (np.float32, (5, 8))),
        "OPQ.encode": (lambda **o: opq.encode(X[:5], **o), (np.uint8, (5, 2))),
        "OPQ.decode": (lambda **o: opq.decode(codes8, **o), (np.float32, (50, 8))),
        "OPQ.adc": (lambda **o: opq.adc(X[:3], codes8, **o), (np.float32, (3, 50))),
        "OPQ.distance_tables": (lambda **o: opq.distance_tables(X[:3], **o), (np.float32, (3, 2, 256))),
        "HNSWIndex.search": (lambda **o: h.search(X[:4], 6, **o), "pair"),
        "PQIndex.search": (lambda **o: p.search(X[:4], 6, **o), "pair"),
        "IVFPQIndex.search": (lambda **o: ivf.search(X[:4], 6, nprobe=2, **o), "pair"),
        "MultiVectorIndex.search": (lambda **o: mv.search(DOCS[:4], 6, **o), "pair"),
        "maxsim_topk": (lambda **o: simkern.maxsim_topk(DOCS[:4], docs, 6, **o), "pair"),
        "HNSWIndex.get_vectors": (lambda **o: h.get_vectors([3, 1, 4], **o), (np.float32, (3, 8))),
        "sketch": (lambda **o: simkern.sketch(A, 16, **o), (np.float64, (16, 3))),
        "sketch 1-D": (lambda **o: simkern.sketch(A[:, 0].copy(), 16, kind="gaussian", **o), (np.float64, (16,))),
    }


@pytest.mark.parametrize("name", list(_out_cases()))
def test_every_result_array_takes_out(name):
    call, spec = _out_cases()[name]
    want = call()
    if spec == "pair":
        out = (np.full((4, 6), 7, np.float32), np.full((4, 6), 7, np.int64))
        got = call(out=out)
        assert got[0] is out[0] and got[1] is out[1]
        assert np.array_equal(out[0], want[0]) and np.array_equal(out[1], want[1])
        with pytest.raises(TypeError, match=r"out must be a tuple \(scores float32, ids int64\)"):
            call(out=out[0])
        with pytest.raises(TypeError, match=r"out\[1\] \(ids\) must be a int64 numpy array"):
            call(out=(out[0], out[1].astype(np.int32)))
        with pytest.raises(ValueError, match=r"out\[0\] \(scores\) must have shape \(4, 6\)"):
            call(out=(np.zeros((4, 5), np.float32), out[1]))
        return
    dtype, shape = spec
    out = np.full(shape, 7, dtype)
    got = call(out=out)
    assert got is out and np.array_equal(out, want)
    with pytest.raises(TypeError, match="out must be a"):
        call(out=np.zeros(shape, np.float64 if dtype != np.float64 else np.float32))
    with pytest.raises(ValueError, match="out must have shape"):
        call(out=np.zeros((shape[0] + 1,) + shape[1:], dtype))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        call(out=np.zeros((2 * shape[0],) + shape[1:], dtype)[::2])
    ro = np.zeros(shape, dtype)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        call(out=ro)


def test_hnsw_unremove_is_public_and_all_or_nothing():
    h = simkern.HNSWIndex(8, seed=0)
    h.add(X[:20])
    h.remove([3, 5])
    with pytest.raises(ValueError, match="id 7 is live"):
        h.unremove([3, 7])
    with pytest.raises(ValueError, match="id 99 has no tombstone"):
        h.unremove([3, 99])
    assert 3 not in h and 5 not in h  # nothing revived by the failed calls
    assert h.removed_ids().tolist() == [3, 5] and h.contains([3, 4, 5, 2**62]).tolist() == [False, True, False, False]
    h.unremove([5, 3])
    assert 3 in h and 5 in h and len(h) == 20
    assert np.array_equal(h.get_vectors([3]), X[3:4])
    assert h.search(X[3:4], 1)[1][0, 0] == 3
    h.remove([3])
    h.compact()
    with pytest.raises(ValueError, match="id 3 has no tombstone"):
        h.unremove([3])


# -- one validation boundary: composed calls do not re-check what they produced -----------------------------------
@pytest.mark.parametrize("ann", ["hnsw", "pq", "flat", "tokens"])
def test_multivector_validates_once_at_its_boundary(ann, monkeypatch):
    """MultiVectorIndex.add / search check their input once; the FDE, the ANN index and the MaxSim rerank then
    take the checked arrays through internal paths (no second finiteness scan, candidate sort or conversion)."""
    import importlib

    mods = {m: importlib.import_module(f"simkern.{m}") for m in ("fde", "hnsw", "maxsim", "pq", "pq_index")}
    rng = np.random.default_rng(5)
    docs = [rng.standard_normal((int(n), 8)).astype(np.float32) for n in rng.integers(2, 9, 300)]
    docs = [d / np.linalg.norm(d, axis=1, keepdims=True) for d in docs]  # unit tokens: a doc's best match is itself
    index = simkern.MultiVectorIndex(8, ann=ann, candidates=20)
    index.add(docs[:280])  # ann="pq" trains its quantizer here, on the FDEs (checked once, as training data)

    def forbidden(name):
        def fail(*args, **kwargs):
            raise AssertionError(f"{name} ran inside a composed call")
        return fail

    for module, name in [("hnsw", "float32_rows"), ("hnsw", "check_norms"), ("pq_index", "float32_rows"),
                         ("pq_index", "check_norms"), ("pq", "float32_rows"), ("maxsim", "_candidates"),
                         ("maxsim", "_queries")]:
        monkeypatch.setattr(mods[module], name, forbidden(f"simkern.{module}.{name}"))
    monkeypatch.setattr(mods["fde"].FDE, "_input", forbidden("FDE._input"))
    index.add(docs[280:])
    scores, ids = index.search(docs[:5], 3)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_the_sketch_family_has_one_name():
    import importlib
    import sys

    assert "sketch" in simkern.kernel_names() and simkern.sketch.__module__ == "simkern._sketch"
    sys.modules.pop("simkern.linalg", None)
    with pytest.warns(DeprecationWarning, match="simkern.linalg is deprecated"):
        old = importlib.import_module("simkern.linalg")
    assert old.lstsq_sketched is simkern.lstsq_sketched and old.sketch is simkern.sketch
