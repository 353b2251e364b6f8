"""simkern.compat.muvera against muvera-python 0.2.0 itself (when installed), and FDE.from_matrices (which it is
built on) against the float64 NumPy reference and the seeded FDE.

Tolerance against muvera-python: with the identity projection the encodings must be equal bit for bit (the same
float32 sums in the same order); with the AMS projection within 8 * (dim + tokens + terms per final bucket) *
2**-24 of the magnitudes (sums of absolute values that went into each output, tests/reference.py), since muvera
multiplies by the dense AMS matrix in BLAS's order. Partition ids must be equal exactly: the SimHash sketches of
generated tokens are kept away from zero by more than the float32 rounding of any summation order (``_clear_signs``),
so a sketch's sign does not depend on who computed it.
"""

from __future__ import annotations

import doctest
import importlib.metadata
import pickle
import re

import numpy as np
import pytest
import simkern
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference import fde_ref
from simkern.compat.muvera import Muvera
from strategies import VALUE_KINDS, make_tokens

DIMS = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 65, 128]
COUNTS = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 65]
SEEDS = st.sampled_from([0, 1, 42, 2**31 - 1, 2**32, 2**40, 2**63 + 5]) | st.integers(0, 2**64)


def _muvera():
    return pytest.importorskip("muvera")


def _clouds(seed: int, lengths: list[int], dim: int, kind: str) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    clouds = [make_tokens(rng, n, dim, kind) for n in lengths]
    if kind == "small_ints" and clouds and len(clouds[0]) > 1:
        clouds[0][1:] = clouds[0][0]  # repeated tokens: Hamming ties, and sums that cancel
    return clouds


def _clear_signs(clouds: list[np.ndarray], simhash: np.ndarray) -> bool:
    """Whether every sketch of every token is either exactly zero with zero products, or further from zero than
    2 * dim * 2**-24 * sum_i |x_i g_i| (over twice the error bound of a float32 sum in any order, fused or not)."""
    reps, dim, k = simhash.shape
    g = simhash.transpose(1, 0, 2).reshape(dim, reps * k).astype(np.float64)
    for x in clouds:
        x64 = x.astype(np.float64)
        exact, scale = x64 @ g, np.abs(x64) @ np.abs(g)
        if not ((scale == 0) | (np.abs(exact) > 2 * dim * 2.0**-24 * scale)).all():
            return False
    return True


def _muvera_config(draw) -> dict:
    ams = draw(st.booleans())
    return dict(
        num_repetitions=draw(st.integers(1, 4)), num_simhash_projections=draw(st.integers(0, 6)),
        dimension=draw(st.sampled_from(DIMS)), projection_type="ams_sketch" if ams else "identity",
        projection_dimension=draw(st.sampled_from([1, 3, 8, 16, 17])) if ams else draw(st.sampled_from([None, 5])),
        fill_empty_partitions=draw(st.booleans()),
        final_projection_dimension=draw(st.sampled_from([None, None, 0, -3, 1, 7, 64, 1000])),
        seed=draw(SEEDS))


@st.composite
def muvera_case(draw):
    cfg = _muvera_config(draw)
    lengths = draw(st.lists(st.sampled_from(COUNTS) | st.integers(0, 70), min_size=1, max_size=5))
    return cfg, lengths, draw(st.sampled_from(VALUE_KINDS)), draw(st.integers(0, 2**32 - 1))


