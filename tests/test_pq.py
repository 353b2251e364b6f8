"""ProductQuantizer against float64 NumPy references, on every ISA level this CPU has (the `isa` fixture)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import simkern
from hypothesis import given
from hypothesis import strategies as st
from levels import KERNEL_LEVELS, kernel_level
from reference import pq_decode_ref, pq_table_tolerance, pq_tables_ref

# Subspace widths at SIMD edges; ksub 16 and 256 are the two code widths.
DSUBS = [1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 32]


def _random_pq(rng, m, dsub, nbits, metric="l2"):
    ksub = 1 << nbits
    codebooks = rng.standard_normal((m, ksub, dsub)).astype(np.float32)
    return simkern.ProductQuantizer.from_codebooks(codebooks, metric), codebooks


def _unpack(codes, m, nbits):
    if nbits == 8:
        return codes.astype(np.int64)
    out = np.empty((codes.shape[0], codes.shape[1] * 2), np.int64)
    out[:, 0::2] = codes & 15
    out[:, 1::2] = codes >> 4
    return out[:, :m]


@st.composite
def pq_case(draw):
    m = draw(st.integers(1, 6))
    dsub = draw(st.sampled_from(DSUBS))
    nbits = draw(st.sampled_from([4, 8]))
    metric = draw(st.sampled_from(["l2", "ip"]))
    n = draw(st.sampled_from([0, 1, 7, 8, 9, 33]))
    seed = draw(st.integers(0, 2**32 - 1))
    return m, dsub, nbits, metric, n, seed


@given(case=pq_case())
def test_tables_encode_decode_adc_match_reference(isa, case):
    m, dsub, nbits, metric, n, seed = case
    rng = np.random.default_rng(seed)
    pq, codebooks = _random_pq(rng, m, dsub, nbits, metric)
    x = rng.standard_normal((n, m * dsub)).astype(np.float32)
    queries = rng.standard_normal((3, m * dsub)).astype(np.float32)

    tables = pq.distance_tables(queries)
    assert tables.shape == (3, m, 1 << nbits) and tables.dtype == np.float32
    want = pq_tables_ref(queries, codebooks, metric)
    assert (np.abs(tables - want) <= pq_table_tolerance(queries, codebooks, metric)).all()

    codes = pq.encode(x)
    assert codes.dtype == np.uint8 and codes.shape == (n, pq.code_size)
    chosen = _unpack(codes, m, nbits)
    # Each code is a nearest centroid: its float64 distance is the minimum up to float32 rounding.
    dist = pq_tables_ref(x, codebooks, "l2") if n else np.zeros((0, m, 1 << nbits))
    tol = pq_table_tolerance(x, codebooks, "l2") if n else dist
    picked = np.take_along_axis(dist, chosen[:, :, None], axis=2)[:, :, 0]
    assert (picked <= dist.min(axis=2) + 2 * tol.max(axis=2)).all()

    np.testing.assert_array_equal(pq.decode(codes), pq_decode_ref(chosen, codebooks))
    adc = pq.adc(queries, codes)
    want_adc = np.take_along_axis(tables.astype(np.float64)[:, None, :, :],
                                  chosen[None, :, :, None], axis=3)[..., 0].sum(axis=2)
    assert adc.shape == (3, n)
    np.testing.assert_allclose(adc, want_adc, rtol=m * 2e-7, atol=1e-6)


def test_codes_and_tables_identical_across_isas_and_threads():
    rng = np.random.default_rng(1)
    pq, _ = _random_pq(rng, 8, 16, 8)
    x = rng.standard_normal((500, 128)).astype(np.float32)
    results = []
    for level in KERNEL_LEVELS:
        with kernel_level(level):
            for threads in (1, 3):
                results.append((level, pq.encode(x, threads=threads), pq.distance_tables(x[:20], threads=threads)))
    for level, codes, tables in results[1:]:
        np.testing.assert_array_equal(codes, results[0][1], err_msg=level)
        np.testing.assert_array_equal(tables, results[0][2], err_msg=level)


@pytest.mark.parametrize("nbits", [8, 4])
def test_encode_ties_go_to_the_lowest_code_on_every_isa(nbits):
    # Codebook row 1 repeated at every id = 1 mod 16 (one SIMD lane for 4, 8 and 16 lanes) and points placed on
    # it: the nearest centroid is a tie inside a lane and across lanes; the reference argmin says code 1.
    rng = np.random.default_rng(11)
    ksub, m, dsub = 2**nbits, 4, 8
    books = rng.standard_normal((m, ksub, dsub)).astype(np.float32)
    books[:, 17::16] = books[:, 1:2]
    pq = simkern.ProductQuantizer.from_codebooks(books)
    x = rng.standard_normal((37, m * dsub)).astype(np.float32)
    x[::2] = books[:, 1].reshape(-1)
    dist = pq_tables_ref(x, books, "l2")  # float64; exact zeros on the tied rows
    want = dist.argmin(axis=2)  # NumPy's argmin: first index among equal minima
    assert (want[::2] == 1).all()
    for level in KERNEL_LEVELS:
        with kernel_level(level):
            chosen = _unpack(pq.encode(x), m, nbits)
            np.testing.assert_array_equal(chosen[::2], want[::2], err_msg=level)
            picked = np.take_along_axis(dist, chosen[:, :, None], axis=2)[:, :, 0]
            assert (picked <= dist.min(axis=2) + 2 * pq_table_tolerance(x, books, "l2").max(axis=2)).all()


def test_distance_tables_out():
    rng = np.random.default_rng(5)
    pq, _ = _random_pq(rng, 4, 8, 4)
    q = rng.standard_normal((6, 32)).astype(np.float32)
    out = np.full((6, 4, 16), np.nan, np.float32)
    assert pq.distance_tables(q, out=out) is out
    np.testing.assert_array_equal(out, pq.distance_tables(q))
    for bad, err in [(np.zeros((6, 4, 15), np.float32), ValueError), (np.zeros((6, 4, 16)), TypeError),
                     (np.zeros((6, 16, 4), np.float32).transpose(0, 2, 1), ValueError), ([0.0], TypeError)]:
        with pytest.raises(err, match="out"):
            pq.distance_tables(q, out=bad)
    frozen = np.zeros((6, 4, 16), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        pq.distance_tables(q, out=frozen)
    shared = np.zeros(6 * 4 * 16 + 6 * 32, np.float32)
    with pytest.raises(ValueError, match="overlap"):
        pq.distance_tables(shared[:6 * 32].reshape(6, 32), out=shared[:6 * 64].reshape(6, 4, 16))


def test_fit_is_deterministic_across_threads_and_isas():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    books = []
    for level in KERNEL_LEVELS:
        with kernel_level(level):
            for threads in (1, 2):
                books.append(simkern.ProductQuantizer(32, 4).train(x, iters=5, seed=7, threads=threads).codebooks)
    for b in books[1:]:
        np.testing.assert_array_equal(b, books[0])
    other = simkern.ProductQuantizer(32, 4).train(x, iters=5, seed=8).codebooks
    assert not np.array_equal(other, books[0])


@pytest.mark.parametrize("init", ["kmeans++", "random"])
@pytest.mark.parametrize("nbits", [8, 4])
def test_fit_reduces_quantisation_error(init, nbits):
    # Clustered data: k-means must beat its own initialisation and random codebooks by a wide margin.
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((64, 32)) * 3
    x = (centres[rng.integers(0, 64, 4000)] + 0.3 * rng.standard_normal((4000, 32))).astype(np.float32)

    def mse(pq):
        return float(((pq.decode(pq.encode(x)) - x) ** 2).sum(axis=1).mean())

    trained = mse(simkern.ProductQuantizer(32, 8, nbits=nbits).train(x, iters=20, init=init))
    init_only = mse(simkern.ProductQuantizer(32, 8, nbits=nbits).train(x, iters=0, init=init))
    random_books, _ = _random_pq(rng, 8, 4, nbits)
    assert trained < 0.9 * init_only
    # 256 centroids per subspace fit the 64 clusters closely; 16 centroids per 4-d subspace do not.
    assert trained < (0.2 if nbits == 8 else 0.5) * mse(random_books)


def test_fit_with_max_train_points_and_empty_clusters():
    rng = np.random.default_rng(4)
    # 300 points but only 20 distinct values per subspace: most of the 256 clusters start or fall empty.
    base = rng.standard_normal((20, 16)).astype(np.float32)
    x = base[rng.integers(0, 20, 300)]
    pq = simkern.ProductQuantizer(16, 2).train(x, iters=5, max_train_points=280)
    assert np.isfinite(pq.codebooks).all()
    np.testing.assert_array_equal(pq.decode(pq.encode(base)), base)  # every distinct point is a centroid


def test_four_bit_packing_is_faiss_layout():
    rng = np.random.default_rng(5)
    pq, codebooks = _random_pq(rng, 5, 4, 4)  # odd m: the last byte's high nibble stays 0
    x = rng.standard_normal((50, 20)).astype(np.float32)
    codes = pq.encode(x)
    assert codes.shape == (50, 3)
    assert (codes[:, -1] >> 4 == 0).all()
    ref = simkern.ProductQuantizer.from_codebooks(np.concatenate([codebooks, codebooks[:1]]))  # m = 6 for layout
    flat = _unpack(codes, 5, 4)
    np.testing.assert_array_equal(codes[:, 0], flat[:, 0] | (flat[:, 1] << 4))
    bad = codes.copy()
    bad[0, -1] |= 0x10
    with pytest.raises(ValueError, match="high nibble"):
        pq.decode(bad)
    assert ref.code_size == 3


def test_pickle_repr_and_from_codebooks():
    rng = np.random.default_rng(6)
    pq, codebooks = _random_pq(rng, 4, 8, 8, "ip")
    clone = pickle.loads(pickle.dumps(pq))
    np.testing.assert_array_equal(clone.codebooks, codebooks)
    x = rng.standard_normal((10, 32)).astype(np.float32)
    np.testing.assert_array_equal(clone.adc(x, pq.encode(x)), pq.adc(x, pq.encode(x)))
    assert repr(pq) == "ProductQuantizer(dim=32, m=4, nbits=8, metric='ip', trained)"
    assert not pq.codebooks.flags.writeable
    untrained = pickle.loads(pickle.dumps(simkern.ProductQuantizer(8, 2)))
    assert not untrained.is_trained


def test_matches_faiss_when_installed():
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2000, 32)).astype(np.float32)
    fpq = faiss.ProductQuantizer(32, 4, 8)
    fpq.train(x)
    books = faiss.vector_to_array(fpq.centroids).reshape(4, 256, 8)
    pq = simkern.ProductQuantizer.from_codebooks(books)
    agree = (fpq.compute_codes(x) == pq.encode(x)).mean()
    assert agree > 0.999  # faiss sums distances in another order: rare near-ties may differ


# -- bad input ---------------------------------------------------------------------------------------------------

def test_bad_arguments():
    with pytest.raises(ValueError, match=r"dim \(10\) must be a multiple of m \(3\)"):
        simkern.ProductQuantizer(10, 3)
    with pytest.raises(ValueError, match="nbits must be 8 or 4"):
        simkern.ProductQuantizer(8, 2, nbits=5)
    with pytest.raises(ValueError, match="metric must be"):
        simkern.ProductQuantizer(8, 2, metric="cos")
    pq = simkern.ProductQuantizer(8, 2)
    x = np.zeros((300, 8), np.float32)
    with pytest.raises(ValueError, match="not trained"):
        pq.encode(x)
    with pytest.raises(TypeError, match="x must be float32"):
        pq.train(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"x must have shape \(n, 8\)"):
        pq.train(np.zeros((300, 9), np.float32))
    with pytest.raises(ValueError, match="at least ksub = 256"):
        pq.train(x[:100])
    nan = x.copy()
    nan[17, 3] = np.nan
    with pytest.raises(ValueError, match=r"x contains NaN or inf \(row 17\)"):
        pq.train(nan)
    with pytest.raises(ValueError, match="init must be"):
        pq.train(x, init="pca")
    rng = np.random.default_rng(8)
    trained, _ = _random_pq(rng, 2, 4, 8)
    with pytest.raises(ValueError, match=r"codes must have shape \(n, 2\)"):
        trained.decode(np.zeros((3, 3), np.uint8))
    with pytest.raises(TypeError, match="codes must be a uint8"):
        trained.adc(np.zeros((1, 8), np.float32), np.zeros((3, 2), np.int64))
    with pytest.raises(ValueError, match=r"queries must have shape \(n, 8\)"):
        trained.distance_tables(np.zeros((1, 7), np.float32))
    with pytest.raises(ValueError, match="ksub 256 or 16"):
        simkern.ProductQuantizer.from_codebooks(np.zeros((2, 10, 4), np.float32))


def test_matches_nanopq_when_installed():
    nanopq = pytest.importorskip("nanopq")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1000, 32)).astype(np.float32)
    npq = nanopq.PQ(M=4, Ks=256, verbose=False).fit(x, iter=5, seed=0)
    pq = simkern.ProductQuantizer.from_codebooks(npq.codewords.astype(np.float32))
    assert (npq.encode(x) == pq.encode(x)).mean() > 0.999
    table = npq.dtable(x[0]).dtable
    np.testing.assert_allclose(pq.distance_tables(x[:1])[0], table, rtol=1e-5, atol=1e-5)
