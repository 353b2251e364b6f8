"""Saves (PQIndex.save, HNSWIndex.save; MultiVectorIndex.save for the crash tests): atomic (a unique temporary
file beside the target, fsynced, renamed over it, the folder fsynced), so concurrent saves to one path never
collide, and a failed save - an exception, a full disk, the process killed mid-write - leaves the old file
readable (and, except after a kill, no temporary behind)."""

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


# A child that builds an index, saves it once to `path`, then saves a bigger one there again - either killed by
# SIGKILL in the middle of the second save (after `kill_after` chunks were written), or with its file size limited
# (RLIMIT_FSIZE) so that the second save runs out of room like a full disk. Prints the first index's length.
_CHILD = r"""
import os, resource, signal, sys
import numpy as np, simkern
kind, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
def build(n, seed):
    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    if kind == "pq":
        index = simkern.PQIndex(16, 4, 8, keep_vectors=True).train(x[:300], iters=1)
    elif kind == "hnsw":
        index = simkern.HNSWIndex(16, M=8, ef_construction=16)
    else:
        index = simkern.MultiVectorIndex(16, ann="flat")
        index.add([x[i:i + 3] for i in range(0, n, 3)])
        return index
    index.add(x)
    return index
first = build(600, 1)
first.save(path)
print(len(first), flush=True)
second = build(6000, 2)
if mode == "kill":
    import importlib
    container = importlib.import_module("simkern._container")
    real = container.zlib.crc32
    calls = [0]
    def crc32(data, value=0):  # the writer checksums every chunk it writes: die in the middle of the file
        calls[0] += 1
        if calls[0] == 4:  # 2 for the header, then the second section's first chunk
            os.kill(os.getpid(), signal.SIGKILL)
        return real(data, value)
    container.zlib.crc32 = crc32
    import numpy
    numpy.save_real = numpy.save
    def save_then_die(*a, **k):  # MultiVectorIndex writes .npy files: die after the first
        numpy.save_real(*a, **k)
        os.kill(os.getpid(), signal.SIGKILL)
    numpy.save = save_then_die
else:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    limit = os.path.getsize(path) if os.path.isfile(path) else 4096
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit + 65536, limit + 65536))
try:
    second.save(path)
except OSError as e:
    print("save failed:", e.errno, repr(e), flush=True)
    sys.exit(3)
sys.exit(4)  # the second save must not succeed
"""


@pytest.mark.skipif(not hasattr(os, "fork") or not os.path.exists("/proc"), reason="POSIX signals and rlimits")
@pytest.mark.parametrize("mode", ["kill", "full-disk"])
@pytest.mark.parametrize("kind", ["pq", "hnsw", "mv"])
def test_a_save_killed_or_out_of_room_leaves_the_previous_index(kind, mode, tmp_path):
    import subprocess
    import sys

    path = str(tmp_path / ("mv" if kind == "mv" else f"{kind}.idx"))
    out = subprocess.run([sys.executable, "-c", _CHILD, kind, path, mode], capture_output=True, text=True,
                         timeout=300)
    if mode == "kill":
        assert out.returncode == -9, (out.returncode, out.stderr[-2000:])
    else:
        # EFBIG (27) from our writers; numpy.save (MultiVectorIndex's .npy files) reports a short write instead
        assert out.returncode == 3 and "save failed:" in out.stdout, (out.returncode, out.stdout, out.stderr[-2000:])
    n_first = int(out.stdout.split()[0])
    cls = {"pq": simkern.PQIndex, "hnsw": simkern.HNSWIndex, "mv": simkern.MultiVectorIndex}[kind]
    again = cls.load(path)  # the first save, intact and readable
    assert len(again) == n_first
    leftovers = [f for f in os.listdir(tmp_path) if f.startswith(".")]
    if mode == "full-disk":
        assert leftovers == []  # the failed save removed its temporary file (folder)
