"""simkern.compat.pylate against PyLate 1.6's formulas transcribed in float64 NumPy (and against PyLate itself when
it is importable): colbert_scores, colbert_scores_pairwise, colbert_kd_scores and rerank, masked and unmasked, in
both mask modes, NumPy and (when installed) torch inputs; argument errors."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import simkern.compat.pylate as shim
from hypothesis import given
from hypothesis import strategies as st
from strategies import VALUE_KINDS, make_tokens

try:
    import torch
except ImportError:
    torch = None
try:
    pylate_scores = importlib.import_module("pylate.scores")
    pylate_rank = importlib.import_module("pylate.rank")
except ImportError:
    pylate_scores = pylate_rank = None

LQ = st.sampled_from([1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33]) | st.integers(1, 40)
LD = st.sampled_from([0, 1, 2, 5, 6, 7, 11, 12, 13, 15, 16, 17, 31, 32, 33, 63, 64, 65]) | st.integers(0, 70)
DIM = st.sampled_from([1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 130]) | st.integers(1, 130)
MASKS = ["none", "padding", "random", "weights"]
MODES = ["multiply", "remove"]


# -- PyLate 1.6.0's formulas in float64 NumPy ------------------------------------------------------------------
# pylate/scores/colbert.py, colbert_scores (lines 189-201), the torch path:
#     scores = torch.einsum("ash,bth->abst", queries_embeddings, documents_embeddings)
#     if queries_mask is not None: scores = scores * queries_mask.unsqueeze(1).unsqueeze(3)
#     if documents_mask is not None: scores = scores * documents_mask.unsqueeze(0).unsqueeze(2)
#     scores = scores.max(axis=-1).values.sum(axis=-1)
# colbert_kd_scores (lines 376-389): the same with einsum "ash,abth->abst" and documents_mask.unsqueeze(2).
# colbert_scores_pairwise (lines 266-282): per pair, einsum("sh,th->st", q, d).max(axis=-1).values.sum().
# pylate/rank/rank.py, rerank (lines 114-155): per query, its documents padded with zeros by pad_sequence, scored
# by colbert_scores(query.unsqueeze(0), padded)[0] without masks, sorted by torch.sort(descending=True).
# Where torch's max runs over an empty dimension (no document token) PyLate raises; the shim's documented value
# is -inf (and 0 for a query with no tokens), which _max_sum gives.

def _max_sum(s):
    """s (..., Lq, Ld) -> (...): sum over query tokens of the max over doc tokens (an empty max: -inf)."""
    if s.shape[-1] == 0:
        return np.where(s.shape[-2] > 0, -np.inf, 0.0) * np.ones(s.shape[:-2])
    return s.max(axis=-1).sum(axis=-1)


def pylate_colbert(q, d, qm=None, dm=None):
    s = np.einsum("ash,bth->abst", np.asarray(q, np.float64), np.asarray(d, np.float64))
    if qm is not None:
        s = s * np.asarray(qm, np.float64)[:, None, :, None]
    if dm is not None:
        s = s * np.asarray(dm, np.float64)[None, :, None, :]
    return _max_sum(s)


def pylate_kd(q, d, qm=None, dm=None):
    s = np.einsum("ash,abth->abst", np.asarray(q, np.float64), np.asarray(d, np.float64))
    if qm is not None:
        s = s * np.asarray(qm, np.float64)[:, None, :, None]
    if dm is not None:
        s = s * np.asarray(dm, np.float64)[:, :, None, :]
    return _max_sum(s)


def pylate_pairwise(qs, ds):
    return np.array([_max_sum(np.asarray(q, np.float64) @ np.asarray(d, np.float64).T) for q, d in zip(qs, ds)])


def pylate_rerank_scores(q, docs):
    """The scores rerank sorts: the documents zero-padded to the longest, no mask."""
    lmax = max((len(d) for d in docs), default=0)
    padded = np.zeros((len(docs), lmax, q.shape[1]))
    for i, d in enumerate(docs):
        padded[i, :len(d)] = d
    return pylate_colbert(q[None], padded)[0]


# -- simkern's stricter semantics ("remove"): masked tokens removed -------------------------------------------

def removed_scores(q, d, qm, dm):
    """Masked tokens removed; an empty doc scores -inf against a query with tokens, an empty query 0."""
    out = np.zeros((len(q), len(d)))
    for a in range(len(q)):
        qa = np.asarray(q[a], np.float64)[np.ones(q.shape[1], bool) if qm is None else qm[a] != 0]
        for b in range(len(d)):
            db = np.asarray(d[b], np.float64)[np.ones(d.shape[1], bool) if dm is None else dm[b] != 0]
            out[a, b] = _max_sum(qa @ db.T)
    return out


def tolerance(formula, q, d, qm, dm):
    """Float32 rounding bound per score: 2 (h + Lq + 4) 2^-24 times the formula on absolute values (as
    reference.maxsim_tolerance; the masks' absolute values cover the weighted masks' extra roundings)."""
    absolute = [None if m is None else np.abs(np.asarray(m, np.float64)) for m in (qm, dm)]
    mag = formula(np.abs(q), np.abs(d), *absolute)
    rel = 2.0 * (q.shape[-1] + q.shape[1] + 4) * 2.0**-24
    return rel * np.where(np.isfinite(mag), mag, 0.0) + 1e-30


def assert_scores(got, want, tol):
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    err = np.abs(got[finite] - want[finite])
    assert (err <= np.broadcast_to(tol, want.shape)[finite]).all(), (err.max(), got, want)


# -- inputs --------------------------------------------------------------------------------------------------

def make_mask(rng, shape, kind, dtype):
    """A mask of one kind: padding (a prefix per row), random, or weights (0, 1 and other values), with whole rows
    masked or kept now and then."""
    if kind == "none" or 0 in shape[:-1]:
        return None
    if kind == "padding":
        lengths = rng.integers(0, shape[-1] + 1, shape[:-1])
        m = np.arange(shape[-1]) < lengths[..., None]
    else:
        m = rng.random(shape) < rng.uniform(0.2, 0.9)
    rows = m.reshape(int(np.prod(shape[:-1])), shape[-1])
    for r in rows:
        pick = rng.random()
        if pick < 0.15:
            r[:] = False  # every token masked
        elif pick < 0.3:
            r[:] = True
    if kind == "weights":
        w = rng.choice(np.array([0.5, 2.0, -1.0, 0.25, 3.0]), shape)
        return np.where(m, np.where(rng.random(shape) < 0.5, w, 1.0), 0.0).astype(dtype)
    return m.astype(dtype)


@st.composite
def padded_case(draw, kd=False):
    """(q (a, Lq, h), d (b, Ld, h) or (a, b, Ld, h), qm, dm): token values of every kind (the "negative" kind
    makes every similarity negative, so PyLate's masked zeros win the max)."""
    a = draw(st.integers(0, 3))
    b = draw(st.integers(0, 4))
    lq, ld, dim = draw(LQ), draw(LD), draw(DIM)
    kind = draw(st.sampled_from(VALUE_KINDS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    q = make_tokens(rng, a * lq, dim, kind).reshape(a, lq, dim)
    if kind == "negative":
        q = -q
    dshape = (a, b, ld) if kd else (b, ld)
    d = make_tokens(rng, int(np.prod(dshape)), dim, kind).reshape(*dshape, dim)
    masks = draw(st.sampled_from(MASKS)), draw(st.sampled_from(MASKS))
    dtypes = draw(st.sampled_from([np.bool_, np.int64, np.float32])), draw(st.sampled_from([np.bool_, np.float32]))
    qm = make_mask(rng, (a, lq), masks[0], dtypes[0] if masks[0] != "weights" else np.float32)
    dm = make_mask(rng, dshape, masks[1], dtypes[1] if masks[1] != "weights" else np.float32)
    return q, d, qm, dm


def binary(m):
    return m is None or bool(np.isin(m, (0, 1)).all())


@pytest.fixture(scope="module", params=["numpy", "torch"])
def lib(request):
    """How the inputs are passed: NumPy arrays, or CPU torch tensors (skipped without torch)."""
    if request.param == "torch":
        pytest.importorskip("torch")
    return request.param


def passed(x, lib):
    if x is None or lib == "numpy":
        return x
    return torch.from_numpy(np.ascontiguousarray(x))


def result(out, lib):
    if lib == "torch":
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device.type == "cpu"
        return out.numpy()
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    return out


# -- the scores ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@given(case=padded_case())
def test_colbert_scores_match_the_formula(lib, mode, case):
    q, d, qm, dm = case
    args = [passed(x, lib) for x in (q, d, qm, dm)]
    if mode == "remove" and not (binary(qm) and binary(dm)):
        with pytest.raises(ValueError, match="only 0 and 1 with mask_mode='remove'"):
            shim.colbert_scores(*args, mask_mode=mode)
        return
    got = result(shim.colbert_scores(*args, mask_mode=mode, threads=1), lib)
    if mode == "multiply":
        want, tol = pylate_colbert(q, d, qm, dm), tolerance(pylate_colbert, q, d, qm, dm)
    else:
        want, tol = removed_scores(q, d, qm, dm), tolerance(removed_scores, q, d, qm, dm)
    assert_scores(got, want, tol)
    if mode == "multiply" and pylate_scores is not None and d.shape[1] > 0:
        theirs = pylate_scores.colbert_scores(*[passed(x, "torch") for x in (q, d, qm, dm)], backend="torch")
        assert_scores(got, theirs.double().numpy(), 2 * tol)


@pytest.mark.parametrize("mode", MODES)
@given(case=padded_case(kd=True))
def test_colbert_kd_scores_match_the_formula(lib, mode, case):
    q, d, qm, dm = case
    args = [passed(x, lib) for x in (q, d, qm, dm)]
    if mode == "remove" and not (binary(qm) and binary(dm)):
        with pytest.raises(ValueError, match="only 0 and 1"):
            shim.colbert_kd_scores(*args, mask_mode=mode)
        return
    got = result(shim.colbert_kd_scores(*args, mask_mode=mode, threads=1), lib)
    if mode == "multiply":
        want, tol = pylate_kd(q, d, qm, dm), tolerance(pylate_kd, q, d, qm, dm)
    else:
        def formula(q, d, qm, dm):
            return np.array([removed_scores(q[a:a + 1], d[a], None if qm is None else qm[a:a + 1], None if dm is None
                                            else dm[a])[0] for a in range(len(q))]).reshape(d.shape[:2])
        want, tol = formula(q, d, qm, dm), tolerance(formula, q, d, qm, dm)
    assert_scores(got, want, tol)
    if mode == "multiply" and pylate_scores is not None and d.shape[2] > 0:
        theirs = pylate_scores.colbert_kd_scores(*[passed(x, "torch") for x in (q, d, qm, dm)], backend="torch")
        assert_scores(got, theirs.double().numpy(), 2 * tol)


@given(n=st.integers(1, 6), dim=DIM, kind=st.sampled_from(VALUE_KINDS), padded=st.booleans(),
       lengths=st.lists(st.tuples(LQ | st.just(0), LD), min_size=6, max_size=6), seed=st.integers(0, 2**32 - 1))
def test_colbert_scores_pairwise_match_the_formula(lib, n, dim, kind, padded, lengths, seed):
    rng = np.random.default_rng(seed)
    sign = -1 if kind == "negative" else 1
    lengths = [lengths[0]] * n if padded else lengths[:n]  # padded: 3-D arrays, every row scored as in PyLate
    qs = [sign * make_tokens(rng, lq, dim, kind) for lq, _ in lengths]
    ds = [make_tokens(rng, ld, dim, kind) for _, ld in lengths]
    if padded:
        args = (passed(np.stack(qs), lib), passed(np.stack(ds), lib))
    else:
        args = ([passed(x, lib) for x in qs], [passed(x, lib) for x in ds])
    got = result(shim.colbert_scores_pairwise(*args, threads=1), lib)
    want = pylate_pairwise(qs, ds)
    lq = max(len(x) for x in qs)
    mag = pylate_pairwise([np.abs(x) for x in qs], [np.abs(x) for x in ds])
    tol = 2.0 * (dim + lq + 4) * 2.0**-24 * np.where(np.isfinite(mag), mag, 0.0) + 1e-30
    assert_scores(got, want, tol)
    if pylate_scores is not None and all(len(x) for x in ds):
        theirs = pylate_scores.colbert_scores_pairwise(*[[passed(x, "torch") for x in a] for a in (qs, ds)],
                                                       backend="torch")
        assert_scores(got, theirs.double().numpy(), 2 * tol)


@pytest.mark.parametrize("mode", MODES)
@given(n_queries=st.integers(0, 3), dim=DIM, kind=st.sampled_from(VALUE_KINDS),
       groups=st.lists(st.tuples(LQ, st.lists(LD, max_size=7)), min_size=3, max_size=3),
       seed=st.integers(0, 2**32 - 1))
def test_rerank_matches_the_formula(lib, mode, n_queries, dim, kind, groups, seed):
    rng = np.random.default_rng(seed)
    groups = groups[:n_queries]
    queries = [make_tokens(rng, lq, dim, kind) * (-1 if kind == "negative" else 1) for lq, _ in groups]
    docs = [[make_tokens(rng, ld, dim, kind) for ld in lds] for _, lds in groups]
    ids = [[f"d{i}-{j}" for j in range(len(lds))] for i, (_, lds) in enumerate(groups)]
    got = shim.rerank(ids, [passed(x, lib) for x in queries], [[passed(x, lib) for x in g] for g in docs],
                      mask_mode=mode, threads=1)
    assert isinstance(got, list) and len(got) == n_queries
    for i, (q, ranked) in enumerate(zip(queries, got)):
        if mode == "multiply":
            want = pylate_rerank_scores(q, docs[i])
            mag = pylate_rerank_scores(np.abs(q), [np.abs(x) for x in docs[i]])
        else:
            want = np.array([removed_scores(q[None], x[None], None, None)[0, 0] for x in docs[i]])
            mag = np.array([removed_scores(np.abs(q)[None], np.abs(x)[None], None, None)[0, 0] for x in docs[i]])
        tol = 2.0 * (dim + len(q) + 4) * 2.0**-24 * np.where(np.isfinite(mag), mag, 0.0) + 1e-30
        assert sorted(r["id"] for r in ranked) == sorted(ids[i]) and all(set(r) == {"id", "score"} for r in ranked)
        scores = [r["score"] for r in ranked]
        assert all(type(s) is float for s in scores) and scores == sorted(scores, reverse=True)
        position = {name: j for j, name in enumerate(ids[i])}
        assert_scores(np.array(scores), want[[position[r["id"]] for r in ranked]],
                      tol[[position[r["id"]] for r in ranked]])
        for a, b in zip(ranked, ranked[1:]):  # ties keep the input order
            assert a["score"] > b["score"] or position[a["id"]] < position[b["id"]]
    if mode == "multiply" and pylate_rank is not None and all(docs) and all(max(map(len, g)) for g in docs):
        theirs = pylate_rank.rerank(ids, [passed(x, "torch") for x in queries], docs)
        for ours, their in zip(got, theirs):
            np.testing.assert_allclose([r["score"] for r in ours], [r["score"] for r in their], rtol=1e-5,
                                       atol=1e-4)


# -- semantics, by example -------------------------------------------------------------------------------------

def test_pylate_docstring_examples():
    """The examples of PyLate 1.6's docstrings (colbert.py), with the results printed there."""
    q = np.array([[[1.], [0.], [0.], [0.]], [[0.], [2.], [0.], [0.]], [[0.], [0.], [3.], [0.]]], np.float32)
    qm = np.array([[1., 1., 1., 1.], [1., 1., 1., 1.], [1., 1., 0., 1.]], np.float32)
    d = np.array([[[10.], [0.], [1.]], [[0.], [100.], [10.]], [[1.], [0.], [1000.]]], np.float32)
    dm = np.array([[1., 1., 1.], [1., 0., 1.], [1., 1., 1.]], np.float32)
    np.testing.assert_array_equal(shim.colbert_scores(q, d, qm, dm), [[10, 10, 1000], [20, 20, 2000], [0, 0, 0]])
    d = np.array([[[10.], [0.], [1.]], [[0.], [100.], [1.]], [[1.], [0.], [1000.]]], np.float32)
    np.testing.assert_array_equal(shim.colbert_scores_pairwise(q, d), [10, 200, 3000])
    d = np.array([[[[10.], [0.], [1.]], [[20.], [0.], [1.]], [[30.], [0.], [1.]]],
                  [[[0.], [100.], [1.]], [[0.], [200.], [1.]], [[0.], [300.], [1.]]],
                  [[[1.], [0.], [1000.]], [[1.], [0.], [2000.]], [[10.], [0.], [3000.]]]], np.float32)
    dm = np.ones((3, 3, 3), np.float32)
    dm[0, 0, 0] = 0
    np.testing.assert_array_equal(shim.colbert_kd_scores(q, d, qm, dm), [[1, 20, 30], [200, 400, 600], [0, 0, 0]])


def test_masked_tokens_take_part_with_similarity_zero_unless_removed():
    q = np.ones((1, 2, 4), np.float32)
    d = -np.ones((3, 3, 4), np.float32)  # every similarity -4
    dm = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]], bool)
    np.testing.assert_array_equal(shim.colbert_scores(q, d, None, dm), [[-8, 0, 0]])
    np.testing.assert_array_equal(shim.colbert_scores(q, d, None, dm, mask_mode="remove"), [[-8, -8, -np.inf]])
    qm = np.array([[1, 0]])
    np.testing.assert_array_equal(shim.colbert_scores(q, d, qm, dm), [[-4, 0, 0]])
    np.testing.assert_array_equal(shim.colbert_scores(q, d, qm, dm, mask_mode="remove"), [[-4, -4, -np.inf]])
    np.testing.assert_array_equal(shim.colbert_scores(q, d, np.zeros((1, 2)), dm, mask_mode="remove"), [[0, 0, 0]])
    # rerank: the shorter document's zero padding wins over its negative similarities (PyLate's padding)
    ranked = shim.rerank([["long", "short"]], q[0], [[d[0], d[0, :1]]])
    assert ranked == [[{"id": "short", "score": 0.0}, {"id": "long", "score": -8.0}]]
    ranked = shim.rerank([["long", "short"]], q[0], [[d[0], d[0, :1]]], mask_mode="remove")
    assert ranked == [[{"id": "long", "score": -8.0}, {"id": "short", "score": -8.0}]]


