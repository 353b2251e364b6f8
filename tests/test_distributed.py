"""simkern.distributed on a local Ray cluster (ray.init(num_cpus=2), shut down after): Ray Data encodings are
bit-identical to the one-process encoders. Skipped when Ray (the ``ray`` extra) is not installed."""

from __future__ import annotations

import os

import numpy as np
import pytest
import simkern

ray = pytest.importorskip("ray")
ray_data = pytest.importorskip("ray.data")

# Ray's own modules warn about their deprecated settings when DataContext is touched: not ours to fix
pytestmark = [pytest.mark.distributed, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def _docs(seed, n, dim, lo=1, hi=40):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(k), dim)).astype(np.float32) for k in rng.integers(lo, hi, n)]


def _by_id(rows, column):
    rows = sorted(rows, key=lambda r: int(r["id"]))
    return np.stack([np.asarray(r[column]) for r in rows])


@pytest.mark.parametrize("kind", ["documents", "queries"])
def test_encode_fde_is_bit_identical_to_one_process(cluster, kind):
    docs = _docs(0, 300, 16)
    fde = simkern.FDE(16, num_repetitions=4, num_simhash_projections=3, projection_dimension=8, seed=3)
    ds = ray_data.from_items([{"id": i, "tokens": d} for i, d in enumerate(docs)])
    out = simkern.distributed.encode_fde(ds, fde, kind=kind, batch_size=37, concurrency=2).take_all()
    got = _by_id(out, "fde")
    want = fde.encode_documents(docs) if kind == "documents" else fde.encode_queries(docs)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_encode_fde_same_length_rows(cluster):
    docs = _docs(1, 50, 8, 5, 6)  # every row 5 x 8: Ray hands the batch over as one 3-D array
    fde = simkern.FDE(8, num_repetitions=2, num_simhash_projections=2, seed=1)
    ds = ray_data.from_items([{"id": i, "tokens": d} for i, d in enumerate(docs)])
    got = _by_id(simkern.distributed.encode_fde(ds, fde, batch_size=16, concurrency=1).take_all(), "fde")
    np.testing.assert_array_equal(got, fde.encode_documents(docs))
    # the default batch (about 32 MiB of encodings), and the input column dropped
    rows = simkern.distributed.encode_fde(ds, fde, concurrency=1, keep_input=False).take_all()
    assert set(rows[0]) == {"id", "fde"}
    np.testing.assert_array_equal(_by_id(rows, "fde"), fde.encode_documents(docs))


@pytest.mark.parametrize("nbits", [8, 4])
def test_encode_pq_is_bit_identical_to_one_process(cluster, nbits):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2000, 32)).astype(np.float32)
    pq = simkern.ProductQuantizer(32, 8, nbits).train(x, iters=3)
    ds = ray_data.from_items([{"id": i, "vector": v} for i, v in enumerate(x)])
    rows = simkern.distributed.encode_pq(ds, pq, batch_size=300, concurrency=(1, 2), keep_input=False).take_all()
    assert set(rows[0]) == {"id", "pq_codes"}
    np.testing.assert_array_equal(_by_id(rows, "pq_codes"), pq.encode(x))


def test_bad_arguments(cluster):
    fde = simkern.FDE(8, seed=0)
    ds = ray_data.from_items([{"tokens": np.ones((2, 8), np.float32)}])
    with pytest.raises(TypeError, match="fde"):
        simkern.distributed.encode_fde(ds, object())
    with pytest.raises(ValueError, match="kind"):
        simkern.distributed.encode_fde(ds, fde, kind="tokens")
    with pytest.raises(ValueError, match="num_cpus"):
        simkern.distributed.encode_fde(ds, fde, num_cpus=0)
    with pytest.raises(ValueError, match="concurrency"):
        simkern.distributed.encode_fde(ds, fde, concurrency=(3, 1))
    with pytest.raises(ValueError, match="not trained"):
        simkern.distributed.encode_pq(ds, simkern.ProductQuantizer(8, 2))


# -- sharded build and search ----------------------------------------------------------------------------------------
def _rows(seed, n, dim):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _dataset(x, ids):
    return ray_data.from_items([{"id": int(i), "vector": v} for i, v in zip(ids, x)])


