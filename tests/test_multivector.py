"""MultiVectorIndex (FDE -> ANN -> exact MaxSim rerank): recall against exact MaxSim on a seeded synthetic corpus for
every ann, exactness of the returned scores, add/remove/save/load/pickle, corrupt folders, bad inputs. (The PyLate
shim, simkern.compat.pylate: tests/test_compat_pylate.py.)"""

from __future__ import annotations

import os
import pathlib
import pickle
import shutil

import numpy as np
import pytest
import simkern

DIM = 32
ANNS = ["flat", "hnsw", "pq", "tokens"]


def corpus(n_docs: int, seed: int, topics: int = 20) -> list[np.ndarray]:
    """Docs of 8-31 unit tokens drawn around 4 centres of one of `topics` topics (so that retrieval is meaningful)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((topics * 4, DIM)).astype(np.float32)
    docs = []
    for _ in range(n_docs):
        t, length = rng.integers(topics), rng.integers(8, 32)
        x = centers[rng.integers(t * 4, t * 4 + 4, length)] + 0.7 * rng.standard_normal((length, DIM))
        docs.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return docs


def queries_from(docs: list[np.ndarray], n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = docs[rng.integers(len(docs))]
        x = d[rng.choice(len(d), min(len(d), 8), replace=False)] + 0.3 * rng.standard_normal((min(len(d), 8), DIM))
        out.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def data():
    docs = corpus(600, seed=0)
    queries = queries_from(docs, 50, seed=1)
    d, q = simkern.Ragged.from_list(docs), simkern.Ragged.from_list(queries)
    return d, q, simkern.maxsim(q, d)


def small_fde():
    return simkern.FDE(DIM, num_repetitions=10, num_simhash_projections=4, projection_dimension=8)  # 1280-d


def build(ann, docs, **kw):
    fde = None if ann == "tokens" else small_fde()
    index = simkern.MultiVectorIndex(DIM, fde=fde, ann=ann, **kw)
    index.add(docs)
    return index


def recall_at_10(ids, exact):
    gt = np.argsort(-exact, axis=1, kind="stable")[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt)]))


@pytest.mark.parametrize("ann", ANNS)
def test_recall_and_exact_scores(data, ann):
    d, q, exact = data
    index = build(ann, d, candidates=100)
    assert len(index) == len(d)
    scores, ids = index.search(q, 10)
    assert scores.shape == ids.shape == (len(q), 10) and scores.dtype == np.float32 and ids.dtype == np.int64
    # measured on this seeded corpus: flat / hnsw / pq 0.92-0.93, tokens 1.00 (candidates = 100, token_k = 50)
    assert recall_at_10(ids, exact) >= (0.97 if ann == "tokens" else 0.88), ann
    # the returned scores are the exact MaxSim scores of the returned ids, best first
    np.testing.assert_allclose(scores, np.take_along_axis(exact, ids, 1), rtol=1e-6, atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # more candidates never hurt: the flat ANN with every doc as a candidate is exact MaxSim
    if ann == "flat":
        _, all_ids = index.search(q, 10, candidates=len(d))
        assert recall_at_10(all_ids, exact) == 1.0


def test_fewer_candidates_lower_recall(data):
    d, q, exact = data
    index = build("flat", d)
    r20 = recall_at_10(index.search(q, 10, candidates=20)[1], exact)
    r100 = recall_at_10(index.search(q, 10, candidates=100)[1], exact)
    assert r20 < r100


@pytest.mark.parametrize("storage", ["float16", "bfloat16"])
def test_storage_dtypes(data, storage):
    d, q, _ = data
    index = build("flat", d, storage=storage)
    stored = simkern.Ragged(d.tokens.astype(simkern.MultiVectorIndex(DIM, storage=storage).docs().dtype), d.offsets)
    want = simkern.maxsim(q, stored)
    scores, ids = index.search(q, 5)
    np.testing.assert_allclose(scores, np.take_along_axis(want, ids, 1), rtol=1e-6, atol=1e-6)
    assert index.docs().dtype == stored.dtype


def test_ids_remove_and_add_again(data):
    d, q, exact = data
    docs = [d[i] for i in range(300)]
    for ann in ANNS:  # (pq trains on its first add: >= 256 docs)
        index = simkern.MultiVectorIndex(DIM, fde=None if ann == "tokens" else small_fde(), ann=ann, candidates=300)
        got = index.add(docs[:260], ids=np.arange(1000, 1260))
        np.testing.assert_array_equal(got, np.arange(1000, 1260))
        np.testing.assert_array_equal(index.add(docs[260:]), np.arange(1260, 1300))  # continuing ids
        assert 1000 in index and 999 not in index and len(index) == 300
        _, before = index.search(q, 5)
        victims = np.unique(before[:, 0])
        index.remove(victims)
        assert len(index) == 300 - len(victims) and all(v not in index for v in victims)
        scores, after = index.search(q, 5)
        assert not np.isin(after, victims).any(), ann
        with pytest.raises(ValueError, match="not in the index"):
            index.remove([victims[0]])
        with pytest.raises(ValueError, match="already in the index"):
            index.add(docs[:1], ids=[1001])
        index.add([docs[int(victims[0]) - 1000]], ids=[5000])  # a removed doc can come back under a new id
        assert 5000 in index
        sub = simkern.Ragged.from_list(docs)
        want = simkern.maxsim(q, sub)
        ok = after >= 0
        np.testing.assert_allclose(scores[ok], np.take_along_axis(want, np.where(ok, after - 1000, 0), 1)[ok],
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ann", ANNS)
def test_save_load_pickle_round_trip(tmp_path, data, ann):
    d, q, _ = data
    index = build(ann, [d[i] for i in range(300)], storage="float16")
    index.remove([3, 7])
    want = index.search(q, 10)
    path = tmp_path / "idx"
    index.save(path)
    index.save(path)  # replacing an existing folder
    loaded = simkern.MultiVectorIndex.load(path)
    assert len(loaded) == 298 and loaded.ann == ann and loaded.storage == "float16"
    for got in (loaded.search(q, 10), pickle.loads(pickle.dumps(index)).search(q, 10)):
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    loaded.add([d[400]])  # still writable
    assert len(loaded) == 299


V1_FOLDER = pathlib.Path(__file__).parent / "data" / "mv_v1"  # saved by simkern before the container (version 1)


def test_corrupt_files(tmp_path, data):
    """Every section of index.skc, its header and meta, and its end: a changed byte or a truncation is refused,
    read or mapped."""
    d, q, _ = data
    index = build("hnsw", [d[i] for i in range(100)])
    good = tmp_path / "good"
    index.save(good)
    assert sorted(os.listdir(good)) == ["index.skc"]
    raw = (good / "index.skc").read_bytes()
    with simkern._container.Reader(good / "index.skc", "MultiVectorIndex", (2,)) as r:
        places = {name: (offset, r.layout[name]) for name, (offset, *_) in r.sections.items()}
    assert {"tokens", "offsets", "ids", "alive", "ann/vectors", "ann/link_ids"} <= set(places)
    spots = {"header": 10, "meta": 80, "end": len(raw) - 3}
    spots |= {name: offset + 1 for name, (offset, (dtype, shape)) in places.items() if np.prod(shape) > 1}
    for what, at in spots.items():
        bad = tmp_path / f"bad-{what.replace('/', '-')}"
        index.save(bad)
        changed = bytearray(raw)
        changed[at] ^= 0x5A
        (bad / "index.skc").write_bytes(bytes(changed))
        for mmap in (False, True):
            with pytest.raises(ValueError):
                simkern.MultiVectorIndex.load(bad, mmap=mmap)
    (good / "index.skc").write_bytes(raw[:-7])
    with pytest.raises(ValueError, match="truncated"):
        simkern.MultiVectorIndex.load(good)
    with pytest.raises(ValueError, match="not a MultiVectorIndex folder"):
        simkern.MultiVectorIndex.load(tmp_path / "nothing-here")
    with pytest.raises(ValueError, match="not a MultiVectorIndex folder"):
        simkern.MultiVectorIndex.load(tmp_path / "nothing-here", mmap=True)


def test_version_1_folders_still_load(tmp_path):
    want = np.load(V1_FOLDER.parent / "mv_v1_expected.npz")
    index = simkern.MultiVectorIndex.load(V1_FOLDER)
    got = index.search(list(want["queries"]), k=5)
    np.testing.assert_array_equal(got[1], want["ids"])
    np.testing.assert_allclose(got[0], want["scores"], rtol=1e-6)  # saved at avx512: other levels round apart
    with pytest.raises(ValueError, match="version 1, which cannot be mapped"):
        simkern.MultiVectorIndex.load(V1_FOLDER, mmap=True)
    index.save(tmp_path / "again")  # saved again: the container, same results
    again = simkern.MultiVectorIndex.load(tmp_path / "again", mmap=True)
    np.testing.assert_array_equal(again.search(list(want["queries"]), k=5)[1], want["ids"])
    copy = tmp_path / "v1"
    shutil.copytree(V1_FOLDER, copy)
    index.save(copy)  # a version 1 folder is ours: replaced by the container
    assert sorted(os.listdir(copy)) == ["index.skc"]


@pytest.mark.parametrize("name", ["tokens.npy", "offsets.npy", "ids.npy", "alive.npy", "ann.bin", "manifest.json"])
def test_corrupt_version_1_folders(tmp_path, name):
    bad = tmp_path / "bad"
    shutil.copytree(V1_FOLDER, bad)
    raw = bytearray((bad / name).read_bytes())
    raw[len(raw) // 2] ^= 0x5A
    (bad / name).write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        simkern.MultiVectorIndex.load(bad)
    trunc = tmp_path / "trunc"
    shutil.copytree(V1_FOLDER, trunc)
    (trunc / name).write_bytes((trunc / name).read_bytes()[:-7])
    with pytest.raises(ValueError):
        simkern.MultiVectorIndex.load(trunc)
    os.remove(trunc / name)
    with pytest.raises(ValueError, match="missing or corrupt|not a MultiVectorIndex folder"):
        simkern.MultiVectorIndex.load(trunc)


def test_default_fde_is_the_papers():
    index = simkern.MultiVectorIndex(128)
    cfg = index.fde.config
    assert index.fde.output_dim == 10240 and cfg["num_repetitions"] == 20
    assert cfg["num_simhash_projections"] == 5 and cfg["projection_dimension"] == 16
    assert cfg["fill_empty_partitions"] and index.ann == "hnsw" and index.candidates == 100


def test_bad_inputs(data):
    d, q, _ = data
    with pytest.raises(ValueError, match="ann must be one of"):
        simkern.MultiVectorIndex(DIM, ann="ivf")
    with pytest.raises(ValueError, match="storage must be one of"):
        simkern.MultiVectorIndex(DIM, storage="int8")
    with pytest.raises(ValueError, match="fde.dim must equal dim"):
        simkern.MultiVectorIndex(DIM + 1, fde=small_fde())
    with pytest.raises(TypeError, match="unknown options for ann='pq'"):
        simkern.MultiVectorIndex(DIM, fde=small_fde(), ann="pq", M=16)
    index = simkern.MultiVectorIndex(DIM, fde=small_fde(), ann="flat")
    assert index.search(q, 3)[1].tolist() == [[-1] * 3] * len(q)  # empty index: padding
    with pytest.raises(ValueError, match="dim 32"):
        index.add([np.ones((3, DIM + 1), np.float32)])
    with pytest.raises(ValueError, match="is empty"):
        index.add([np.ones((3, DIM), np.float32), np.ones((0, DIM), np.float32)])
    bad = np.ones((3, DIM), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"docs\[1\] contains NaN or inf \(token 1\)"):
        index.add([np.ones((2, DIM), np.float32), bad])
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        index.add([np.ones((2, DIM))])
    with pytest.raises(ValueError, match="ids must be distinct"):
        index.add([d[0], d[1]], ids=[4, 4])
    with pytest.raises(ValueError, match="one id per doc"):
        index.add([d[0], d[1]], ids=[4])
    index.add([d[i] for i in range(20)])
    with pytest.raises(ValueError, match=r"candidates \(5\) must be >= k \(10\)"):
        index.search(q, 10, candidates=5)
    with pytest.raises(TypeError, match="queries must be float32"):
        index.search([q[0].astype(np.float64)], 3)
    with pytest.raises(ValueError, match="queries must have dim"):
        index.search([np.ones((2, DIM + 1), np.float32)], 3)
    nan_q = q[0].copy()
    nan_q[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        index.search([nan_q], 3)
    pq = simkern.MultiVectorIndex(DIM, fde=small_fde(), ann="pq")
    with pytest.raises(ValueError, match="at least 256 docs"):
        pq.add([d[i] for i in range(100)])
    with pytest.raises(TypeError, match="token_k is an option of ann='tokens' only"):
        simkern.MultiVectorIndex(DIM, fde=small_fde(), ann="hnsw", token_k=8)
    with pytest.raises(ValueError, match="token_k"):
        simkern.MultiVectorIndex(DIM, ann="tokens", token_k=0)
    with pytest.raises(TypeError, match="token_k applies to ann='tokens' only"):
        index.search(q, 3, token_k=4)


def test_pq_default_subspaces_fit_the_quantised_scan():
    # 10240-d default FDE: 256 subspaces of 40 coordinates (the most the uint16 quantised scan takes); a 1280-d FDE:
    # 256 of 5; an output_dim without a divisor in 129..256 gets its largest divisor <= 256
    assert simkern.MultiVectorIndex(128, ann="pq")._ann.pq.m == 256
    assert simkern.MultiVectorIndex(DIM, fde=small_fde(), ann="pq")._ann.pq.m == 256
    odd = simkern.FDE(DIM, num_repetitions=3, num_simhash_projections=2, projection_dimension=7)  # 84-d
    assert simkern.MultiVectorIndex(DIM, fde=odd, ann="pq")._ann.pq.m == 84
    assert simkern.MultiVectorIndex(DIM, fde=odd, ann="pq", m=12)._ann.pq.m == 12


def test_token_k_grows_the_union_and_all_tokens_is_exact(data):
    d, q, exact = data
    index = build("tokens", d, candidates=100)
    union = [(index._candidates(q, len(d), 1, tk) >= 0).sum(1).mean() for tk in (1, 4, 16)]
    assert union[0] < union[1] < union[2], union
    r = [recall_at_10(index.search(q, 10, candidates=len(d), token_k=tk)[1], exact) for tk in (1, 16)]
    assert r[0] < r[1], r
    # every token of the corpus retrieved for every query token and every doc reranked: exact MaxSim top-10
    index._ann.ef = d.total_tokens
    scores, ids = index.search(q, 10, candidates=len(d), token_k=d.total_tokens)
    np.testing.assert_allclose(scores, -np.sort(-exact, axis=1)[:, :10], rtol=1e-6, atol=1e-6)


def test_mapped_index_refuses_a_file_changed_under_it(tmp_path, data):
    d, q, _ = data
    index = build("flat", [d[i] for i in range(60)])
    index.save(tmp_path / "m")
    mapped = simkern.MultiVectorIndex.load(tmp_path / "m", mmap=True)
    assert mapped.mmapped and not index.mmapped
    np.testing.assert_array_equal(mapped.search(q, 5)[1], index.search(q, 5)[1])
    index.save(tmp_path / "m")  # a save replaces the folder: the mapping keeps the old file, still valid
    np.testing.assert_array_equal(mapped.search(q, 5)[1], index.search(q, 5)[1])
    mapped = simkern.MultiVectorIndex.load(tmp_path / "m", mmap=True)
    with open(tmp_path / "m" / "index.skc", "r+b") as f:  # changed in place: refused, not a crash
        f.truncate(100)
    with pytest.raises(ValueError, match="changed"):
        mapped.search(q, 5)