def test_no_document_tokens_scores_minus_inf_and_no_query_tokens_zero():
    q = np.ones((2, 3, 4), np.float32)
    qm = np.array([[1, 1, 1], [0, 0, 0]])
    for mode in MODES:
        np.testing.assert_array_equal(shim.colbert_scores(q, np.ones((2, 0, 4), np.float32), mask_mode=mode),
                                      np.full((2, 2), -np.inf))
        np.testing.assert_array_equal(shim.colbert_kd_scores(q, np.ones((2, 5, 0, 4), np.float32), mask_mode=mode),
                                      np.full((2, 5), -np.inf))
        assert shim.colbert_scores(q[:, :0], np.ones((2, 3, 4), np.float32), mask_mode=mode).tolist() == [[0, 0]] * 2
    # a query with every token masked: PyLate's max over no document token is -inf too ("remove": no tokens, 0)
    np.testing.assert_array_equal(shim.colbert_scores(q, np.ones((1, 0, 4), np.float32), qm), [[-np.inf]] * 2)
    np.testing.assert_array_equal(shim.colbert_scores(q, np.ones((1, 0, 4), np.float32), qm, mask_mode="remove"),
                                  [[-np.inf], [0]])
    assert shim.colbert_scores_pairwise([q[0], q[0, :0]], [q[0, :0], q[0]]).tolist() == [-np.inf, 0]
    assert shim.colbert_scores_pairwise([], []).shape == (0,)
    assert shim.rerank([["a", "b"], []], [q[0], q[1]], [[q[0, :0], q[0, :0]], []]) == [
        [{"id": "a", "score": -np.inf}, {"id": "b", "score": -np.inf}], []]
    assert shim.rerank([], [], []) == []


