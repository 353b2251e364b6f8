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


@pytest.mark.parametrize("nbits", [8, 4])
def test_encode_pq_is_bit_identical_to_one_process(cluster, nbits):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2000, 32)).astype(np.float32)
    pq = simkern.ProductQuantizer(32, 8, nbits).train(x, iters=3)
    ds = ray_data.from_items([{"id": i, "vector": v} for i, v in enumerate(x)])
    got = _by_id(simkern.distributed.encode_pq(ds, pq, batch_size=300, concurrency=(1, 2)).take_all(), "pq_codes")
    np.testing.assert_array_equal(got, pq.encode(x))


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
