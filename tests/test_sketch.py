"""simkern.sketch against explicit float64 sketch matrices on every ISA; bit identity across ISAs, threads and strides;
the statistics of each kind; bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import simkern
from hypothesis import given
from hypothesis import strategies as st
from levels import KERNEL_LEVELS, kernel_level
from reference import hadamard_entry_signs, sketch_matrix_reference
from simkern import _core

ROW_COUNTS = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 256, 257, 511, 513]
WIDTHS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33]


def reference(a: np.ndarray, m: int, kind: str, seed: int, nnz: int) -> np.ndarray:
    n = a.shape[0]
    rows = signs = None
    if kind == "srht":
        rows, signs = _core._srht_rows(n, m, seed), _core._srht_signs(n, seed)
    s = sketch_matrix_reference(n, m, kind, seed, nnz, rows, signs)
    return s @ a.astype(np.float64)


@given(n=st.sampled_from(ROW_COUNTS) | st.integers(1, 300), width=st.sampled_from(WIDTHS),
       kind=st.sampled_from(simkern.SKETCH_KINDS), m_frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**64 - 1),
       nnz=st.integers(1, 8), f64=st.booleans())
def test_against_explicit_sketch_matrix_on_every_isa(n, width, kind, m_frac, seed, nnz, f64):
    dtype = np.float64 if f64 else np.float32
    padded = 1 << (n - 1).bit_length()
    m = 1 + int(m_frac * (min(padded, 80) - 1))
    nnz = min(nnz, m)
    a = np.random.default_rng(seed % 2**32).standard_normal((n, width)).astype(dtype)
    want = reference(a, m, kind, seed, nnz)
    results = []
    for level in KERNEL_LEVELS:
        with kernel_level(level):
            for threads in (1, 2, 3):
                results.append(simkern.sketch(a, m, kind=kind, seed=seed, nnz_per_column=nnz, threads=threads))
    got = results[0]
    assert got.shape == (m, width) and got.dtype == dtype
    # float64 terms: each output is a +-sum of n values (Gaussian: products); float32 rounds each step
    scale = np.sqrt(n) * np.abs(a).max() * (1.0 if kind != "gaussian" else 8.0)
    tol = (1e-13 if f64 else 2e-6) * np.sqrt(n) * scale
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    for r in results[1:]:  # every value is the same sequence of operations on every ISA and thread count
        assert r.tobytes() == got.tobytes()


def test_srht_equals_hadamard_rows_times_signs_exactly():
    n, m = 100, 40
    s = simkern.sketch(np.eye(n), m, seed=3)  # S itself
    rows, signs = _core._srht_rows(n, m, 3), _core._srht_signs(n, 3)
    assert np.all(np.diff(rows) > 0) and rows.min() >= 0 and rows.max() < 128  # distinct rows of N = 128
    assert set(np.unique(signs)) <= {-1, 1}
    np.testing.assert_array_equal(s * np.sqrt(m), hadamard_entry_signs(rows, n) * signs)  # +-1 entries, exactly
    # a sign diagonal: every column of S sqrt(m) is +- the same column of H[rows]
    ratio = s * np.sqrt(m) / hadamard_entry_signs(rows, n)
    assert np.all(ratio == ratio[0:1])


def test_srht_signs_are_rademacher_not_gaussian():
    """The notes' guardrail: with u = (e1 + e2)/sqrt(2), r = (e1 - e2)/sqrt(2) a Rademacher D gives u^T S^T S r = 0
    exactly for every seed (a Gaussian diagonal would give O(1) with constant probability)."""
    n = 1024
    u = np.zeros(n)
    u[:2] = 1.0
    r = np.zeros(n)
    r[0], r[1] = 1.0, -1.0
    for seed in range(20):
        su, sr = simkern.sketch(u, 64, seed=seed), simkern.sketch(r, 64, seed=seed)
        assert su @ sr == 0.0


def test_srht_rows_are_uniform_without_replacement():
    n, m, trials = 24, 6, 4000  # N = 32
    counts = np.zeros(32)
    for seed in range(trials):
        rows = _core._srht_rows(n, m, seed)
        assert len(np.unique(rows)) == m
        counts[rows] += 1
    expected = trials * m / 32
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 70  # 31 degrees of freedom: P(chi2 > 70) < 1e-4
    signs = np.concatenate([_core._srht_signs(1000, seed) for seed in range(20)])
    assert abs(signs.mean()) < 4 / np.sqrt(signs.size)


def test_sparse_kinds_structure():
    n, m = 300, 32
    s = simkern.sketch(np.eye(n), m, kind="countsketch", seed=1)
    assert np.all((s != 0).sum(axis=0) == 1) and set(np.unique(s)) == {-1.0, 0.0, 1.0}
    nnz = 4
    s = simkern.sketch(np.eye(n), m, kind="sparse_sign", seed=1, nnz_per_column=nnz)
    assert np.all((s != 0).sum(axis=0) == nnz)
    np.testing.assert_allclose(np.abs(s[s != 0]), 1 / np.sqrt(nnz))
    for t in range(nnz):  # one nonzero in each block of m / nnz rows
        assert np.all((s[t * m // nnz:(t + 1) * m // nnz] != 0).sum(axis=0) == 1)


@pytest.mark.parametrize("kind", simkern.SKETCH_KINDS)
def test_norm_preserved_in_expectation(kind):
    x = np.random.default_rng(0).standard_normal(500)
    ratios = np.array([np.sum(simkern.sketch(x, 50, kind=kind, seed=s) ** 2) for s in range(400)]) / np.sum(x * x)
    # E ||S x||^2 = ||x||^2; the ratio's spread is about sqrt(2/m)
    assert abs(ratios.mean() - 1.0) < 4 * ratios.std() / np.sqrt(ratios.size)
    assert 0.05 < ratios.std() < 0.5


def test_determinism_and_seeds():
    a = np.random.default_rng(2).standard_normal((1000, 5))
    for kind in simkern.SKETCH_KINDS:
        one = simkern.sketch(a, 64, kind=kind, seed=9)
        assert one.tobytes() == simkern.sketch(a, 64, kind=kind, seed=9).tobytes()
        assert not np.array_equal(one, simkern.sketch(a, 64, kind=kind, seed=10))


def test_strided_inputs_are_read_in_place():
    base = np.random.default_rng(4).standard_normal((600, 20))
    contiguous = np.ascontiguousarray(base[::2, 3:13])
    for view in [base[::2, 3:13], np.asfortranarray(contiguous), contiguous[::-1][::-1], base.T.T[::2, 3:13]]:
        for kind in simkern.SKETCH_KINDS:
            want = simkern.sketch(contiguous, 40, kind=kind, seed=1)
            assert simkern.sketch(view, 40, kind=kind, seed=1).tobytes() == want.tobytes()
    col = base[:, 2]  # a strided 1-D vector
    assert simkern.sketch(col, 30).tobytes() == simkern.sketch(np.ascontiguousarray(col), 30).tobytes()


def test_vector_and_float32():
    x = np.random.default_rng(6).standard_normal(257)
    y = simkern.sketch(x, 33)
    assert y.shape == (33,)
    np.testing.assert_array_equal(y, simkern.sketch(x[:, None], 33)[:, 0])
    y32 = simkern.sketch(x.astype(np.float32), 33)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y, atol=1e-4)


def test_bad_inputs():
    a = np.ones((10, 3))
    with pytest.raises(TypeError, match="a must be a numpy.ndarray"):
        simkern.sketch([[1.0]], 1)
    with pytest.raises(TypeError, match="float32 or float64"):
        simkern.sketch(np.ones((10, 3), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        simkern.sketch(np.ones((2, 2, 2)), 1)
    with pytest.raises(ValueError, match="must not be empty"):
        simkern.sketch(np.ones((0, 3)), 1)
    with pytest.raises(ValueError, match="must not be empty"):
        simkern.sketch(np.ones((3, 0)), 1)
    with pytest.raises(ValueError, match="m must be >= 1"):
        simkern.sketch(a, 0)
    with pytest.raises(TypeError, match="m must be an int"):
        simkern.sketch(a, 2.0)
    with pytest.raises(ValueError, match="m must be <= 16"):
        simkern.sketch(a, 17)
    assert simkern.sketch(a, 17, kind="gaussian").shape == (17, 3)  # only srht samples distinct rows
    with pytest.raises(ValueError, match="kind must be one of"):
        simkern.sketch(a, 2, kind="fjlt")
    with pytest.raises(ValueError, match="nnz_per_column must be <= m"):
        simkern.sketch(a, 2, kind="sparse_sign", nnz_per_column=3)
    with pytest.raises(ValueError, match="seed must be in"):
        simkern.sketch(a, 2, seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        simkern.sketch(a, 2, seed="1")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        simkern.sketch(a, 2, threads=0)
    for kind in simkern.SKETCH_KINDS:
        for bad in (np.nan, np.inf, -np.inf):
            b = a.copy()
            b[7, 1] = bad
            with pytest.raises(ValueError, match=r"a contains NaN or inf \(row 7\)"):
                simkern.sketch(b, 8, kind=kind)
    with pytest.raises(ValueError, match="overflowed float32"):
        simkern.sketch(np.full((64, 2), 3e38, dtype=np.float32), 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_misaligned_views_give_the_aligned_result(aligned_core, misaligned, dtype):
    """np.frombuffer(b"\\0" + data, offset=1)-style views (UBSan: misaligned loads in sketch_driver.cpp) are copied
    before C++ reads them; aligned arrays of any strides are still read in place. Same result either way."""
    a = np.random.default_rng(8).standard_normal((300, 7)).astype(dtype)
    for kind in simkern.SKETCH_KINDS:
        want = simkern.sketch(a, 40, kind=kind, seed=2)
        assert simkern.sketch(misaligned(a), 40, kind=kind, seed=2).tobytes() == want.tobytes()
        strided = misaligned(np.asfortranarray(a).T).T  # misaligned and Fortran-ordered
        assert simkern.sketch(strided, 40, kind=kind, seed=2).tobytes() == want.tobytes()
        col = a[:, 3]
        assert simkern.sketch(misaligned(col), 40, kind=kind, seed=2).tobytes() == \
            simkern.sketch(col, 40, kind=kind, seed=2).tobytes()
    assert "_sketch_f32" in aligned_core or "_sketch_f64" in aligned_core
