"""Single-file saves (PQIndex.save, HNSWIndex.save): atomic (a unique temporary file beside the target, fsynced,
renamed over it), so concurrent saves to one path never collide and a failed save leaves the old file and no
temporary behind."""

from __future__ import annotations

import os
import stat
import threading

import numpy as np
import pytest
import simkern


def _pq_index(seed=0, n=300):
    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    index = simkern.PQIndex(16, 4, 4, keep_vectors=True).train(x, iters=2)
    index.add(x)
    return index


def _hnsw_index(seed=0, n=300):
    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    index = simkern.HNSWIndex(16, metric="l2", M=8, ef_construction=32)
    index.add(x)
    return index


BUILDERS = {"pq": (_pq_index, simkern.PQIndex), "hnsw": (_hnsw_index, simkern.HNSWIndex)}


def _same(kind, a, b):
    if kind == "pq":
        np.testing.assert_array_equal(a.codes, b.codes)
    assert len(a) == len(b)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_concurrent_saves_to_one_path(kind, tmp_path):
    """2 threads x 20 saves of different indexes to one path (a fixed '<path>.tmp-<pid>' name made them collide:
    FileNotFoundError / a mixed file): all succeed, the file loads as one of the two, nothing else is left."""
    build, cls = BUILDERS[kind]
    indexes = [build(seed=1, n=200), build(seed=2, n=260)]
    path = tmp_path / "index.bin"
    errors = []

    def save_many(index):
        try:
            for _ in range(20):
                index.save(path)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=save_many, args=(index,)) for index in indexes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    loaded = cls.load(path)
    assert len(loaded) in (200, 260)
    _same(kind, loaded, indexes[0] if len(loaded) == 200 else indexes[1])
    assert os.listdir(tmp_path) == ["index.bin"]


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(kind, tmp_path, monkeypatch):
    build, cls = BUILDERS[kind]
    old, new = build(seed=3, n=200), build(seed=4, n=250)
    path = tmp_path / "index.bin"
    old.save(path)
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")  # after the data is written: fails midway through the save

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(OSError, match="No space left"):
            new.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["index.bin"]
    _same(kind, cls.load(path), old)
    # A save into a missing folder fails before writing anything, and one onto a directory is refused.
    with pytest.raises(OSError):
        new.save(tmp_path / "missing" / "index.bin")
    with pytest.raises(ValueError, match="is a directory"):
        new.save(tmp_path)
    assert os.listdir(tmp_path) == ["index.bin"]


def test_pq_save_failing_inside_the_writer(tmp_path, monkeypatch):
    """An exception while the sections are written (here: a checksum) leaves the old file and no temporary."""
    old, new = _pq_index(seed=5, n=200), _pq_index(seed=6, n=250)
    path = tmp_path / "i.pqi"
    old.save(path)
    before = path.read_bytes()

    class BrokenStruct:
        @staticmethod
        def pack(*args):
            raise RuntimeError("boom")

    import importlib

    monkeypatch.setattr(importlib.import_module("simkern._container"), "struct", BrokenStruct)
    with pytest.raises(RuntimeError, match="boom"):
        new.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["i.pqi"]


def test_saved_files_get_the_usual_permissions(tmp_path):
    """The temporary file comes from mkstemp (mode 0600): the saved file gets 0666 minus the umask like open(), or
    keeps the mode of the file it replaces."""
    index = _pq_index(seed=7, n=200)
    path = tmp_path / "i.pqi"
    umask = os.umask(0o022)
    os.umask(umask)
    index.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    os.chmod(path, 0o640)
    index.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_pq_empty_and_grown_index_round_trip(tmp_path):
    """An empty index saves and loads (zero-length sections); one grown by many adds saves exactly its codes."""
    x = np.random.default_rng(8).standard_normal((400, 16)).astype(np.float32)
    index = simkern.PQIndex(16, 4, 8, keep_vectors=True, opq=True).train(x, iters=1)
    path = tmp_path / "i.pqi"
    index.save(path)
    assert len(simkern.PQIndex.load(path)) == 0
    for start in range(0, 400, 7):
        index.add(x[start : start + 7])
    index.save(path)
    loaded = simkern.PQIndex.load(path)
    np.testing.assert_array_equal(loaded.codes, index.pq.encode(index.opq.rotate(x)))
    np.testing.assert_array_equal(loaded.search(x[:3], 5, rerank=4)[1], index.search(x[:3], 5, rerank=4)[1])