def _templates(x):
    pq = simkern.PQIndex(16, 4, 8).train(x, iters=3)
    ivf = simkern.IVFPQIndex(16, 8, 4, 4).train(x, iters=3)
    return {"pq": pq, "ivfpq": ivf, "hnsw": simkern.HNSWIndex(16, M=8, ef_construction=40, seed=1)}


@pytest.mark.parametrize("kind", ["pq", "ivfpq", "hnsw"])
def test_sharded_search_equals_one_index(cluster, tmp_path, kind):
    x, q = _rows(0, 1200, 16), _rows(1, 7, 16)
    ids = np.random.default_rng(2).permutation(5000)[:1200].astype(np.int64)  # arbitrary ids
    template = _templates(x)[kind]
    manifest = simkern.distributed.build_shards(_dataset(x, ids), template, 3, tmp_path / "shards")
    assert [s["shard"] for s in manifest["shards"]] == [0, 1, 2]
    assert sum(s["count"] for s in manifest["shards"]) == len(x)
    index = simkern.distributed.ShardedIndex.open(tmp_path / "shards", num_replicas=2)
    try:
        assert len(index) == len(x)
        kwargs = {"ef": 2000} if kind == "hnsw" else {"nprobe": 8} if kind == "ivfpq" else {}
        got = index.search(q, 10, **kwargs)
        # one index over every row, with the same quantizer: the exact top-k (ties by id)
        import copy
        single = copy.deepcopy(template)
        if kind == "pq":
            single.add(x)
            s_scores, s_pos = single.search(q, 10)
            s_ids = np.where(s_pos >= 0, ids[np.maximum(s_pos, 0)], -1)
        else:
            single.add(x, ids)
            s_scores, s_ids = single.search(q, 10, **kwargs)
        if kind == "pq":  # positions and global ids order ties differently: compare scores, then the sets per score
            np.testing.assert_array_equal(got[0], s_scores)
        else:
            np.testing.assert_array_equal(got[1], s_ids)
            np.testing.assert_array_equal(got[0], s_scores)
        # a filter by id reaches only the shards holding those ids
        allowed = ids[::50]
        f_scores, f_ids = index.search(q, 5, filter=allowed, **kwargs)
        assert np.isin(f_ids[f_ids >= 0], allowed).all()
        # a lost shard actor: the call is retried on the restarted actor, which reloads the shard
        ray.kill(index._actors[1][0], no_restart=False)
        ray.kill(index._actors[1][1], no_restart=False)
        again = index.search(q, 10, **kwargs)
        np.testing.assert_array_equal(again[0], got[0])
        np.testing.assert_array_equal(again[1], got[1])
    finally:
        index.close()