def _tolerance(shim: Muvera, cloud: np.ndarray, document: bool) -> tuple[np.ndarray, np.ndarray]:
    """(float64 reference, absolute tolerance) of one encoding, from the shim's matrices."""
    fde = shim._encoder()
    cfg = fde.config
    want, mag = fde_ref(cloud, cfg, fde._plan.matrices(), document)
    inner = cfg["num_repetitions"] * 2 ** cfg["num_simhash_projections"] * (cfg["projection_dimension"] or cfg["dim"])
    terms = -(-inner // cfg["final_projection_dimension"]) if cfg["final_projection_dimension"] else 0
    return want, 8 * (cfg["dim"] + len(cloud) + terms) * 2.0**-24 * mag + 1e-30


# -- against muvera-python ------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(case=muvera_case())
def test_encodings_equal_muvera_python(isa, case):
    muvera = _muvera()
    cfg, lengths, kind, data_seed = case
    ours, theirs = Muvera(**cfg), muvera.Muvera(**cfg)
    clouds = _clouds(data_seed, lengths, cfg["dimension"], kind)
    sim = np.stack([muvera.helper.simhash_matrix_from_seed(cfg["dimension"], cfg["num_simhash_projections"],
                                                           cfg["seed"] + r) for r in range(cfg["num_repetitions"])])
    assume(_clear_signs(clouds, sim))
    identity = cfg["projection_type"] == "identity"
    for document, name in ((True, "encode_documents"), (False, "encode_queries")):
        got, want = getattr(ours, name)(clouds), getattr(theirs, name)(clouds)
        assert got.dtype == np.float32 and got.shape == want.shape == (len(clouds), theirs.output_dimension)
        singles = [getattr(ours, name)(c) for c in clouds]
        assert all(s.shape == (theirs.output_dimension,) for s in singles)
        np.testing.assert_array_equal(np.stack(singles), got)  # one call per cloud = the batch
        if identity:
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {cfg}")
            for cloud, single in zip(clouds[:2], singles):
                np.testing.assert_array_equal(single, getattr(theirs, name)(cloud), err_msg=f"{name} {cfg}")
        else:
            for i, cloud in enumerate(clouds):
                ref, tol = _tolerance(ours, cloud, document)
                assert (np.abs(got[i] - want[i]) <= tol).all(), (name, cfg, np.abs(got[i] - want[i]).max())
                assert (np.abs(got[i] - ref) <= tol).all(), (name, cfg)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 6), dim=st.sampled_from(DIMS), reps=st.integers(1, 3), seed=SEEDS,
       n=st.sampled_from(COUNTS[1:]), data_seed=st.integers(0, 2**32 - 1))
def test_partition_ids_equal_muveras(k, dim, reps, seed, n, data_seed):
    # One token per query with the identity projection: the one nonzero block of each repetition is the token's
    # partition; muvera's comes from its own helper on its own (BLAS) sketches.
    muvera = _muvera()
    x = np.random.default_rng(data_seed).standard_normal((n, dim)).astype(np.float32) + np.float32(5.0)  # no zeros
    sims = [muvera.helper.simhash_matrix_from_seed(dim, k, seed + r) for r in range(reps)]
    assume(_clear_signs([x], np.stack(sims)))
    shim = Muvera(num_repetitions=reps, num_simhash_projections=k, dimension=dim, seed=seed)
    blocks = shim.encode_queries(list(x[:, None, :])).reshape(n, reps, 2**k, dim)
    ours = np.argmax((blocks != 0).any(axis=3), axis=2)  # (n, reps)
    theirs = np.stack([muvera.helper.partition_indices_gray_batch(x @ g) for g in sims], axis=1)
    np.testing.assert_array_equal(ours, theirs.astype(np.int64))


@pytest.mark.parametrize("k", [3, 5])
def test_fill_follows_muveras_gray_decoding_not_the_reference(k):
    # Where the two fill rules pick different tokens, the shim must pick muvera's (the FDE default would not).
    muvera = _muvera()
    rng = np.random.default_rng(k)
    cfg = dict(num_repetitions=2, num_simhash_projections=k, dimension=8, seed=5)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    want = muvera.Muvera(**cfg).encode_documents(x)
    np.testing.assert_array_equal(Muvera(**cfg).encode_documents(x), want)
    args = Muvera(**cfg)._encoder()._matrix_args() | {"fill_target": "reference"}
    assert not np.array_equal(simkern.FDE.from_matrices(**args).encode_documents(x)[0], want)


