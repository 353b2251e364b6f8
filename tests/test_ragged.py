"""Ragged: zero-copy views, constructors and offset validation."""

from __future__ import annotations

import pickle

import ml_dtypes
import numpy as np
import pytest
import simkern
from simkern import Ragged


def _sample():
    tokens = np.arange(30, dtype=np.float32).reshape(10, 3)
    return Ragged(tokens, np.array([0, 2, 2, 7, 10]))


def test_views_are_zero_copy():
    r = _sample()
    assert len(r) == 4 and r.dim == 3 and r.total_tokens == 10 and r.dtype == np.float32
    np.testing.assert_array_equal(r.lengths, [2, 0, 5, 3])
    assert r.offsets.dtype == np.int64
    assert np.shares_memory(r[2], r.tokens) and r[2].shape == (5, 3)
    assert r[1].shape == (0, 3)
    np.testing.assert_array_equal(r[-1], r.tokens[7:])
    r.tokens[0, 0] = 99.0  # writes show through: no copy was made
    assert r[0][0, 0] == 99.0


def test_int64_offsets_are_kept_without_copy():
    tokens = np.zeros((4, 2), np.float32)
    offsets = np.array([0, 1, 4], dtype=np.int64)
    r = Ragged(tokens, offsets)
    assert r.offsets is offsets or np.shares_memory(r.offsets, offsets)
    assert r.tokens is tokens


def test_slices_and_iteration():
    r = _sample()
    s = r[1:3]
    assert len(s) == 2
    np.testing.assert_array_equal(s.offsets, [0, 0, 5])
    assert np.shares_memory(s.tokens, r.tokens)
    assert [x.shape[0] for x in r] == [2, 0, 5, 3]
    with pytest.raises(ValueError, match="step 1"):
        r[::2]
    with pytest.raises(IndexError, match="out of range"):
        r[4]
    with pytest.raises(TypeError, match="integers or slices"):
        r[1.0]


def test_from_list_and_from_padded_round_trip():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, 5)).astype(np.float32) for n in (3, 0, 4)]
    r = Ragged.from_list(arrays)
    for a, b in zip(arrays, r):
        np.testing.assert_array_equal(a, b)
    padded = np.zeros((3, 4, 5), np.float32)
    for i, a in enumerate(arrays):
        padded[i, : len(a)] = a
    p = Ragged.from_padded(padded, [3, 0, 4])
    np.testing.assert_array_equal(p.tokens, r.tokens)
    np.testing.assert_array_equal(p.offsets, r.offsets)
    empty = Ragged.from_list([], dim=7, dtype=ml_dtypes.bfloat16)
    assert len(empty) == 0 and empty.dim == 7 and empty.dtype == ml_dtypes.bfloat16


def test_pickle_and_repr():
    r = _sample()
    r2 = pickle.loads(pickle.dumps(r))
    np.testing.assert_array_equal(r2.tokens, r.tokens)
    np.testing.assert_array_equal(r2.offsets, r.offsets)
    assert repr(r) == "Ragged(n=4, total_tokens=10, dim=3, dtype=float32)"


@pytest.mark.parametrize(
    "offsets, message",
    [
        ([1, 10], r"offsets\[0\] must be 0"),
        ([0, 5, 3, 10], r"non-decreasing, but offsets\[2\] = 3 < 5"),
        ([0, 9], r"offsets\[-1\] must equal the number of token rows \(10\)"),
        ([], "offsets must be 1-D"),
        ([[0, 10]], "offsets must be 1-D"),
    ],
)
def test_bad_offsets(offsets, message):
    with pytest.raises(ValueError, match=message):
        Ragged(np.zeros((10, 3), np.float32), np.array(offsets, dtype=np.int64))


def test_bad_tokens_and_types():
    with pytest.raises(TypeError, match="tokens must be a numpy.ndarray"):
        Ragged([[1.0]], [0, 1])
    with pytest.raises(ValueError, match="tokens must be 2-D"):
        Ragged(np.zeros(3, np.float32), [0, 3])
    with pytest.raises(ValueError, match="C-contiguous"):
        Ragged(np.zeros((4, 3), np.float32)[::2], [0, 2])
    with pytest.raises(TypeError, match="offsets must be an integer array"):
        Ragged(np.zeros((2, 3), np.float32), np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match="needs dim="):
        Ragged.from_list([])
    with pytest.raises(TypeError, match=r"arrays\[1\] has dtype float64"):
        Ragged.from_list([np.zeros((1, 2), np.float32), np.zeros((1, 2))])
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 4\]"):
        Ragged.from_padded(np.zeros((2, 4, 3), np.float32), [1, 5])
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        Ragged.from_padded(np.zeros((2, 4, 3), np.float32), [1])


def test_offsets_checked_again_in_the_kernel_binding():
    # Bypass the Python checks by corrupting a Ragged's offsets in place: the binding still refuses them.
    r = _sample()
    r.offsets[2] = 50
    with pytest.raises(ValueError, match="docs.offsets must be non-decreasing"):
        simkern.maxsim(np.ones((1, 3), np.float32), r)
