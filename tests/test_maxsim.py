"""MaxSim kernels against the float64 oracle, on every ISA level this CPU has (the `isa` fixture)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import simkern
from hypothesis import given
from hypothesis import strategies as st
from levels import KERNEL_LEVELS, kernel_level
from reference import maxsim_ref, maxsim_tolerance, topk_ref
from strategies import make_tokens, multivector_case

DOC_DTYPES = [np.float32, np.float16, ml_dtypes.bfloat16]


def _widen(docs, dtype):
    """Docs stored in `dtype` and their exact float64 values (what the kernels must score)."""
    stored = [d.astype(dtype) for d in docs]
    return stored, [s.astype(np.float64) for s in stored]


def _query_rounded(dtype) -> bool:
    return np.dtype(dtype) == np.dtype(ml_dtypes.bfloat16) and simkern.kernel_names()["maxsim"]["bfloat16"].endswith(
        "_dpbf16")


def _assert_scores_close(got, want, tol):
    assert got.dtype == np.float32
    assert got.shape == want.shape
    # -inf (empty doc) must be exact; everything else finite and within tolerance.
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    assert np.isfinite(got[finite]).all()
    err = np.abs(got[finite].astype(np.float64) - want[finite])
    assert (err <= tol[finite]).all(), f"max error {err.max()} vs tolerance {tol[finite][np.argmax(err - tol[finite])]}"


@pytest.mark.parametrize("dtype", DOC_DTYPES, ids=lambda t: np.dtype(t).name)
@given(case=multivector_case())
def test_maxsim_matches_reference(isa, dtype, case):
    queries, docs, dim, _ = case
    stored, exact = _widen(docs, dtype)
    want = maxsim_ref(queries, exact)
    q = simkern.Ragged.from_list(queries, dim=dim)
    d = simkern.Ragged.from_list(stored, dim=dim, dtype=dtype)
    got = simkern.maxsim(q, d)
    _assert_scores_close(got, want, maxsim_tolerance(queries, exact, dim, query_rounded_to_bf16=_query_rounded(dtype)))


@given(case=multivector_case(max_queries=5, max_docs=14), k=st.integers(1, 18), threads=st.integers(1, 3))
def test_topk_equals_sorted_dense_scores(isa, case, k, threads):
    queries, docs, dim, _ = case
    q = simkern.Ragged.from_list(queries, dim=dim)
    d = simkern.Ragged.from_list(docs, dim=dim)
    dense = simkern.maxsim(q, d, threads=threads)
    scores, ids = simkern.maxsim_topk(q, d, k, threads=threads)
    want_scores, want_ids = topk_ref(dense, k)
    # Same kernel, same per-doc arithmetic: scores are bit-identical and the order is fully determined.
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)
    assert ids.dtype == np.int64 and scores.dtype == np.float32


@given(case=multivector_case(max_queries=4, max_docs=14), k=st.integers(1, 10), data=st.data())
def test_topk_candidates_restrict_and_pad(isa, case, k, data):
    queries, docs, dim, _ = case
    n_docs = len(docs)
    q = simkern.Ragged.from_list(queries, dim=dim)
    d = simkern.Ragged.from_list(docs, dim=dim)
    dense = simkern.maxsim(q, d)
    lists = [np.array(data.draw(st.lists(st.integers(0, n_docs - 1), unique=True, max_size=n_docs))
                      if n_docs else [], dtype=np.int64) for _ in queries]
    scores, ids = simkern.maxsim_topk(q, d, k, candidates=lists)
    want_scores, want_ids = topk_ref(dense, k, lists)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)
    # The same candidates as a 2-D array padded with -1.
    width = max((len(c) for c in lists), default=0) + 1
    padded = np.full((len(queries), width), -1, dtype=np.int32)
    for row, c in enumerate(lists):
        padded[row, : len(c)] = c[::-1]
    scores2, ids2 = simkern.maxsim_topk(q, d, k, candidates=padded)
    np.testing.assert_array_equal(ids2, want_ids)
    np.testing.assert_array_equal(scores2, want_scores)


@given(case=multivector_case(max_queries=4, max_docs=10), data=st.data())
def test_pairs_equal_dense_entries(isa, case, data):
    queries, docs, dim, _ = case
    q = simkern.Ragged.from_list(queries, dim=dim)
    d = simkern.Ragged.from_list(docs, dim=dim)
    dense = simkern.maxsim(q, d)
    if not queries or not docs:
        pairs = []
    else:
        pairs = data.draw(st.lists(st.tuples(st.integers(0, len(queries) - 1), st.integers(0, len(docs) - 1)),
                                   max_size=40))
    qi = np.array([p[0] for p in pairs], dtype=np.int64)
    di = np.array([p[1] for p in pairs], dtype=np.int64)
    got = simkern.maxsim_pairs(q, d, qi, di, threads=2)
    np.testing.assert_array_equal(got, dense[qi, di])


@given(case=multivector_case(max_queries=6, max_docs=12))
def test_results_do_not_depend_on_threads_or_batching(isa, case):
    queries, docs, dim, _ = case
    q = simkern.Ragged.from_list(queries, dim=dim)
    d = simkern.Ragged.from_list(docs, dim=dim)
    one = simkern.maxsim(q, d, threads=1)
    for threads in (2, 3, 7):
        np.testing.assert_array_equal(simkern.maxsim(q, d, threads=threads), one)
    for i, query in enumerate(queries):  # a query scored alone equals its row of the batch
        np.testing.assert_array_equal(simkern.maxsim([query], d, threads=2)[0], one[i])


def test_many_queries_span_several_stacks(isa):
    # Enough queries that the driver splits them into several stacked jobs; each row equals the query alone.
    rng = np.random.default_rng(5)
    queries = [make_tokens(rng, int(n), 128, "normal") for n in rng.integers(1, 40, 60)]
    docs = [make_tokens(rng, int(n), 128, "normal") for n in rng.integers(0, 30, 25)]
    batch = simkern.maxsim(queries, docs)
    want = maxsim_ref(queries, docs)
    _assert_scores_close(batch, want, maxsim_tolerance(queries, docs, 128))
    for i in (0, 17, 59):
        np.testing.assert_array_equal(simkern.maxsim(queries[i], docs), batch[i : i + 1])


def test_isas_agree_within_tolerance():
    rng = np.random.default_rng(7)
    queries = [make_tokens(rng, n, 96, "normal") for n in (3, 32, 40)]
    docs = [make_tokens(rng, n, 96, "normal") for n in (1, 6, 7, 180)]
    results = {}
    for level in KERNEL_LEVELS:
        with kernel_level(level):
            results[level] = simkern.maxsim(queries, docs)
    tol = maxsim_tolerance(queries, docs, 96)
    for level, got in results.items():
        assert np.all(np.abs(got - results["scalar"]) <= 2 * tol), level


@pytest.mark.parametrize("dtype", DOC_DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("dim", [128, 96, 33])
def test_every_query_length_around_the_tiles(isa, dtype, dim):
    """One query per call, 1..64 tokens: every register tile shape, the half groups of 1..4 leftover tokens (AVX2),
    and the compile-time dim-128 path; docs of 1..30 and 70 tokens end tiles at every remainder. Negative
    similarities catch a padded lane (a zero dot) leaking into a max."""
    rng = np.random.default_rng(dim)
    docs = [make_tokens(rng, n, dim, "normal") for n in list(range(1, 31)) + [70]]
    docs[3] = -np.abs(docs[3])
    stored, exact = _widen(docs, dtype)
    d = simkern.Ragged.from_list(stored)
    for n in range(1, 65):
        q = make_tokens(rng, n, dim, "normal")
        if n % 5 == 0:
            q = np.abs(q)  # all-negative dots against docs[3]
        got = simkern.maxsim([q], d)
        want = maxsim_ref([q.astype(np.float64)], exact)
        tol = maxsim_tolerance([q], exact, dim, query_rounded_to_bf16=_query_rounded(dtype))
        _assert_scores_close(got, want, tol)


def test_fma_levels_are_bit_identical_for_every_query_length():
    """The FMA tiles of every level (avx2 with half groups, the avx512 level as dispatched, its own 512-bit tiles)
    compute each dot by the same FMA sequence: same bits, for any query length, alone or in a batch. bf16 docs:
    alone == batched at each level (the vdpbf16ps kernel differs from the others by design)."""
    levels = [lv for lv in KERNEL_LEVELS if lv != "scalar"]
    if len(levels) < 2:
        pytest.skip("fewer than two SIMD levels on this CPU")
    rng = np.random.default_rng(5)
    docs = simkern.Ragged.from_list([make_tokens(rng, n, 128, "normal") for n in (1, 5, 13, 70, 181)])
    queries = [make_tokens(rng, n, 128, "normal") for n in range(1, 41)]
    docs_bf16 = simkern.Ragged(docs.tokens.astype(ml_dtypes.bfloat16), docs.offsets)
    results = {}
    for level in levels:
        with kernel_level(level):
            alone = np.concatenate([simkern.maxsim([q], docs) for q in queries])
            batch = simkern.maxsim(queries, docs)
            np.testing.assert_array_equal(alone, batch, err_msg=level)
            results[level] = alone
            # bf16 docs (the vdpbf16ps kernel where the CPU has it, with its own half groups): alone == batched
            alone16 = np.concatenate([simkern.maxsim([q], docs_bf16) for q in queries])
            np.testing.assert_array_equal(alone16, simkern.maxsim(queries, docs_bf16), err_msg=f"{level} bf16")
    for level in levels[1:]:
        np.testing.assert_array_equal(results[level], results[levels[0]], err_msg=level)


# -- semantics ----------------------------------------------------------------------------------------------------

def test_empty_doc_scores_minus_inf_and_empty_query_scores_zero(isa):
    q = [np.ones((3, 8), np.float32), np.zeros((0, 8), np.float32)]
    d = [np.zeros((0, 8), np.float32), np.ones((2, 8), np.float32)]
    got = simkern.maxsim(q, d)
    np.testing.assert_array_equal(got, np.array([[-np.inf, 24.0], [0.0, 0.0]], np.float32))


def test_all_negative_similarities_are_not_clipped_by_padding(isa):
    # ColBERT's segmented max starts at 0 and PyLate multiplies masks by 0; both would give 0 here.
    q = -np.ones((5, 3), np.float32)  # 5 query tokens: padded lanes exist at every SIMD width
    d = np.ones((7, 3), np.float32)
    np.testing.assert_array_equal(simkern.maxsim(q, d), [[-15.0]])


def test_shapes_for_empty_collections(isa):
    q = simkern.Ragged.from_list([], dim=4)
    d = simkern.Ragged.from_list([np.ones((2, 4), np.float32)])
    assert simkern.maxsim(q, d).shape == (0, 1)
    assert simkern.maxsim(d, simkern.Ragged.from_list([], dim=4)).shape == (1, 0)
    scores, ids = simkern.maxsim_topk(d, simkern.Ragged.from_list([], dim=4), 3)
    np.testing.assert_array_equal(ids, [[-1, -1, -1]])
    assert np.isneginf(scores).all()


def test_k_larger_than_docs_pads(isa):
    rng = np.random.default_rng(1)
    q = make_tokens(rng, 4, 16, "normal")
    docs = [make_tokens(rng, 3, 16, "normal") for _ in range(3)]
    scores, ids = simkern.maxsim_topk(q, docs, 5)
    assert ids.shape == (1, 5)
    assert sorted(ids[0, :3].tolist()) == [0, 1, 2]
    np.testing.assert_array_equal(ids[0, 3:], [-1, -1])
    assert np.isneginf(scores[0, 3:]).all() and np.isfinite(scores[0, :3]).all()
    assert (np.diff(scores[0, :3]) <= 0).all()


def test_input_forms_agree(isa):
    rng = np.random.default_rng(2)
    docs3d = make_tokens(rng, 4 * 9, 24, "normal").reshape(4, 9, 24)
    q = make_tokens(rng, 5, 24, "normal")
    want = simkern.maxsim(simkern.Ragged(q, [0, 5]), simkern.Ragged(docs3d.reshape(-1, 24), np.arange(5) * 9))
    np.testing.assert_array_equal(simkern.maxsim(q, docs3d), want)
    np.testing.assert_array_equal(simkern.maxsim([q], list(docs3d)), want)
    np.testing.assert_array_equal(simkern.maxsim((q,), simkern.Ragged.from_padded(docs3d, [9, 9, 9, 9])), want)


def test_bfloat16_and_float16_docs_score_their_widened_values(isa):
    rng = np.random.default_rng(3)
    q = make_tokens(rng, 32, 128, "unit")
    docs = [make_tokens(rng, n, 128, "unit") for n in (1, 50, 180)]
    for dtype in (np.float16, ml_dtypes.bfloat16):
        stored, exact = _widen(docs, dtype)
        got = simkern.maxsim(q, stored)
        tol = maxsim_tolerance([q], exact, 128, query_rounded_to_bf16=_query_rounded(dtype))
        _assert_scores_close(got, maxsim_ref([q], exact), tol)


def test_nan_in_unscored_doc_is_not_an_error(isa):
    d = [np.ones((2, 4), np.float32), np.full((2, 4), np.nan, np.float32)]
    q = np.ones((1, 4), np.float32)
    scores, ids = simkern.maxsim_topk(q, d, 1, candidates=[np.array([0])])
    assert ids[0, 0] == 0 and scores[0, 0] == 4.0


# -- bad input ---------------------------------------------------------------------------------------------------

def _simple():
    rng = np.random.default_rng(4)
    return make_tokens(rng, 4, 8, "normal"), [make_tokens(rng, 3, 8, "normal") for _ in range(3)]


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_queries_must_be_float32(dtype):
    q, d = _simple()
    with pytest.raises(TypeError, match="queries must be float32"):
        simkern.maxsim(q.astype(dtype), d)


@pytest.mark.parametrize("dtype", [np.float64, np.int8, np.uint16])
def test_docs_dtype_is_checked(dtype):
    q, d = _simple()
    with pytest.raises(TypeError, match="docs must be float32, float16 or bfloat16"):
        simkern.maxsim(q, [x.astype(dtype) for x in d])


def test_dim_mismatch():
    q, d = _simple()
    with pytest.raises(ValueError, match=r"docs must have dim == 8 .* got dim 7"):
        simkern.maxsim(q, [x[:, :7].copy() for x in d])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", DOC_DTYPES, ids=lambda t: np.dtype(t).name)
def test_non_finite_docs_raise_naming_the_doc(isa, bad, dtype):
    q, d = _simple()
    d = [x.astype(dtype) for x in d]
    d[2][1, 5] = bad
    for call in (lambda: simkern.maxsim(q, d), lambda: simkern.maxsim_topk(q, d, 2),
                 lambda: simkern.maxsim_pairs(q, d, [0], [2])):
        with pytest.raises(ValueError, match=r"docs contain NaN or inf \(token row 7, doc 2\)"):
            call()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_queries_raise(isa, bad):
    q, d = _simple()
    q[3, 0] = bad
    with pytest.raises(ValueError, match=r"queries contain NaN or inf \(token row 3, query 0\)"):
        simkern.maxsim(q, d)


def test_overflow_is_reported(isa):
    q = np.full((2, 4), 1e30, np.float32)
    with pytest.raises(ValueError, match="overflow"):
        simkern.maxsim(q, [q.copy()])


@pytest.mark.parametrize("k, exc", [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError),
                                    ("3", TypeError)])
def test_bad_k(k, exc):
    q, d = _simple()
    with pytest.raises(exc, match="k must"):
        simkern.maxsim_topk(q, d, k)


@pytest.mark.parametrize("threads, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_threads(threads, exc):
    q, d = _simple()
    with pytest.raises(exc, match="threads must"):
        simkern.maxsim(q, d, threads=threads)


def test_bad_candidates():
    q, d = _simple()
    with pytest.raises(ValueError, match="valid ids are 0..2"):
        simkern.maxsim_topk(q, d, 1, candidates=[np.array([0, 3])])
    with pytest.raises(ValueError, match="valid ids are 0..2"):
        simkern.maxsim_topk(q, d, 1, candidates=np.array([[0, -2]]))
    with pytest.raises(ValueError, match="list doc id 1 twice"):
        simkern.maxsim_topk(q, d, 1, candidates=[np.array([1, 0, 1])])
    with pytest.raises(ValueError, match="one list per query"):
        simkern.maxsim_topk(q, d, 1, candidates=[np.array([0]), np.array([1])])
    with pytest.raises(ValueError, match="one row per query"):
        simkern.maxsim_topk(q, d, 1, candidates=np.zeros((2, 2), np.int64))
    with pytest.raises(TypeError, match="integer"):
        simkern.maxsim_topk(q, d, 1, candidates=np.zeros((1, 2), np.float32))
    with pytest.raises(TypeError, match="candidates must be"):
        simkern.maxsim_topk(q, d, 1, candidates=5)


def test_bad_pairs():
    q, d = _simple()
    with pytest.raises(ValueError, match="same length"):
        simkern.maxsim_pairs(q, d, [0, 0], [1])
    with pytest.raises(ValueError, match="query_ids contains 1"):
        simkern.maxsim_pairs(q, d, [1], [1])
    with pytest.raises(ValueError, match="doc_ids contains -1"):
        simkern.maxsim_pairs(q, d, [0], [-1])
    with pytest.raises(TypeError, match="doc_ids must hold integers"):
        simkern.maxsim_pairs(q, d, [0], [0.5])
    with pytest.raises(ValueError, match="query_ids must be 1-D"):
        simkern.maxsim_pairs(q, d, [[0]], [0])


def test_bad_multivector_arguments():
    q, d = _simple()
    with pytest.raises(TypeError, match="docs must be a Ragged"):
        simkern.maxsim(q, "docs")
    with pytest.raises(ValueError, match=r"docs: arrays\[1\] must be 2-D"):
        simkern.maxsim(q, [d[0], d[1][0]])
    with pytest.raises(ValueError, match="docs must be C-contiguous"):
        simkern.maxsim(q, np.asfortranarray(d[0]))
    with pytest.raises(ValueError, match="queries must be a Ragged, a list of 2-D arrays or a 2-D/3-D array"):
        simkern.maxsim(q[0], d)
    with pytest.raises(ValueError, match=r"docs: arrays\[1\] has dim 4, expected 8"):
        simkern.maxsim(q, [d[0], d[1][:, :4].copy()])


def test_out_argument_is_written_in_place(isa):
    q, d = _simple()
    want = simkern.maxsim(q, d)
    out = np.full((1, 3), 7.0, np.float32)
    assert simkern.maxsim(q, d, out=out) is out
    np.testing.assert_array_equal(out, want)
    pairs_out = np.empty(2, np.float32)
    assert simkern.maxsim_pairs(q, d, [0, 0], [2, 1], out=pairs_out) is pairs_out
    np.testing.assert_array_equal(pairs_out, want[0, [2, 1]])


def test_bad_out_and_dim_zero():
    q, d = _simple()
    with pytest.raises(ValueError, match=r"out must have shape \(1, 3\), got \(3, 1\)"):
        simkern.maxsim(q, d, out=np.empty((3, 1), np.float32))
    with pytest.raises(TypeError, match="out must be a float32"):
        simkern.maxsim(q, d, out=np.empty((1, 3), np.float64))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        simkern.maxsim(q, d, out=np.empty((1, 6), np.float32)[:, ::2])
    readonly = np.empty((1, 3), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        simkern.maxsim(q, d, out=readonly)
    with pytest.raises(ValueError, match=r"out must have shape \(2,\)"):
        simkern.maxsim_pairs(q, d, [0, 0], [2, 1], out=np.empty(3, np.float32))
    with pytest.raises(ValueError, match="dim >= 1"):
        simkern.maxsim(np.zeros((2, 0), np.float32), np.zeros((2, 0), np.float32))


def test_torch_cpu_tensors_are_viewed_not_copied():
    torch = pytest.importorskip("torch")
    from simkern.ragged import as_array

    q, d = _simple()
    want = simkern.maxsim(q, d)
    tq = torch.from_numpy(q)
    assert np.shares_memory(as_array(tq, "queries"), q)
    np.testing.assert_array_equal(simkern.maxsim(tq, [torch.from_numpy(x) for x in d]), want)
    np.testing.assert_array_equal(simkern.maxsim(tq, torch.from_numpy(np.stack(d))), want)
    with pytest.raises(TypeError, match="bfloat16"):
        simkern.maxsim(tq, torch.from_numpy(np.stack(d)).to(torch.bfloat16))


def test_misaligned_views_give_the_aligned_result(aligned_core, misaligned):
    """Tokens, offsets, ids and candidates at odd byte offsets are copied before the kernels read them (whole-element
    loads); out= at an odd offset is refused. Same scores as aligned inputs."""
    rng = np.random.default_rng(21)
    q = simkern.Ragged(rng.standard_normal((9, 16)).astype(np.float32), np.array([0, 4, 9]))
    d = simkern.Ragged(rng.standard_normal((20, 16)).astype(np.float32), np.array([0, 3, 3, 11, 20]))
    for dtype in (np.float32, np.float16):
        docs = simkern.Ragged(d.tokens.astype(dtype), d.offsets)
        bad_q = simkern.Ragged(misaligned(q.tokens), misaligned(q.offsets))
        bad_d = simkern.Ragged(misaligned(docs.tokens), misaligned(docs.offsets))
        np.testing.assert_array_equal(simkern.maxsim(bad_q, bad_d), simkern.maxsim(q, docs))
        np.testing.assert_array_equal(simkern.maxsim(misaligned(q.tokens[:4]), bad_d), simkern.maxsim(q[0], docs))
        qi, di = np.array([0, 1, 1]), np.array([3, 0, 2])
        np.testing.assert_array_equal(simkern.maxsim_pairs(bad_q, bad_d, misaligned(qi), misaligned(di)),
                                      simkern.maxsim_pairs(q, docs, qi, di))
        cand = np.array([[3, 0, -1], [2, 1, 0]])
        for got, want in zip(simkern.maxsim_topk(bad_q, bad_d, 2, candidates=misaligned(cand)),
                             simkern.maxsim_topk(q, docs, 2, candidates=cand)):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="out must be aligned"):
        simkern.maxsim(q, d, out=misaligned(np.zeros((2, 4), np.float32), writeable=True))
    assert {"_maxsim_dense", "_maxsim_pairs", "_maxsim_topk"} <= set(aligned_core)


def test_out_overlapping_the_inputs_is_refused():
    rng = np.random.default_rng(5)
    q = simkern.Ragged.from_list([rng.standard_normal((3, 8)).astype(np.float32)])
    buf = rng.standard_normal(64).astype(np.float32)
    docs = simkern.Ragged(buf.reshape(8, 8), np.array([0, 4, 8], np.int64))
    want = simkern.maxsim(q, simkern.Ragged(buf.reshape(8, 8).copy(), np.array([0, 4, 8], np.int64)))
    with pytest.raises(ValueError, match="out must not overlap"):
        simkern.maxsim(q, docs, out=buf[:2].reshape(1, 2))  # the doc tokens' own memory
    with pytest.raises(ValueError, match="out must not overlap"):
        simkern.maxsim_pairs(q, docs, [0, 0], [0, 1], out=buf[10:12])
    other = np.empty((1, 2), np.float32)
    np.testing.assert_array_equal(simkern.maxsim(q, docs, out=other), want)  # disjoint: fine


def _kernel_for(lengths, stacked=True, dtype=0):
    from simkern import _core

    return _core._maxsim_kernel_for(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), 128, dtype, stacked)


@pytest.mark.skipif("avx512" not in simkern.available_isas(), reason="no AVX-512 on this CPU")
def test_short_query_stacks_run_the_narrow_kernel_where_the_dispatcher_gave_one():
    """At the avx512 level on a CPU whose 512-bit FMAs are no faster (kernel_names() lists *_short_queries), a single
    short query runs the avx2 tiles, a 32-token one and a batch the avx512 tiles; elsewhere always the avx512 ones.
    (Both compute the same bits: test_fma_levels_are_bit_identical_for_every_query_length.)"""
    with simkern.max_isa("avx512"):
        names = simkern.kernel_names()["maxsim"]
        narrow = names.get("float32_short_queries")
        wide = names["float32"]
        expect_short = narrow or wide
        assert _kernel_for([8]) == expect_short and _kernel_for([18]) == expect_short
        assert _kernel_for([36], stacked=False) == expect_short  # 36 tokens: 5 avx2 groups (the last half)
        assert _kernel_for([32]) == wide and _kernel_for([48]) == wide
        assert _kernel_for([20] * 16) == wide  # a batch packs densely: full 16-lane groups
        assert _kernel_for([20] * 16, stacked=False) == expect_short  # candidate scoring: one query per stack
        if names.get("float16_short_queries"):
            assert _kernel_for([8], dtype=1) == names["float16_short_queries"]
        if names.get("bfloat16_short_queries"):  # one 16-lane vdpbf16ps group: its ymm twin
            assert _kernel_for([16], dtype=2) == names["bfloat16_short_queries"]
            assert _kernel_for([22], dtype=2) == names["bfloat16"]
    with simkern.max_isa("avx2"):
        assert _kernel_for([8]) == _kernel_for([32]) == "maxsim_f32_avx2"
