"""simkern.compat.maxsim_cpu against a float64 NumPy reference, and against maxsim-cpu / fast-maxsim themselves
when installed (same inputs, scores equal to float32 rounding, the same exception types)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import simkern.compat.maxsim_cpu as shim
from hypothesis import given, settings
from hypothesis import strategies as st

EDGES = [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 128, 129]


def _ref(q, docs):
    out = []
    for d in docs:
        if len(d) == 0:
            out.append(-np.inf)
        else:
            out.append((q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).sum())
    return np.array(out)


def _peers(scores=False):
    """The installed peers. For scores only fast-maxsim: maxsim-cpu 0.1 returns wrong scores for some shapes (on
    this Zen 4 VM 24 of 150 shapes with Lq in 1..128, Ld in 1..180, dim in 8..128, e.g. Lq=64, Ld=64, dim=128; and
    any dim > 128), changing from one run to the next - the same calls in fast-maxsim 0.2 are right."""
    found = []
    for name in ("fast_maxsim",) if scores else ("maxsim_cpu", "fast_maxsim"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            pass
    return found


@settings(max_examples=40, deadline=None)
@given(lq=st.sampled_from(EDGES + [0]), ld=st.sampled_from(EDGES), dim=st.sampled_from(EDGES),
       n=st.integers(0, 9), seed=st.integers(0, 2**32 - 1))
def test_fixed_length_docs_match_the_reference_and_the_peers(lq, ld, dim, n, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((lq, dim)).astype(np.float32)
    d = rng.standard_normal((n, ld, dim)).astype(np.float32)
    got = shim.maxsim_scores(q, d)
    assert got.dtype == np.float32 and got.shape == (n,)
    np.testing.assert_allclose(got, _ref(q, d), rtol=1e-5, atol=1e-4)
    for peer in _peers(scores=True):
        np.testing.assert_allclose(got, peer.maxsim_scores(q, d), rtol=1e-5, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(lq=st.sampled_from(EDGES), lengths=st.lists(st.sampled_from([0] + EDGES), max_size=8),
       dim=st.sampled_from(EDGES), seed=st.integers(0, 2**32 - 1))
def test_variable_length_docs_match_the_reference_and_the_peers(lq, lengths, dim, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((lq, dim)).astype(np.float32)
    docs = [rng.standard_normal((n, dim)).astype(np.float32) for n in lengths]
    got = shim.maxsim_scores_variable(q, docs)
    assert got.dtype == np.float32 and got.shape == (len(docs),)
    np.testing.assert_allclose(got, _ref(q, docs), rtol=1e-5, atol=1e-4)
    for peer in _peers(scores=True):
        np.testing.assert_allclose(got, peer.maxsim_scores_variable(q, docs), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(shim.maxsim_scores_variable(q, tuple(docs)),
                                   peer.maxsim_scores_variable(q, tuple(docs)), rtol=1e-5, atol=1e-4)


def test_empty_rows_of_a_3d_array_score_minus_inf_instead_of_aborting():
    q = np.ones((3, 4), np.float32)
    assert shim.maxsim_scores(q, np.zeros((2, 0, 4), np.float32)).tolist() == [-np.inf, -np.inf]
    assert shim.maxsim_scores(np.zeros((0, 4), np.float32), np.ones((2, 3, 4), np.float32)).tolist() == [0, 0]


def test_nan_is_refused():
    q = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="NaN"):
        shim.maxsim_scores(q, np.full((1, 2, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        shim.maxsim_scores_variable(np.full((3, 4), np.inf, np.float32), [np.ones((2, 4), np.float32)])


BAD = {
    "f64 query": (lambda q, d: (q.astype(np.float64), d), TypeError, "type mismatch"),
    "f16 docs": (lambda q, d: (q, d.astype(np.float16)), TypeError, "type mismatch"),
    "non-contiguous docs": (lambda q, d: (q, d[:, ::2]), TypeError, "not contiguous"),
    "1-D query": (lambda q, d: (q[0], d), TypeError, "dimensionality mismatch"),
    "2-D docs": (lambda q, d: (q, d[0]), TypeError, "dimensionality mismatch"),
    "list query": (lambda q, d: (q.tolist(), d), TypeError, "cannot be converted"),
    "dim mismatch": (lambda q, d: (q[:, :4].copy(), d), ValueError, "Dimension mismatch: query dim 4 vs docs dim 8"),
}
BAD_VARIABLE = {
    "f64 doc": (lambda q, d: (q, [d[0].astype(np.float64)]), TypeError, "type mismatch"),
    "non-contiguous doc": (lambda q, d: (q, [d[0][::2]]), TypeError, "not contiguous"),
    "list doc": (lambda q, d: (q, [d[0].tolist()]), TypeError, "cannot be converted"),
    "dim mismatch": (lambda q, d: (q, [d[0], d[1][:, :4].copy()]), ValueError,
                     "Dimension mismatch at doc 1: query dim 8 vs doc dim 4"),
}


@pytest.mark.parametrize("variable", [False, True])
def test_bad_inputs_raise_what_maxsim_cpu_raises(variable):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    d = rng.standard_normal((3, 4, 8)).astype(np.float32)
    cases = BAD_VARIABLE if variable else BAD
    for _name, (make, error, message) in cases.items():
        args = make(q, d)
        for impl in [shim] + _peers():
            call = impl.maxsim_scores_variable if variable else impl.maxsim_scores
            with pytest.raises(error, match=message):
                call(*args)