def test_readme_and_docstring_examples_run_unchanged():
    muvera = _muvera()
    body = importlib.metadata.metadata("muvera-python").get_payload()  # the README
    readme = re.findall(r"```python\n(.*?)```", body, re.S)[0]
    docstring = "".join(e.source for e in doctest.DocTestParser().get_examples(muvera.Muvera.__doc__))
    state = np.random.get_state()
    try:
        for code, names in ((readme, ("doc_fdes", "query_fdes", "scores")),
                            (docstring, ("doc_fde", "query_fde", "score", "doc_fdes"))):
            assert "from muvera import Muvera" in code
            results = []
            for module in ("muvera", "simkern.compat.muvera"):
                np.random.seed(0)
                namespace: dict = {}
                exec(code.replace("from muvera import", f"from {module} import"), namespace)  # noqa: S102
                results.append(namespace)
            assert results[1]["Muvera"] is Muvera
            for name in names:
                np.testing.assert_array_equal(results[1][name], results[0][name], err_msg=name)
    finally:
        np.random.set_state(state)


def _outcome(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001  # comparing what each raises
        return type(e), str(e)
    return None


BAD_CONFIGS = [dict(num_repetitions=0), dict(num_repetitions=-2), dict(num_simhash_projections=31),
               dict(num_simhash_projections=-1), dict(projection_type="dense"), dict(projection_type="ams_sketch"),
               dict(projection_type="ams_sketch", projection_dimension=0), dict(num_repetitions=None),
               dict(seed=-1), dict(seed=1.5), dict(seed="1"), dict(num_repetitions=2.0)]


@pytest.mark.parametrize("cfg", BAD_CONFIGS, ids=str)
def test_bad_configurations_raise_as_muvera_does(cfg):
    muvera = _muvera()
    x = np.ones((2, 16), np.float32)
    theirs = _outcome(lambda: muvera.Muvera(**cfg).encode_documents(x))
    ours = _outcome(lambda: Muvera(**cfg).encode_documents(x))
    assert theirs is not None and ours is not None and ours[0] is theirs[0], (ours, theirs)
    if "float" not in theirs[1] and "integer" not in theirs[1]:  # Python's own messages for non-int sizes differ
        assert ours[1] == theirs[1]


BAD_INPUTS = [np.ones((2, 8), np.float32), np.ones((16,), np.float32), np.ones((1, 2, 16)), "abc", None, 3.0,
              (np.ones((2, 16)),), [np.ones((2, 8))], [np.ones((2, 16)), [[1.0] * 16]], [np.ones(16)],
              [np.ones((2, 16)), np.ones((1, 2, 16))]]


@pytest.mark.parametrize("arg", BAD_INPUTS, ids=lambda a: type(a).__name__ + str(np.shape(a) if not
                                                                                  isinstance(a, list) else len(a)))
@pytest.mark.parametrize("name", ["encode_documents", "encode_queries"])
def test_bad_inputs_raise_as_muvera_does(arg, name):
    muvera = _muvera()
    theirs = _outcome(lambda: getattr(muvera.Muvera(), name)(arg))
    ours = _outcome(lambda: getattr(Muvera(), name)(arg))
    assert theirs is not None and ours is not None and ours[0] is theirs[0], (ours, theirs)
    if ours[0] is ValueError:
        assert ours[1] == theirs[1]


def test_empty_inputs_non_float32_attributes_repr_pickle():
    muvera = _muvera()
    cfg = dict(num_repetitions=3, num_simhash_projections=3, dimension=16, projection_type="ams_sketch",
               projection_dimension=4, final_projection_dimension=30, seed=7)
    ours, theirs = Muvera(**cfg), muvera.Muvera(**cfg)
    assert repr(ours) == repr(theirs) and repr(Muvera()) == repr(muvera.Muvera())
    for attr in ("num_repetitions", "num_simhash_projections", "dimension", "projection_type",
                 "projection_dimension", "fill_empty_partitions", "final_projection_dimension", "seed",
                 "output_dimension", "_num_partitions", "_use_identity", "_proj_dim", "_fde_dim"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    rng = np.random.default_rng(1)
    empty = np.zeros((0, 16), np.float32)
    for name in ("encode_documents", "encode_queries"):
        assert getattr(ours, name)([]).shape == (0, 30) and getattr(ours, name)([]).dtype == np.float32
        np.testing.assert_array_equal(getattr(ours, name)(empty), getattr(theirs, name)(empty))  # zeros
        mixed = [rng.standard_normal((5, 16)), empty, rng.integers(-3, 4, (4, 16)),
                 rng.standard_normal((3, 16)).astype(np.float16)]
        np.testing.assert_allclose(getattr(ours, name)(mixed), getattr(theirs, name)(mixed), rtol=1e-5, atol=1e-5)
        x64 = rng.standard_normal((6, 16))[:, ::1]
        np.testing.assert_allclose(getattr(ours, name)(np.asfortranarray(x64)), getattr(theirs, name)(x64),
                                   rtol=1e-5, atol=1e-5)
    copy = pickle.loads(pickle.dumps(ours))
    x = rng.standard_normal((5, 16)).astype(np.float32)
    np.testing.assert_array_equal(copy.encode_documents(x), ours.encode_documents(x))
    ours.seed = theirs.seed = 99  # attributes are read at each call, as in muvera
    np.testing.assert_allclose(ours.encode_documents(x), theirs.encode_documents(x), rtol=1e-5, atol=1e-5)


def test_documented_differences():
    shim = Muvera(dimension=4, num_repetitions=2, num_simhash_projections=2)
    bad = np.ones((3, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"documents\[1\] has a NaN or infinite value \(token 1\)"):
        shim.encode_documents([np.ones((2, 4), np.float32), bad])
    with pytest.raises(ValueError, match=r"queries\[0\] has a NaN"):
        shim.encode_queries(bad)
    with pytest.raises(ValueError, match="overflowed float32"):
        shim.encode_queries(np.full((3, 4), 3e38, np.float32))
    with pytest.raises(ValueError, match="dimension must be greater than 0"):
        Muvera(dimension=0).encode_queries(np.ones((1, 0), np.float32))
    with pytest.raises(ValueError, match=r"< 2\*\*31"):
        Muvera(num_simhash_projections=30, dimension=128).encode_queries(np.ones((1, 128), np.float32))


# -- FDE.from_matrices (no muvera needed) -----------------------------------------------------------------------------
@st.composite
def matrices_case(draw):
    dim = draw(st.sampled_from(DIMS[:13]))
    reps, k = draw(st.integers(1, 3)), draw(st.integers(0, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    d_proj = draw(st.sampled_from([None, 1, 3, 8, 9]))
    args: dict = {"simhash": rng.standard_normal((reps, dim, k)).astype(np.float32),
                  "fill_empty_partitions": draw(st.booleans()),
                  "fill_target": draw(st.sampled_from(["reference", "gray_decoded"]))}
    if d_proj is not None:
        index, sign = rng.integers(0, d_proj, (reps, dim)), rng.choice([-1.0, 1.0], (reps, dim))
        if draw(st.booleans()):
            dense = np.zeros((reps, dim, d_proj), draw(st.sampled_from([np.float32, np.float64, np.int8])))
            np.put_along_axis(dense, index[:, :, None], sign[:, :, None].astype(dense.dtype), axis=2)
            args["projection"] = dense
        else:
            args["projection"], args["projection_dimension"] = (index.astype(np.uint16), sign), d_proj
    final = draw(st.sampled_from([None, 1, 7, 64]))
    if final:
        inner = reps * 2**k * (d_proj or dim)
        args["final_projection"] = (rng.integers(0, final, inner), rng.choice(np.array([-1, 1], np.int8), inner))
        args["final_projection_dimension"] = final
    lengths = draw(st.lists(st.sampled_from(COUNTS[1:]), min_size=1, max_size=4))
    return args, [rng.standard_normal((n, dim)).astype(np.float32) for n in lengths]


@settings(max_examples=40, deadline=None)
@given(case=matrices_case())
def test_from_matrices_matches_numpy_reference(isa, case):
    args, clouds = case
    f = simkern.FDE.from_matrices(**args)
    mats = f._plan.matrices()
    assert f.config["seed"] is None and f.config["fill_target"] == args["fill_target"]
    for document, enc in ((False, f.encode_queries), (True, f.encode_documents)):
        got = enc(clouds)
        assert got.shape == (len(clouds), f.output_dim) and got.dtype == np.float32
        for row, cloud in zip(got, clouds):
            want, mag = fde_ref(cloud, f.config, mats, document)
            tol = 4 * (cloud.shape[0] + f.dim) * 2.0**-24 * mag + 1e-30
            assert (np.abs(row - want) <= tol).all(), (document, f.config, np.abs(row - want).max())


@settings(max_examples=25, deadline=None)
@given(dim=st.sampled_from(DIMS), reps=st.integers(1, 3), k=st.integers(0, 6), d_proj=st.sampled_from([None, 4, 17]),
       fill=st.booleans(), final=st.sampled_from([None, 5, 300]), seed=st.integers(0, 2**32 - 1),
       lengths=st.lists(st.sampled_from(COUNTS), min_size=1, max_size=4))
def test_from_matrices_of_the_seeded_draws_is_the_seeded_encoder(isa, dim, reps, k, d_proj, fill, final, seed,
                                                                 lengths):
    f = simkern.FDE(dim, num_repetitions=reps, num_simhash_projections=k,
                    projection="identity" if d_proj is None else "ams_sketch", projection_dimension=d_proj,
                    fill_empty_partitions=fill, final_projection_dimension=final, seed=seed)
    m = f._plan.matrices()
    simhash = m["simhash"].reshape(dim, reps, k).transpose(1, 0, 2).copy()
    final_args = {} if final is None else {"final_projection": (m["final_index"], m["final_sign"]),
                                           "final_projection_dimension": final}
    forms = [{}]
    if d_proj is not None:
        forms = [{"projection": (m["ams_index"], m["ams_sign"]), "projection_dimension": d_proj}]
    if d_proj is not None:
        dense = np.zeros((reps, dim, d_proj), np.float32)
        np.put_along_axis(dense, m["ams_index"][:, :, None].astype(np.int64), m["ams_sign"][:, :, None], axis=2)
        forms.append({"projection": dense})
    clouds = _clouds(seed, lengths, dim, "normal")
    want_d, want_q = f.encode_documents(clouds, empty="zeros"), f.encode_queries(clouds)
    for form in forms:
        g = simkern.FDE.from_matrices(simhash, fill_empty_partitions=fill, **form, **final_args)
        assert g == f and f == g and g.output_dim == f.output_dim
        np.testing.assert_array_equal(g.encode_documents(clouds, empty="zeros", threads=2), want_d)
        np.testing.assert_array_equal(g.encode_queries(clouds), want_q)


def test_from_matrices_config_repr_pickle_equality():
    rng = np.random.default_rng(0)
    sim = rng.standard_normal((2, 8, 3)).astype(np.float32)
    proj = (rng.integers(0, 4, (2, 8)), np.ones((2, 8)))
    f = simkern.FDE.from_matrices(sim, projection=proj, projection_dimension=4, fill_target="gray_decoded")
    assert f.config == {"dim": 8, "num_repetitions": 2, "num_simhash_projections": 3, "projection": "ams_sketch",
                        "projection_dimension": 4, "fill_empty_partitions": True, "final_projection_dimension": None,
                        "seed": None, "fill_target": "gray_decoded"}
    assert repr(f).startswith("FDE.from_matrices(dim=8, num_repetitions=2") and "seed" not in repr(f)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    g = pickle.loads(pickle.dumps(f))
    assert g == f and g.config == f.config and repr(g) == repr(f)
    np.testing.assert_array_equal(g.encode_documents(x), f.encode_documents(x))
    assert f != simkern.FDE.from_matrices(sim, projection=proj, projection_dimension=4)  # another fill rule
    assert f != simkern.FDE.from_matrices(sim * 2, projection=proj, projection_dimension=4, fill_target="gray_decoded")
    assert f != simkern.FDE(8, num_repetitions=2, num_simhash_projections=3, projection_dimension=4)
    with pytest.raises(TypeError):
        simkern.FDE(**f.config)
    # k = 0 (one partition) and identity
    h = simkern.FDE.from_matrices(np.zeros((3, 8, 0), np.float32))
    assert h.output_dim == 24
    np.testing.assert_allclose(h.encode_documents(x)[0], np.tile(x.mean(axis=0), 3), rtol=1e-6)


def test_multivector_index_with_an_explicit_fde_works_but_is_not_saved(tmp_path):
    rng = np.random.default_rng(4)
    f = simkern.FDE.from_matrices(rng.standard_normal((2, 8, 2)).astype(np.float32))
    docs = [rng.standard_normal((n, 8)).astype(np.float32) for n in (3, 5, 2, 7)]
    index = simkern.MultiVectorIndex(8, fde=f, ann="flat")
    index.add(docs)
    _, ids = index.search(docs[1], k=1)
    assert ids.ravel()[0] == 1
    with pytest.raises(ValueError, match="FDE.from_matrices"):
        index.save(tmp_path / "index")
    with pytest.raises(ValueError, match="FDE.from_matrices"):
        pickle.dumps(index)
    assert not (tmp_path / "index").exists()


def _good_args():
    rng = np.random.default_rng(0)
    return {"simhash": rng.standard_normal((2, 4, 2)).astype(np.float32),
            "projection": (np.array([[0, 1, 2, 0], [1, 1, 0, 2]]), np.ones((2, 4))), "projection_dimension": 3,
            "final_projection": (np.zeros(2 * 4 * 3, np.int64), -np.ones(24)), "final_projection_dimension": 5}


def _dense_with(value):
    dense = np.zeros((2, 4, 3))
    dense[:, :, 0] = 1
    dense[1, 2, :] = value
    return dense


@pytest.mark.parametrize("change, error, match", [
    ({"simhash": np.ones((2, 4, 2))}, TypeError, "simhash must be float32"),
    ({"simhash": [[[1.0]]]}, TypeError, "simhash must be float32"),
    ({"simhash": np.ones((4, 2), np.float32)}, ValueError, "simhash must be 3-D"),
    ({"simhash": np.ones((0, 4, 2), np.float32)}, ValueError, "simhash must have shape"),
    ({"simhash": np.ones((2, 0, 2), np.float32)}, ValueError, "simhash must have shape"),
    ({"simhash": np.ones((1, 4, 31), np.float32), "projection": None, "projection_dimension": None,
      "final_projection": None, "final_projection_dimension": None}, ValueError, "at most 30"),
    ({"simhash": np.full((2, 4, 2), np.nan, np.float32)}, ValueError, "simhash must be finite"),
    ({"projection": (np.zeros((2, 4)), np.ones((2, 4)))}, TypeError, r"projection\[0\] \(indices\) must be an int"),
    ({"projection": (np.zeros((2, 4), int), np.ones((2, 4), bool))}, TypeError, r"projection\[1\] \(signs\)"),
    ({"projection": (np.zeros((2, 5), int), np.ones((2, 5)))}, ValueError, r"projection indices must have shape"),
    ({"projection": (np.zeros((2, 4), int), np.ones((2, 3)))}, ValueError, r"projection signs must have shape"),
    ({"projection": (np.full((2, 4), 3), np.ones((2, 4)))}, ValueError, r"projection indices must be in \[0, proj"),
    ({"projection": (np.full((2, 4), -1), np.ones((2, 4)))}, ValueError, r"projection indices must be in"),
    ({"projection": (np.zeros((2, 4), int), np.full((2, 4), 0.5))}, ValueError, "projection signs must be"),
    ({"projection": (np.zeros((2, 4), int), np.full((2, 4), np.nan))}, ValueError, "projection signs must be"),
    ({"projection": [np.zeros((2, 4), int), np.ones((2, 4))]}, ValueError, "projection must have shape"),
    ({"projection": (np.zeros((2, 4), int),)}, TypeError, r"projection must be a pair"),
    ({"projection_dimension": None}, ValueError, "projection_dimension is required"),
    ({"projection_dimension": 0}, ValueError, "projection_dimension must be >= 1"),
    ({"projection_dimension": 2.0}, TypeError, "projection_dimension must be an int"),
    ({"projection": _dense_with(0), "projection_dimension": None}, ValueError, r"projection\[1, 2\] must hold "
                                                                               "exactly one nonzero value"),
    ({"projection": _dense_with(1), "projection_dimension": None}, ValueError, "exactly one nonzero"),
    ({"projection": _dense_with([2, 0, 0]), "projection_dimension": None}, ValueError, r"projection\[1, 2\] must "
                                                                                       r"hold \+1 or -1, got 2"),
    ({"projection": _dense_with([np.nan, 0, 0]), "projection_dimension": None}, ValueError, "hold"),
    ({"projection": _dense_with([1, 0, 0]), "projection_dimension": 4}, ValueError,
     r"projection_dimension must be None or projection.shape\[2\] \(3\)"),
    ({"projection": np.ones((2, 4, 3), bool)}, TypeError, "projection must be an integer or floating"),
    ({"projection": np.ones((2, 5, 3))}, ValueError, r"projection must have shape \(R, dim, d_proj\)"),
    ({"projection": None}, ValueError, r"projection_dimension must be None or dim \(4\)"),
    ({"final_projection_dimension": None}, ValueError, "final_projection_dimension is required"),
    ({"final_projection": None}, ValueError, "final_projection_dimension is given without"),
    ({"final_projection_dimension": 0}, ValueError, "final_projection_dimension must be >= 1"),
    ({"final_projection": (np.zeros(23, int), np.ones(23))}, ValueError, r"final_projection indices must have "
                                                                           r"shape \(24,\)"),
    ({"final_projection": (np.full(24, 5), np.ones(24))}, ValueError, r"final_projection indices must be in \[0, "
                                                                        r"final_projection_dimension\) = \[0, 5\)"),
    ({"final_projection": (np.zeros(24, int), np.zeros(24))}, ValueError, "final_projection signs must be"),
    ({"final_projection": np.zeros(24, int)}, TypeError, "final_projection must be a pair"),
    ({"fill_empty_partitions": 1}, TypeError, "fill_empty_partitions must be a bool"),
    ({"fill_target": "muvera"}, ValueError, "fill_target must be one of"),
    ({"simhash": np.ones((2, 4, 26), np.float32), "projection_dimension": 64,
      "projection": (np.zeros((2, 4), int), np.ones((2, 4))), "final_projection": None,
      "final_projection_dimension": None}, ValueError, r"< 2\*\*31"),
])
def test_from_matrices_validation(change, error, match):
    with pytest.raises(error, match=match):
        simkern.FDE.from_matrices(**(_good_args() | change))


def test_the_binding_checks_the_matrices_too():
    # _FDEPlan.from_matrices is reachable without the Python checks: it must refuse out-of-range indices itself.
    plan = simkern._core._FDEPlan.from_matrices
    sim, i32, f32 = np.ones((4, 2), np.float32), np.zeros((1, 4), np.int32), np.ones((1, 4), np.float32)
    none_i, none_f = np.zeros(0, np.int32), np.zeros(0, np.float32)
    with pytest.raises(ValueError, match="ams_index must be in"):
        plan(sim, 1, 2, True, i32 + 3, f32, 3, True, none_i, none_f, 0, False)
    with pytest.raises(ValueError, match="ams_sign"):
        plan(sim, 1, 2, True, i32, f32 * 2, 3, True, none_i, none_f, 0, False)
    with pytest.raises(ValueError, match="final_index must be in"):
        plan(sim, 1, 2, True, i32, f32, 3, True, np.full(12, 7, np.int32), np.ones(12, np.float32), 7, False)
    with pytest.raises(ValueError, match="simhash must have shape"):
        plan(sim, 2, 2, False, i32, f32, 4, True, none_i, none_f, 0, False)
    with pytest.raises(ValueError, match="simhash must be finite"):
        plan(sim * np.inf, 1, 2, False, i32, f32, 4, True, none_i, none_f, 0, False)
