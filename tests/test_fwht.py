"""simkern.fwht against scipy.linalg.hadamard and the float64 reference on every ISA; determinism; bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import simkern
from hypothesis import given
from hypothesis import strategies as st
from levels import KERNEL_LEVELS, kernel_level
from reference import fwht_reference
from strategies import EDGE_DIMS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log_n", range(13))
def test_matches_hadamard_products(isa, log_n, dtype):
    n = 2**log_n
    rng = np.random.default_rng(log_n)
    h = scipy.linalg.hadamard(n).astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for shape in [(n,), (n, 1), (n, 3), (n, 17)]:
        x = rng.standard_normal(shape).astype(dtype)
        got = simkern.fwht(x)
        assert got.dtype == dtype and got.shape == x.shape
        want = h @ x.astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.sqrt(n) * max(1.0, np.abs(want).max()))


@given(log_n=st.integers(0, 11), width=st.sampled_from([1] + EDGE_DIMS[:12]), seed=st.integers(0, 2**31),
       f64=st.booleans(), normalize=st.booleans())
def test_against_float64_reference_and_identical_everywhere(log_n, width, seed, f64, normalize):
    n = 2**log_n
    dtype = np.float64 if f64 else np.float32
    x = np.random.default_rng(seed).standard_normal((n, width)).astype(dtype)
    want = fwht_reference(x) / (np.sqrt(n) if normalize else 1.0)
    results = []
    for level in KERNEL_LEVELS:
        with kernel_level(level):
            for threads in (1, 2, 3):
                results.append(simkern.fwht(x, normalize=normalize, threads=threads))
    tol = (1e-12 if f64 else 3e-6) * np.sqrt(n) * (1.0 if normalize else np.sqrt(n))
    np.testing.assert_allclose(results[0], want, rtol=0, atol=tol * max(1.0, np.abs(x).max()))
    for r in results[1:]:  # the same pass order per element on every ISA and thread count: bit-identical
        assert r.tobytes() == results[0].tobytes()


def test_axes_out_and_normalisation():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 16, 5))
    h = scipy.linalg.hadamard(16)
    np.testing.assert_allclose(simkern.fwht(x, axis=1), np.einsum("ij,ajb->aib", h, x), atol=1e-12)
    np.testing.assert_allclose(simkern.fwht(x, axis=-2), simkern.fwht(x, axis=1), atol=0)
    y = rng.standard_normal((4, 32)).astype(np.float32)
    np.testing.assert_allclose(simkern.fwht(y, axis=1), y @ scipy.linalg.hadamard(32).T, atol=1e-4)
    z = rng.standard_normal(256)
    back = simkern.fwht(simkern.fwht(z, normalize=True), normalize=True)  # orthonormal and its own inverse
    np.testing.assert_allclose(back, z, atol=1e-12)
    out = np.empty_like(x)
    assert simkern.fwht(x, axis=1, out=out) is out
    np.testing.assert_array_equal(out, simkern.fwht(x, axis=1))
    before = x.copy()
    simkern.fwht(x, axis=1)
    np.testing.assert_array_equal(x, before)  # the input is untouched without out=x
    w = rng.standard_normal((64, 3))
    want = simkern.fwht(w)
    assert simkern.fwht(w, out=w) is w  # in place
    np.testing.assert_array_equal(w, want)
    f = np.asfortranarray(rng.standard_normal((8, 6)))
    np.testing.assert_allclose(simkern.fwht(f), scipy.linalg.hadamard(8) @ f, atol=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match="power of two"):
        simkern.fwht(np.ones(12))
    with pytest.raises(ValueError, match="power of two"):
        simkern.fwht(np.ones((4, 6)), axis=1)
    with pytest.raises(TypeError, match="float32 or float64"):
        simkern.fwht(np.ones(8, np.int64))
    with pytest.raises(TypeError, match="float32 or float64"):
        simkern.fwht(np.ones(8, np.float16))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        simkern.fwht([1.0, 2.0])
    bad = np.ones(8)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        simkern.fwht(bad)
    with pytest.raises(ValueError, match="axis"):
        simkern.fwht(np.ones((8, 8)), axis=2)
    with pytest.raises(ValueError, match="out must be"):
        simkern.fwht(np.ones(8), out=np.ones(8, np.float32))
    with pytest.raises(ValueError, match="at least one dimension"):
        simkern.fwht(np.ones(()))
    assert simkern.fwht(np.ones((1, 0))).shape == (1, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_overflow_raises_instead_of_returning_inf(dtype):
    """fwht(3e38...) returned [inf, 0, nan, 0] silently: finite input whose transform overflows raises ValueError
    naming x, on every path (new array, out=, in place, another axis)."""
    big = np.finfo(dtype).max / 2
    x = np.full(4, big, dtype)
    with pytest.raises(ValueError, match=rf"transform of x overflowed {np.dtype(dtype).name}"):
        simkern.fwht(x)
    with pytest.raises(ValueError, match="overflowed"):
        simkern.fwht(x, normalize=True)  # the unnormalised sums overflow first
    with pytest.raises(ValueError, match="overflowed"):
        simkern.fwht(x.copy(), out=np.empty_like(x))
    with pytest.raises(ValueError, match="overflowed"):
        y = x.copy()
        simkern.fwht(y, out=y)
    with pytest.raises(ValueError, match="overflowed"):
        simkern.fwht(np.full((3, 8), big, dtype), axis=1)
    ok = np.array([big, -big, 0, 0], dtype)  # large but representable: no error
    np.testing.assert_array_equal(simkern.fwht(ok), np.array([0, 2 * big, 0, 2 * big], dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_misaligned_views_give_the_aligned_result(aligned_core, misaligned, dtype):
    """Views at an odd byte offset are never handed to the kernels (UBSan: misaligned loads); results equal the
    aligned input's, for a new array, out= a misaligned array (in place too) and another axis."""
    x = np.random.default_rng(5).standard_normal((16, 6)).astype(dtype)
    want = simkern.fwht(x)
    np.testing.assert_array_equal(simkern.fwht(misaligned(x)), want)
    np.testing.assert_array_equal(simkern.fwht(misaligned(x.T.copy()), axis=1), simkern.fwht(x.T.copy(), axis=1))
    out = misaligned(np.zeros_like(x), writeable=True)
    assert simkern.fwht(x, out=out) is out
    np.testing.assert_array_equal(out, want)
    inplace = misaligned(x, writeable=True)
    simkern.fwht(inplace, out=inplace, normalize=True)
    np.testing.assert_array_equal(inplace, simkern.fwht(x, normalize=True))
    assert any(name.startswith("_fwht") for name in aligned_core)
