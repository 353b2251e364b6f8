"""Findings of the fuzz targets (tools/fuzz/), each reduced by hand to a minimal input.

A loader given a corrupt file or a corrupt pickled state must raise ValueError (files) or ValueError / TypeError
(states), never another exception, and must not accept an object that fails later. The findings below were
fixed in a01d4a1. A new finding whose fix is not in yet gets a test here marked xfail(strict=True) and an entry in
tools/fuzz/targets.py KNOWN (which lets the fuzzers go on past it); both come out with the fix.
"""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest
import simkern


def _fuzz_targets():
    """tools/fuzz/targets.py as a module (it needs only numpy and simkern; atheris only drives it)."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "tools" / "fuzz" / "targets.py"
    spec = importlib.util.spec_from_file_location("simkern_fuzz_targets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TARGETS = _fuzz_targets()
unpickle_with_state = TARGETS._round_trip  # pickle.loads of the stream for a cls object whose state is `state`


def _x(n, dim, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.fixture(scope="module")
def pq_index():
    index = simkern.PQIndex(4, 2, nbits=4, keep_vectors=True).train(_x(64, 4), iters=1)
    index.add(_x(5, 4, 1))
    return index


# -- MultiVectorIndex.load ---------------------------------------------------------------------------------------
def _saved_flat_index(tmp_path):
    """A folder of version 1 (manifest.json + .npy files; tests/data/mv_v1, still read) to corrupt."""
    import pathlib
    import shutil

    path = tmp_path / "index"
    shutil.copytree(pathlib.Path(__file__).parent / "data" / "mv_v1", path)
    return path


def _replace_file(folder, name, data: bytes):
    """Replace one file of a saved folder and update its SHA-256 in the manifest (a consistent but bad folder)."""
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _npy_v1(header: str) -> bytes:
    """A .npy file, format 1.0, with this header text (no data)."""
    text = header.encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


MALFORMED_NPY = {
    # np.load raises EOFError("No data left in file") for an empty file
    "empty": b"",
    # a header that is not a Python literal sends NumPy to its Python-2 header filter, whose tokenizer raises
    # tokenize.TokenError("EOF in multi-line statement") on an unclosed brace
    "unclosed-header": _npy_v1("{'descr': '<i8', 'fortran_order': False, 'shape': (4,), \n"),
    # numpy.dtype('<i8,)') raises SyntaxError (its comma-string parser calls ast.literal_eval)
    "bad-descr": _npy_v1("{'descr': '<i8,)', 'fortran_order': False, 'shape': (4,), }\n"),
    # a shape the file cannot hold: np.load allocates it first - MemoryError (8 TiB) instead of a size check
    "huge-shape": _npy_v1("{'descr': '<i8', 'fortran_order': False, 'shape': (1099511627776,), }\n") + bytes(8),
}


@pytest.mark.parametrize("content", list(MALFORMED_NPY), ids=list(MALFORMED_NPY))
def test_multivector_load_malformed_npy(tmp_path, content):
    """Fuzz finding (multivector_dir): MultiVectorIndex.load caught only OSError and ValueError around np.load, so
    these raised EOFError, tokenize.TokenError, SyntaxError and MemoryError through it."""
    path = _saved_flat_index(tmp_path)
    _replace_file(path, "offsets.npy", MALFORMED_NPY[content])
    with pytest.raises(ValueError):
        simkern.MultiVectorIndex.load(path)


def test_multivector_load_npy_with_a_bad_literal_is_a_value_error(tmp_path):
    """The same loader path where NumPy itself raises ValueError: refused cleanly today (kept as a guard)."""
    path = _saved_flat_index(tmp_path)
    _replace_file(path, "offsets.npy", _npy_v1("{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }\n")[:-3])
    with pytest.raises(ValueError):
        simkern.MultiVectorIndex.load(path)


# -- PQIndex / ProductQuantizer / OPQ pickled states ------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("codes", None),                                    # len(index) -> AttributeError: 'NoneType' ... 'shape'
    ("codes", np.zeros(10, np.uint8)),                  # 1-D: index.codes -> IndexError in _pack4
    ("codes", np.zeros((5, 2), np.int64)),              # wrong dtype
    ("vectors", None),                                  # keep_vectors=True without vectors
], ids=["codes-None", "codes-1d", "codes-int64", "vectors-None"])
def test_pq_index_setstate_validates_codes_and_vectors(pq_index, field, value):
    """Fuzz finding (pq_pickle): PQIndex.__setstate__ adopted state['codes'] and state['vectors'] unchecked; the
    object failed later (len() AttributeError, .codes IndexError)."""
    state = pq_index.__getstate__()
    state[field] = value
    with pytest.raises((ValueError, TypeError)):
        unpickle_with_state(simkern.PQIndex, state)


def test_pq_index_setstate_round_trip(pq_index):
    """The unmodified state still loads and searches the same (guard for the fix above)."""
    other = unpickle_with_state(simkern.PQIndex, pq_index.__getstate__())
    q = _x(2, 4, 9)
    for got, want in zip(other.search(q, 3), pq_index.search(q, 3)):
        np.testing.assert_array_equal(got, want)


def _pq_state():
    return simkern.ProductQuantizer(4, 2, nbits=4).train(_x(64, 4), iters=1).__getstate__()


def _opq_state():
    return simkern.OPQ(4, 2, nbits=4, iters=1, pq_iters=1).train(_x(64, 4), pq_final_iters=1).__getstate__()


MALFORMED_STATES = {
    "pq-array": (simkern.ProductQuantizer, lambda: np.zeros(3)),                           # IndexError
    "pq-missing-key": (simkern.ProductQuantizer, lambda: {k: v for k, v in _pq_state().items() if k != "nbits"}),
    "opq-pq-array": (simkern.OPQ, lambda: {**_opq_state(), "pq": np.zeros(3)}),           # IndexError
    "pqindex-missing-codes": (simkern.PQIndex, lambda: {"pq": _pq_state(), "keep_vectors": False, "vectors": None,
                                                        "opq": None}),                    # KeyError
}


@pytest.mark.parametrize("case", list(MALFORMED_STATES), ids=list(MALFORMED_STATES))
def test_pq_family_setstate_rejects_a_malformed_state(case):
    """Fuzz finding (pq_pickle): ProductQuantizer / OPQ / PQIndex.__setstate__ indexed the state without checking
    that it is a dict with the expected keys: IndexError / KeyError."""
    cls, state = MALFORMED_STATES[case]
    with pytest.raises((ValueError, TypeError)):
        unpickle_with_state(cls, state())


def test_known_fuzz_findings_each_have_an_xfail_test_here():
    """tools/fuzz/targets.py KNOWN lets the fuzzers go on past these findings: each must name a test of this file
    that is still marked xfail (so the entry goes when the fix lands)."""
    names = {v for entry in TARGETS.KNOWN for field in entry
             for v in (field if isinstance(field, tuple) else (field,)) if str(v).startswith("test_")}
    for name in names:
        test = globals().get(name)
        assert test is not None, f"targets.KNOWN names {name}, which is not in {__file__}"
        assert any(m.name == "xfail" for m in getattr(test, "pytestmark", [])), f"{name} is no longer xfail"


def test_fuzz_helpers_keep_a_saved_file_loadable(tmp_path):
    """The fuzzers' repair and edit helpers must understand what save writes (the container): an unmutated file
    is left as it is by FIX, rewritten in every layout it still loads the same index, and an edit that changes
    nothing gives a file that loads - else the fuzzers only ever test the first check of the loader."""
    index = simkern.HNSWIndex(4, metric="cosine", M=4, ef_construction=16, storage="float16", seed=3)
    index.add(_x(40, 4), threads=1)
    index.remove([5])
    index.save(tmp_path / "a.skh")
    data = (tmp_path / "a.skh").read_bytes()
    fixed = bytearray(data)
    TARGETS.fix_hnsw(fixed)
    assert bytes(fixed) == data
    want = index.search(_x(3, 4, 1), k=5)
    for version in (1, 2, 3):
        path = tmp_path / f"v{version}.skh"
        path.write_bytes(TARGETS.hnsw_as_version(data, version))
        got = simkern.HNSWIndex.load(path).search(_x(3, 4, 1), k=5)
        np.testing.assert_array_equal(got[0], want[0])
    path.write_bytes(TARGETS.edit_hnsw(data, TARGETS.Bytes(bytes([1, 1, 0]))))  # header field 1 (version) += 0
    assert len(simkern.HNSWIndex.load(path)) == len(index)
    pq = simkern.PQIndex(8, 2, nbits=4).train(_x(64, 8), iters=1)
    pq.add(_x(10, 8))
    pq.save(tmp_path / "p.bin")
    data = (tmp_path / "p.bin").read_bytes()
    fixed = bytearray(data)
    TARGETS.fix_pq_index(fixed)
    assert bytes(fixed) == data
    with simkern._container.Reader(tmp_path / "p.bin", "PQIndex", (2,)) as r:
        offset = r.sections["codes"][0]
    fixed[offset] ^= 0x01  # a changed code byte: refused as it is, loaded once FIX repaired the checksum
    (tmp_path / "p.bin").write_bytes(bytes(fixed))
    with pytest.raises(ValueError, match="checksum"):
        simkern.PQIndex.load(tmp_path / "p.bin")
    TARGETS.fix_pq_index(fixed)
    (tmp_path / "p.bin").write_bytes(bytes(fixed))
    assert len(simkern.PQIndex.load(tmp_path / "p.bin")) == 10
