"""Streamed pickling of HNSWIndex and PQIndex (python/simkern/_pickling.py): every protocol round-trips, copies
are independent, an abandoned pickle releases the index, and a corrupted stream is refused with ValueError.
Peak memory: tests/test_persistence_memory.py."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import simkern
from simkern import _pickling


def _x(n, dim, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _hnsw(storage="float32", n=600, dim=24):
    index = simkern.HNSWIndex(dim, metric="cosine", M=6, ef_construction=24, storage=storage, seed=5)
    if n:
        index.add(_x(n, dim), threads=1)
        index.remove([3, 7, 11])
    return index


def _pq(**kw):
    index = simkern.PQIndex(24, 6, **kw).train(_x(800, 24), iters=2)
    index.add(_x(700, 24, 1))
    return index


INDEXES = {
    "hnsw-f32": lambda: _hnsw(),
    "hnsw-f16": lambda: _hnsw("float16"),
    "hnsw-empty": lambda: _hnsw(n=0),
    "pq8": lambda: _pq(),
    "pq4-vectors": lambda: _pq(nbits=4, keep_vectors=True),
    "pq-opq": lambda: _pq(opq=True),
}


def _same(a, b):
    assert type(a) is type(b) and len(a) == len(b)
    if len(a):
        q = _x(4, a.dim, 9)
        ra, rb = a.search(q, k=5), b.search(q, k=5)
        np.testing.assert_array_equal(ra[1], rb[1])
        np.testing.assert_array_equal(ra[0], rb[0])


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("name", sorted(INDEXES))
def test_round_trip_every_protocol(name, protocol):
    index = INDEXES[name]()
    _same(index, pickle.loads(pickle.dumps(index, protocol)))


@pytest.mark.parametrize("name", sorted(INDEXES))
def test_protocol_2_and_later_stream_parts(name, monkeypatch):
    """The stream really is cut in parts (so the bound on memory holds): one part per PART_BYTES at most."""
    monkeypatch.setattr(_pickling, "PART_BYTES", 4096)
    index = INDEXES[name]()
    parts = list(index.__reduce_ex__(4)[3])
    assert all(0 < p.chunk.nbytes <= 4096 for p in parts)
    assert len(parts) >= sum(p.chunk.nbytes for p in parts) / 4096 >= (2 if len(index) else 0)
    _same(index, pickle.loads(pickle.dumps(index, 4)))


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy])
@pytest.mark.parametrize("name", ["hnsw-f32", "pq4-vectors"])
def test_copies_are_independent(name, how):
    index = INDEXES[name]()
    other = how(index)
    _same(index, other)
    other.add(_x(5, index.dim, 3))
    assert len(other) == len(index) + 5


def test_untrained_pq_index_pickles():
    index = simkern.PQIndex(8, 2)
    for protocol in (2, 5):
        assert not pickle.loads(pickle.dumps(index, protocol)).is_trained
    assert not copy.copy(index).is_trained


def test_mapped_indexes_pickle_into_memory(tmp_path):
    h, p = _hnsw(), _pq(keep_vectors=True)
    h.save(tmp_path / "h.skh")
    p.save(tmp_path / "p.bin")
    hm = simkern.HNSWIndex.load(tmp_path / "h.skh", mmap=True)
    pm = simkern.PQIndex.load(tmp_path / "p.bin", mmap=True)
    for mapped, index in ((hm, h), (pm, p)):
        got = pickle.loads(pickle.dumps(mapped))
        _same(index, got)
    assert not pickle.loads(pickle.dumps(hm)).mmapped


def test_an_abandoned_pickle_releases_the_index():
    index = _hnsw()
    reduced = index.__reduce_ex__(4)
    next(reduced[3])  # a part drawn, then the pickle given up (its writer lock is held until then)
    del reduced
    index.add(_x(3, 24, 4))
    assert len(index) == 600 - 3 + 3


def _stream(index):
    func, args, state, parts = index.__reduce_ex__(4)
    return func, args, state, list(parts)


def _replay(func, args, state, parts):
    obj = func(*args)
    for part in parts:
        obj.append(part)
    obj.__setstate__(state)
    return obj


@pytest.mark.parametrize("name", ["hnsw-f32", "pq4-vectors"])
def test_a_corrupted_stream_is_refused(name, monkeypatch):
    monkeypatch.setattr(_pickling, "PART_BYTES", 4096)
    index = INDEXES[name]()
    func, args, state, parts = _stream(index)
    _same(index, _replay(func, args, state, parts))
    with pytest.raises(ValueError, match="ended before"):  # a part missing at the end
        _replay(*_stream(index)[:3], _stream(index)[3][:-1])
    func, args, state, parts = _stream(index)
    i = next(i for i in range(len(parts) - 1) if parts[i].name == parts[i + 1].name)
    parts[i], parts[i + 1] = parts[i + 1], parts[i]
    with pytest.raises(ValueError, match="checksum"):  # two parts of one section swapped
        _replay(func, args, state, parts)
    func, args, state, parts = _stream(index)
    with pytest.raises(ValueError, match="corrupted stream"):  # parts of two sections out of order
        _replay(func, args, state, [p for p in parts if p.name != parts[0].name] + parts[:1])
    with pytest.raises(ValueError, match="not a simkern index stream"):
        func("NoSuchKind", *args[1:])
    with pytest.raises(ValueError, match="unsupported"):
        func(args[0], 99, args[2])
    with pytest.raises(ValueError, match="corrupted"):
        func(args[0], args[1], args[2].replace('"sections"', '"sectionz"'))
    target = func(*args)
    with pytest.raises(ValueError, match="payload"):  # more bytes than the part declares
        _pickling.unpickle_part(target, parts[0].name, 8).append(1 << 64)
    with pytest.raises(ValueError, match="payload"):
        _pickling.unpickle_part(target, parts[0].name, 8).append(b"12345678")
    with pytest.raises(ValueError, match="outside an index stream"):
        _pickling.unpickle_part(object(), parts[0].name, 8)
    with pytest.raises(ValueError, match="not a part"):
        func(*args).append(None)


def test_a_stream_whose_data_contradicts_its_header_is_refused():
    """Valid parts, wrong contents: the restore steps' checks (the same as load's) run on them."""
    index = _hnsw()
    func, args, state, parts = _stream(index)
    labels = next(p for p in parts if p.name == "labels")
    labels.chunk = labels.chunk.copy()
    labels.chunk[0] = -5
    with pytest.raises(ValueError, match="an id outside"):
        _replay(func, args, state, parts)


def test_a_changed_byte_is_refused_by_the_checksum():
    index = _pq(keep_vectors=True)
    func, args, state, parts = _stream(index)
    vectors = next(p for p in parts if p.name == "vectors")
    vectors.chunk = vectors.chunk.copy()
    vectors.chunk[0, 0] += 1.0
    with pytest.raises(ValueError, match="checksum"):
        _replay(func, args, state, parts)