def test_weighted_masks_scale_like_pylate():
    rng = np.random.default_rng(5)
    q = rng.standard_normal((2, 5, 8)).astype(np.float32)
    d = rng.standard_normal((3, 6, 8)).astype(np.float32)
    qm = rng.choice([0.0, 0.5, 1.0, -2.0], (2, 5))
    dm = rng.choice([0, 1, 3], (3, 6))
    assert_scores(shim.colbert_scores(q, d, qm, dm), pylate_colbert(q, d, qm, dm),
                  tolerance(pylate_colbert, q, d, qm, dm))
    with pytest.raises(ValueError, match="documents_mask must hold only 0 and 1 with mask_mode='remove'"):
        shim.colbert_scores(q, d, None, dm, mask_mode="remove")


def test_nan_is_refused_where_scored_and_ignored_where_masked():
    q = np.ones((1, 2, 4), np.float32)
    d = np.ones((2, 3, 4), np.float32)
    d[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        shim.colbert_scores(q, d)
    dm = np.array([[1, 1, 1], [1, 1, 0]])
    for mode in MODES:
        np.testing.assert_array_equal(shim.colbert_scores(q, d, None, dm, mask_mode=mode), [[8, 8]])
    with pytest.raises(ValueError, match="NaN or inf"):
        shim.colbert_scores(q, d, None, np.where(dm, 1.0, np.inf))


def test_rerank_call_shapes():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((2, 4, 8)).astype(np.float32)
    docs = rng.standard_normal((2, 3, 5, 8)).astype(np.float32)
    ids = np.array([[7, 8, 9], [1, 2, 3]])
    want = shim.rerank(ids.tolist(), list(q), [list(g) for g in docs])
    assert shim.rerank(ids, q, docs) == want  # 3-D queries, 4-D documents, an id array
    assert shim.rerank(ids[:1], q[0], docs[:1], device="cuda") == want[:1]  # one 2-D query; device ignored
    assert shim.rerank(ids, [x.tolist() for x in q], [[x.tolist() for x in g] for g in docs]) == want
    mixed = shim.rerank([[7, 8], [1]], [q[0], q[1, :, :4]], [[docs[0, 0], docs[0, 1]], [docs[1, 0, :, :4]]])
    assert mixed[0] == shim.rerank([[7, 8]], q[0], [[docs[0, 0], docs[0, 1]]])[0]
    assert mixed[1] == shim.rerank([[1]], q[1, :, :4], [[docs[1, 0, :, :4]]])[0]  # each query its own size
    ranked = shim.rerank([["x", "y", "z", "w"]], q[0], [[docs[0, 1], docs[0, 0], docs[0, 1], docs[0, 1]]])[0]
    order = [r["id"] for r in ranked]
    assert [i for i in order if i != "y"] == ["x", "z", "w"]  # equal scores: the input order


def test_list_inputs_are_stacked_like_convert_to_tensor():
    rng = np.random.default_rng(4)
    q = rng.standard_normal((2, 3, 8)).astype(np.float32)
    d = rng.standard_normal((4, 5, 8)).astype(np.float32)
    want = shim.colbert_scores(q, d)
    np.testing.assert_array_equal(shim.colbert_scores(list(q), [x.astype(np.float64) for x in d]), want)
    np.testing.assert_array_equal(shim.colbert_scores(q.tolist(), d), want)
    with pytest.raises(ValueError, match="same shape"):
        shim.colbert_scores(q, [d[0], d[1, :3]])


def test_torch_in_torch_out():
    pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    q = rng.standard_normal((2, 3, 8)).astype(np.float32)
    d = rng.standard_normal((4, 5, 8)).astype(np.float32)
    dm = torch.from_numpy(rng.random((4, 5)) < 0.5)
    want = shim.colbert_scores(q, d, None, dm.numpy())
    for args in ((torch.from_numpy(q), d), (q, torch.from_numpy(d)), (list(torch.from_numpy(q)), d)):
        got = shim.colbert_scores(*args, None, dm)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
        np.testing.assert_array_equal(got.numpy(), want)
    got = shim.colbert_scores_pairwise(list(torch.from_numpy(q)), list(torch.from_numpy(d[:2])))
    assert isinstance(got, torch.Tensor) and got.shape == (2,)
    assert isinstance(shim.colbert_kd_scores(torch.from_numpy(q), d[None, :2].repeat(2, 0)), torch.Tensor)
    with pytest.raises(TypeError, match="requires grad.*detach"):
        shim.colbert_scores(torch.from_numpy(q).requires_grad_(), d)
    with pytest.raises(TypeError, match="on meta.*cpu"):
        shim.colbert_scores(torch.empty(2, 3, 8, device="meta"), d)
    with pytest.raises(TypeError, match="float32"):
        shim.colbert_scores(torch.from_numpy(q).double(), d)


def test_misaligned_inputs_reach_the_kernels_aligned(aligned_core, misaligned):
    rng = np.random.default_rng(7)
    q = rng.standard_normal((2, 3, 8)).astype(np.float32)
    d = rng.standard_normal((4, 5, 8)).astype(np.float32)
    dm = rng.random((4, 5)) < 0.6
    for mode in MODES:
        np.testing.assert_array_equal(shim.colbert_scores(misaligned(q), misaligned(d), None, dm, mask_mode=mode),
                                      shim.colbert_scores(q, d, None, dm, mask_mode=mode))
    kd = np.stack([d, d[::-1]])
    np.testing.assert_array_equal(shim.colbert_kd_scores(misaligned(q), misaligned(kd)), shim.colbert_kd_scores(q, kd))
    np.testing.assert_array_equal(shim.colbert_scores_pairwise(misaligned(q), misaligned(d[:2])),
                                  shim.colbert_scores_pairwise(q, d[:2]))
    assert shim.rerank([[0, 1]], misaligned(q[0]), [[misaligned(d[0]), misaligned(d[1, :2])]]) == shim.rerank(
        [[0, 1]], q[0], [[d[0], d[1, :2]]])
    assert {"_maxsim_dense", "_maxsim_pairs"} <= set(aligned_core)


# -- argument errors --------------------------------------------------------------------------------------------

Q = np.ones((2, 3, 8), np.float32)
D = np.ones((4, 5, 8), np.float32)
BAD = {
    "2-D queries": (lambda: shim.colbert_scores(Q[0], D), ValueError, "queries_embeddings must be 3-D"),
    "4-D docs": (lambda: shim.colbert_scores(Q, D[None]), ValueError, "documents_embeddings must be 3-D"),
    "float64 queries": (lambda: shim.colbert_scores(Q.astype(np.float64), D), TypeError, "must be float32"),
    "float16 docs": (lambda: shim.colbert_scores(Q, D.astype(np.float16)), TypeError, "must be float32"),
    "dim mismatch": (lambda: shim.colbert_scores(Q, D[..., :4]), ValueError, "same embedding size, got 8 and 4"),
    "query mask shape": (lambda: shim.colbert_scores(Q, D, np.ones((2, 4))), ValueError,
                         r"queries_mask must have shape \(2, 3\)"),
    "doc mask shape": (lambda: shim.colbert_scores(Q, D, None, np.ones((5,))), ValueError,
                       r"documents_mask must have shape \(4, 5\)"),
    "string mask": (lambda: shim.colbert_scores(Q, D, None, np.full((4, 5), "1")), TypeError,
                    "bool, integer or float"),
    "mask mode": (lambda: shim.colbert_scores(Q, D, mask_mode="zero"), ValueError, "mask_mode must be"),
    "backend": (lambda: shim.colbert_scores(Q, D, backend="cuda"), ValueError, "backend must be one of"),
    "non-array": (lambda: shim.colbert_scores(Q, "docs"), TypeError, "documents_embeddings must be an array"),
    "kd 3-D docs": (lambda: shim.colbert_kd_scores(Q, D), ValueError, "documents_embeddings must be 4-D"),
    "kd groups": (lambda: shim.colbert_kd_scores(Q, D[None]), ValueError, "one group of documents per query"),
    "kd mask shape": (lambda: shim.colbert_kd_scores(Q, D[None].repeat(2, 0), None, np.ones((4, 5))), ValueError,
                      r"documents_mask must have shape \(2, 4, 5\)"),
    "pairwise lengths": (lambda: shim.colbert_scores_pairwise(Q, D), ValueError, "same length.*got 2 and 4"),
    "pairwise dim": (lambda: shim.colbert_scores_pairwise([Q[0]], [D[0, :, :4]]), ValueError,
                     r"documents_embeddings\[0\] has embedding size 4, expected 8"),
    "pairwise item": (lambda: shim.colbert_scores_pairwise([Q[0]], [D[0, 0]]), ValueError,
                      r"documents_embeddings\[0\] must be 2-D"),
    "rerank lengths": (lambda: shim.rerank([[1]], Q, [[D[0]], [D[1]]]), ValueError, "one entry per query"),
    "rerank ids": (lambda: shim.rerank([[1, 2], [3]], Q, [[D[0]], [D[1]]]), ValueError,
                   r"documents_ids\[0\] has 2 ids for 1 documents"),
    "rerank 2-D docs": (lambda: shim.rerank([[1]], Q[0], D[0, :1]), ValueError, r"documents_embeddings\[0\]\[0\] must "
                        "be 2-D"),
    "rerank dim": (lambda: shim.rerank([[1]], Q[0], [[D[0, :, :4]]]), ValueError, "embedding size 4, expected 8"),
    "rerank dtype": (lambda: shim.rerank([[1]], Q[0], [[D[0].astype(np.float64)]]), TypeError, "must be float32"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_arguments_raise_clear_errors(name):
    call, error, message = BAD[name]
    with pytest.raises(error, match=message):
        call()