def test_corrupted_shard_is_refused(cluster, tmp_path):
    x = _rows(3, 300, 16)
    template = simkern.PQIndex(16, 4, 8).train(x, iters=2)
    manifest = simkern.distributed.build_shards(_dataset(x, np.arange(300)), template, 2, tmp_path / "s")
    path = tmp_path / "s" / manifest["shards"][1]["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        simkern.distributed.ShardedIndex.open(tmp_path / "s")
    with pytest.raises(ValueError, match="manifest"):
        simkern.distributed.ShardedIndex.open(tmp_path / "missing")
    with pytest.raises(TypeError, match="template"):
        simkern.distributed.build_shards(_dataset(x, np.arange(300)), object(), 2, tmp_path / "t")


def _token_docs(seed, n, dim):
    return _docs(seed, n, dim, 2, 20)


def test_sharded_multivector_equals_one_index(cluster, tmp_path):
    docs, queries = _token_docs(4, 240, 16), _token_docs(5, 6, 16)
    ids = np.random.default_rng(6).permutation(10_000)[:240].astype(np.int64)
    fde = simkern.FDE(16, num_repetitions=2, num_simhash_projections=2, seed=7)
    template = simkern.MultiVectorIndex(16, fde=fde, ann="flat", candidates=240)
    ds = ray_data.from_items([{"id": int(i), "tokens": d} for i, d in zip(ids, docs)])
    url = (tmp_path / "mv").as_uri()  # through fsspec: a shard that is a folder, staged, uploaded, cached
    manifest = simkern.distributed.build_shards(ds, template, 3, url)
    assert manifest["kind"] == "MultiVectorIndex" and manifest["metric"] == "maxsim"
    assert all(s["file"].endswith("/index.skc") for s in manifest["shards"])
    single = simkern.MultiVectorIndex(16, fde=fde, ann="flat", candidates=240)
    single.add(docs, ids)
    want = single.search(queries, 8)
    with simkern.distributed.ShardedIndex.open(url, cache_dir=tmp_path / "cache") as index:
        got = index.search(queries, 8)  # every shard reranks all its docs: exact MaxSim top-k
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
        with pytest.raises(TypeError, match="filter"):
            index.search(queries, 8, filter=ids[:3])


def test_untrained_template_through_a_url(cluster, tmp_path):
    """An untrained template: each shard trains its own quantizer; an fsspec URL (file://): staged uploads, and
    actors read verified copies from their cache."""
    x, q = _rows(7, 900, 16), _rows(8, 5, 16)
    ids = np.arange(1000, 1900, dtype=np.int64)
    url = (tmp_path / "remote").as_uri()
    manifest = simkern.distributed.build_shards(_dataset(x, ids), simkern.PQIndex(16, 4, 4), 2, url)
    assert all(s["trained"] == "on the shard's rows" for s in manifest["shards"])
    with simkern.distributed.ShardedIndex.open(url, cache_dir=tmp_path / "cache") as index:
        got = index.search(q, 7)
    assert len(list((tmp_path / "cache").rglob("*.simk"))) == 2  # the verified downloads
    # the merge of each shard's own answer (loaded here from the files), by (score, id)
    scores, gids = [], []
    for s in manifest["shards"]:
        shard = simkern.PQIndex.load(tmp_path / "remote" / s["file"])
        shard_ids = np.load(tmp_path / "remote" / s["ids_file"])
        sc, pos = shard.search(q, 7)
        scores.append(sc)
        gids.append(np.where(pos >= 0, shard_ids[np.maximum(pos, 0)], -1))
    sc, gi = np.concatenate(scores, 1), np.concatenate(gids, 1)
    for row in range(len(q)):
        order = np.lexsort((gi[row], sc[row]))[:7]
        np.testing.assert_array_equal(got[1][row], gi[row][order])
        np.testing.assert_array_equal(got[0][row], sc[row][order])


def test_a_failed_rebuild_leaves_the_previous_shards(cluster, tmp_path):
    x, q = _rows(9, 400, 16), _rows(10, 4, 16)
    template = simkern.PQIndex(16, 4, 8).train(x, iters=2)
    first = simkern.distributed.build_shards(_dataset(x, np.arange(400)), template, 2, tmp_path / "s")
    with simkern.distributed.ShardedIndex.open(tmp_path / "s") as index:
        before = index.search(q, 5)
        with pytest.raises(ValueError, match="dim 16"):
            index.search(q[:, :8], 5)
    with pytest.raises(ValueError, match="closed"):
        index.search(q, 5)
    bad = _dataset(_rows(11, 50, 8), np.arange(50))  # 8-d rows for a 16-d template: every task fails
    with pytest.raises(ValueError, match="dim"):
        simkern.distributed.build_shards(bad, template, 2, tmp_path / "s")
    with simkern.distributed.ShardedIndex.open(tmp_path / "s") as index:
        after = index.search(q, 5)
    np.testing.assert_array_equal(after[1], before[1])
    # a successful rebuild replaces the manifest, then deletes the previous build's files
    second = simkern.distributed.build_shards(_dataset(x[:300], np.arange(300)), template, 3, tmp_path / "s")
    names = {p.name for p in (tmp_path / "s").iterdir() if not p.name.startswith(".")}
    want = {"manifest.json"} | {s[key] for s in second["shards"] for key in ("file", "ids_file")}
    assert names == want
    assert not names & {s["file"] for s in first["shards"]}


def test_the_readme_example_runs(cluster, tmp_path, monkeypatch):
    readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
    if not os.path.exists(readme):
        pytest.skip("README.md is not beside the tests")
    with open(readme, encoding="utf-8") as f:
        section = f.read().split('## Ray (optional, `pip install "simkern[ray]"`)', 1)[1]
    start = section.index("```python\n") + len("```python\n")
    code = section[start:section.index("```\n", start)]
    monkeypatch.chdir(tmp_path)  # its shard folders are relative paths
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: None)  # the cluster fixture's is running
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    # the MultiVectorIndex shards, queried with the first three documents' own tokens, find each of them first
    assert ns["ids"].shape == (3, 10) and ns["ids"][:, 0].tolist() == [0, 1, 2]
    assert (tmp_path / "fde-shards" / "manifest.json").exists()
