"""HNSWIndex under a hostile-but-ordinary user: interrupted adds, forks mid-add, duplicate vectors, files changed
under a mapping, crafted files, ids and magnitudes at the edges of their domain, and a stateful model test."""

from __future__ import annotations

import importlib
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib

import numpy as np
import pytest
import simkern
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from levels import SANITIZED
from simkern import _core


def _data(n, dim, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _level0_links(index):
    """Level-0 out-links of every node (and its duplicate chain), from the index's own state."""
    st_ = index._core.state()
    levels, counts, ids = st_["levels"], st_["link_counts"], st_["link_ids"]
    out, pair, offset = [], 0, 0
    for node in range(levels.shape[0]):
        for lev in range(int(levels[node]) + 1):
            c = int(counts[pair])
            if lev == 0:
                out.append(list(ids[offset:offset + c]))
            pair += 1
            offset += c
    for node, nxt in enumerate(st_["next_dup"]):
        if nxt:
            out[node].append(int(nxt))
    return out, int(st_["entry"])


def _reachable(index) -> int:
    links, entry = _level0_links(index)
    seen, stack = {entry}, [entry]
    while stack:
        for nb in links[stack.pop()]:
            if nb not in seen:
                seen.add(int(nb))
                stack.append(int(nb))
    return len(seen)


# -- interrupted add ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("at", [0, 1, 700, 1699])
def test_interrupted_add_keeps_exactly_a_prefix(threads, at):
    x = _data(2000, 24, seed=at)
    index = simkern.HNSWIndex(24, M=8, ef_construction=64, seed=3)
    index.add(x[:300], threads=1)
    _core._hnsw_interrupt_after(at)
    with pytest.raises(KeyboardInterrupt) as info:
        index.add(x[300:], threads=threads)
    _core._hnsw_interrupt_after(-1)
    j = len(index) - 300
    assert f"the first {j} of 1700" in info.value.__notes__[0]
    if threads == 1:
        assert j == min(at, 1700)
        # The same graph as an index that was only ever given those vectors.
        ref = simkern.HNSWIndex(24, M=8, ef_construction=64, seed=3)
        ref.add(x[:300], threads=1)
        if j:
            ref.add(x[300:300 + j], threads=1)
        got, want = index._core.state(), ref._core.state()
        for key in ("labels", "levels", "deleted", "link_counts", "link_ids", "next_dup"):
            np.testing.assert_array_equal(got[key], want[key])
    np.testing.assert_array_equal(np.sort(index.ids()), np.arange(300 + j))
    assert (300 + j) not in index and (300 + j - 1) in index
    # Every kept vector is its own nearest neighbour, and the next default-id add goes on from there.
    _, ids = index.search(x[:300 + j], k=1, ef=64)
    assert (ids[:, 0] == np.arange(300 + j)).mean() > 0.99
    index.add(x[300 + j:])
    assert len(index) == 2000
    _, ids = index.search(x, k=1, ef=64)
    assert (ids[:, 0] == np.arange(2000)).mean() > 0.99


def test_interrupted_replace_revives_the_old_vectors():
    x, y = _data(500, 16, 1), _data(500, 16, 2)
    index = simkern.HNSWIndex(16, M=8, ef_construction=40)
    index.add(x)
    _core._hnsw_interrupt_after(200)
    with pytest.raises(KeyboardInterrupt):
        index.add(y, np.arange(500), replace=True, threads=1)
    assert len(index) == 500
    np.testing.assert_array_equal(index.get_vectors(np.arange(200)), y[:200])
    np.testing.assert_array_equal(index.get_vectors(np.arange(200, 500)), x[200:])
    _, ids = index.search(x[200:], k=1)
    assert (ids[:, 0] == np.arange(200, 500)).mean() > 0.99


def test_ctrl_c_during_add_leaves_a_prefix(tmp_path):
    """A real SIGINT (not the test hook) in the middle of a long add; then save/load and keep adding."""
    n = 8000 if SANITIZED else 30000
    x = _data(n, 32, 5)
    index = simkern.HNSWIndex(32, M=16, ef_construction=200)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    try:
        timer.start()
        try:
            index.add(x, threads=2)
            interrupted = False
        except KeyboardInterrupt:
            interrupted = True
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    j = len(index)
    if not interrupted:
        pytest.skip("the add finished before the signal arrived")
    assert 0 <= j < n
    np.testing.assert_array_equal(np.sort(index.ids()), np.arange(j))
    index.save(tmp_path / "i.skh")
    again = simkern.HNSWIndex.load(tmp_path / "i.skh")
    if j:
        _, ids = again.search(x[max(0, j - 200):j], k=1, ef=100)
        assert (ids[:, 0] == np.arange(max(0, j - 200), j)).mean() > 0.98
    again.add(x[j:])
    _, ids = again.search(x[-200:], k=1, ef=100)
    assert (ids[:, 0] == np.arange(n - 200, n)).mean() > 0.98


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_mid_add_refuses_its_copy():
    n = 5000 if SANITIZED else 20000
    code = textwrap.dedent(f"""
        import os, threading, time, numpy as np, simkern
        x = np.random.default_rng(0).standard_normal(({n}, 32)).astype(np.float32)
        index = simkern.HNSWIndex(32, ef_construction=200)
        t = threading.Thread(target=index.add, args=(x,), kwargs={{"threads": 1}})
        t.start()
        time.sleep(0.3)
        assert t.is_alive()  # the add is under way (20k: about 3 s here; 5k on the ASan build: ~6 s)
        pid = os.fork()
        if pid == 0:
            try:
                index.search(x[:1], k=1)
                os._exit(3)
            except ValueError as e:
                os._exit(0 if "forked" in str(e) else 4)
        _, status = os.waitpid(pid, 0)
        t.join()
        assert len(index) == {n}
        print("child", os.waitstatus_to_exitcode(status))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "child 0" in out.stdout


# -- duplicates --------------------------------------------------------------------------------------------------
def test_copies_of_one_vector_keep_the_graph_connected():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6000, 32)).astype(np.float32)
    x[5000:] = x[4999]  # 1001 copies of one vector (the embedding of an empty text, say)
    index = simkern.HNSWIndex(32)
    index.add(x)
    assert _reachable(index) == 6000
    q = x[4999] + 0.01
    _, ids = index.search(q, k=50)
    assert (ids >= 0).all() and set(ids[0]) <= set(range(4999, 6000))
    _, ids = index.search(q, k=1000, ef=1000)
    assert (ids >= 0).all() and len(set(ids[0])) == 1000
    _, ids = index.search(x[:1000], k=1)  # the other vectors are still found
    assert (ids[:, 0] == np.arange(1000)).mean() > 0.99


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_many_copies_of_a_few_vectors(metric):
    base = _data(10, 16, 7)
    x = np.concatenate([np.repeat(base, 300, axis=0), _data(2000, 16, 8)])
    index = simkern.HNSWIndex(16, metric=metric, M=8)
    index.add(x, threads=1)
    assert _reachable(index) == len(x)
    _, ids = index.search(base, k=300, ef=400)
    assert (ids >= 0).all()
    if metric == "l2":
        for i in range(10):
            assert set(ids[i]) == set(range(300 * i, 300 * i + 300))


def test_never_fewer_results_than_live_vectors():
    x = _data(3000, 16, 9)
    index = simkern.HNSWIndex(16, M=4, ef_construction=16)
    index.add(x)
    index.remove(np.arange(0, 2990))  # almost everything tombstoned
    scores, ids = index.search(x[:5], k=10, ef=10)
    assert (np.sort(ids, axis=1) == np.arange(2990, 3000)).all()
    scores, ids = index.search(x[:5], k=20)
    assert (ids[:, :10] >= 0).all() and (ids[:, 10:] == -1).all()


# -- files -------------------------------------------------------------------------------------------------------
def _v1_bytes(index) -> bytes:
    """The same index in format version 1 (20-byte section headers, no padding, no duplicate chains)."""
    st_ = index._core.state()
    metric, storage = {"l2": 0, "ip": 1, "cosine": 2}[index.metric], {"float32": 0, "float16": 1}[index.storage]
    head = struct.pack("<8sIIBBHIQQqIqi", b"SIMKHNSW", 1, index.dim, metric, storage, index.M, index.ef_construction,
                       index._seed, len(st_["labels"]), index.id_bound, index.ef, int(st_["entry"]),
                       int(st_["max_level"]))
    parts = [head, struct.pack("<I", zlib.crc32(head))]
    for name, key, dtype in [("labels", "labels", np.int64), ("levels", "levels", np.uint8),
                             ("deleted", "deleted", np.uint8), ("vectors", "vectors", np.float32),
                             ("lcounts", "link_counts", np.uint32), ("link_ids", "link_ids", np.uint32)]:
        b = np.ascontiguousarray(st_[key], dtype=dtype).tobytes()
        parts.append(name.encode().ljust(8, b"\0") + struct.pack("<QI", len(b), zlib.crc32(b)) + b)
    return b"".join(parts)


def test_sections_are_aligned_and_version_1_files_still_load(tmp_path):
    x = _data(333, 20, 10)  # an odd node count: version 1 put the vectors at an odd offset
    index = simkern.HNSWIndex(20)
    index.add(x)
    want = index.search(x[:20], k=5)
    data = index._to_bytes()
    (tmp_path / "v3.skh").write_bytes(data)
    with importlib.import_module("simkern._container").Reader(tmp_path / "v3.skh", "HNSW", (3,)) as r:
        offset = r.sections["vectors"][0]
    assert offset % 64 == 0
    np.testing.assert_array_equal(np.frombuffer(data, np.float32, 333 * 20, offset).reshape(333, 20),
                                  index.get_vectors(np.arange(333)))
    (tmp_path / "v1.skh").write_bytes(_v1_bytes(index))
    for mmap in (False, True):
        old = simkern.HNSWIndex.load(tmp_path / "v1.skh", mmap=mmap)
        for a, b in zip(old.search(x[:20], k=5), want):
            np.testing.assert_array_equal(a, b)


def test_crafted_levels_do_not_allocate_beyond_the_file(tmp_path):
    index = simkern.HNSWIndex(4, M=1024)
    index.add(_data(3000, 4, 11))
    st_ = index._core.state()
    levels = np.full(3000, 31, np.uint8)
    counts = np.zeros(3000 * 32, np.uint32)
    bad = simkern.HNSWIndex(4, M=1024)
    with pytest.raises(ValueError, match="levels"):
        bad._core.restore(st_["labels"], levels, st_["deleted"], st_["vectors"], counts, np.zeros(0, np.uint32),
                          0, 31)


def _mapped_index(tmp_path, n=2000, dim=32):
    x = _data(n, dim, 12)
    index = simkern.HNSWIndex(dim)
    index.add(x)
    path = tmp_path / "m.skh"
    index.save(path)
    time.sleep(0.05)  # later writes get a later modification time than the one seen at mapping time
    return x, path, simkern.HNSWIndex.load(path, mmap=True)


def test_file_rewritten_under_the_mapping_raises(tmp_path):
    x, path, mapped = _mapped_index(tmp_path)
    mapped.search(x[:3], k=3)
    data = bytearray(path.read_bytes())
    data[-20000:-10000] = bytes(10000)
    with open(path, "r+b") as f:  # in place, same size
        f.write(data)
    with pytest.raises(ValueError, match="changed on disk"):
        mapped.search(x[:3], k=3)
    with pytest.raises(ValueError, match="changed on disk"):
        mapped.get_vectors([0])


def test_file_truncated_under_the_mapping_raises_not_crashes(tmp_path):
    x, path, mapped = _mapped_index(tmp_path)
    os.truncate(path, 1000)
    with pytest.raises(ValueError, match="changed on disk"):
        mapped.search(x[:3], k=3)
    with pytest.raises(ValueError):
        pickle.dumps(mapped)


def test_a_page_that_vanishes_during_a_read_is_caught():
    """The SIGBUS defence itself: truncate a mapped file and read past the new end (in a child process, so that a
    failure of the defence cannot take the test runner with it)."""
    code = textwrap.dedent("""
        import os, tempfile, numpy as np
        from simkern import _core
        path = os.path.join(tempfile.mkdtemp(), "f")
        with open(path, "wb") as f:
            f.write(np.arange(1 << 20, dtype=np.uint8).tobytes())
        m = _core._MappedFile(path)
        a = np.frombuffer(m, np.uint8)
        assert a[-1] == 255
        os.truncate(path, 4096)
        total = int(a[8192:].sum())   # pages that no longer exist: zeros, not SIGBUS
        try:
            m.check()
            print("no error")
        except ValueError as e:
            print("caught", total, "truncated" in str(e) or "changed" in str(e))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "caught 0 True"


def test_saving_over_a_mapped_file_is_safe(tmp_path):
    x, path, mapped = _mapped_index(tmp_path)
    want = mapped.search(x[:10], k=5)
    other = simkern.HNSWIndex(32)
    other.add(_data(100, 32, 13))
    other.save(path)  # a new file renamed over the name: the mapped one is untouched
    for a, b in zip(mapped.search(x[:10], k=5), want):
        np.testing.assert_array_equal(a, b)
    mapped.save(path)
    again = simkern.HNSWIndex.load(path)
    for a, b in zip(again.search(x[:10], k=5), want):
        np.testing.assert_array_equal(a, b)


# -- ids and magnitudes --------------------------------------------------------------------------------------------
def test_empty_index_saves_and_loads(tmp_path):
    index = simkern.HNSWIndex(4)
    index.save(tmp_path / "e.skh")
    for mmap in (False, True):
        again = simkern.HNSWIndex.load(tmp_path / "e.skh", mmap=mmap)
        assert len(again) == 0 and (again.search(np.ones(4, np.float32), k=2)[1] == -1).all()
    assert len(pickle.loads(pickle.dumps(index))) == 0


def test_id_domain():
    x = _data(3, 8, 14)
    index = simkern.HNSWIndex(8)
    for bad in ([-1, 0, 1], [0, 1, 2**63 - 1], np.array([0, 1, 2**64 - 1], np.uint64), [0, 1, 2**70]):
        with pytest.raises(ValueError, match="ids"):
            index.add(x, bad)
    assert len(index) == 0
    index.add(x, [0, 5, 2**63 - 2])
    assert 2**63 - 2 in index and 2**70 not in index and -1 not in index and 2**63 - 1 not in index
    again = pickle.loads(pickle.dumps(index))
    assert sorted(again.ids().tolist()) == [0, 5, 2**63 - 2]
    with pytest.raises(ValueError, match="2\\*\\*63-2"):
        again.add(x[:1])  # the next default id would not fit
    buf = io.BytesIO()
    index._write(buf)
    assert simkern.HNSWIndex._from_bytes(buf.getvalue(), "mem").ids().tolist() == [0, 5, 2**63 - 2]


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_magnitudes_that_would_overflow_are_refused(metric):
    index = simkern.HNSWIndex(8, metric=metric)
    big = np.full((2, 8), 1e20, np.float32)
    if metric == "cosine":
        index.add(big)  # normalised: fine
    else:
        with pytest.raises(ValueError, match="x row 0 has norm"):
            index.add(big)
    index.add(_data(50, 8, 15))
    huge = np.full((1, 8), 1e38, np.float32)
    if metric == "cosine":  # queries are normalised in float64 first
        assert (index.search(huge, k=3)[1] >= 0).all()
    else:
        with pytest.raises(ValueError, match="queries row 0 has norm .* beyond"):
            index.search(huge, k=3)
    tiny = _data(20, 8, 16) * np.float32(1e-30)
    if metric == "cosine":
        index.add(tiny)  # norms computed in float64: not "all zeros"
        _, ids = index.search(tiny[:5], k=1)
        assert (ids[:, 0] >= 50).all()


def test_out_of_range_integer_arguments_name_the_argument():
    index = simkern.HNSWIndex(8)
    index.add(_data(20, 8, 17))
    for kwargs in ({"k": 2**63}, {"k": 2**40}, {"ef": 2**63}):
        with pytest.raises(ValueError, match=list(kwargs)[0]):
            index.search(_data(1, 8), **kwargs)
    with pytest.raises(ValueError, match="ef_construction"):
        simkern.HNSWIndex(8, ef_construction=2**40)
    scores, ids = index.search(_data(1, 8), k=3, threads=2**31)  # clamped to the pool's limit
    assert (ids >= 0).all()


# -- stateful model ------------------------------------------------------------------------------------------------
DIM = 6


class HNSWMachine(RuleBasedStateMachine):
    """HNSWIndex against a dict of live id -> vector; with ef >= n every search is exact, so it is checked against
    brute force over the model."""

    @initialize(metric=st.sampled_from(["l2", "ip"]), storage=st.sampled_from(["float32", "float16"]))
    def setup(self, metric, storage):
        self.index = simkern.HNSWIndex(DIM, metric=metric, storage=storage, M=4, ef_construction=8)
        self.model = {}
        self.next_id = 0
        self.rng = np.random.default_rng(0)
        self.tmp = None

    def _vectors(self, n):
        x = self.rng.standard_normal((n, DIM)).astype(np.float32)
        if n > 2 and self.rng.random() < 0.3:
            x[1:] = x[0]  # duplicates
        return x

    @rule(n=st.integers(0, 40), explicit=st.booleans())
    def add(self, n, explicit):
        x = self._vectors(n)
        ids = np.arange(self.next_id, self.next_id + n) if not explicit else \
            np.arange(self.next_id + 10, self.next_id + 10 + n)
        self.index.add(x, ids if explicit else None)
        self.model.update({int(i): v for i, v in zip(ids, x)})
        if n:
            self.next_id = int(ids.max()) + 1

    @rule(n=st.integers(1, 60), at=st.integers(0, 60))
    def interrupted_add(self, n, at):
        # One thread: the prefix kept is then exactly `at` (with more threads it depends on timing, which would
        # make hypothesis' replays draw differently; test_interrupted_add_keeps_exactly_a_prefix covers threads=2).
        threads = 1
        x = self._vectors(n)
        _core._hnsw_interrupt_after(at)
        try:
            self.index.add(x, threads=threads)
            done = n
        except KeyboardInterrupt:
            done = self.index._core.last_add_count
            assert done == at
        finally:
            _core._hnsw_interrupt_after(-1)
        ids = np.arange(self.next_id, self.next_id + done)
        self.model.update({int(i): v for i, v in zip(ids, x[:done])})
        if done:
            self.next_id += done

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def replace(self, data):
        key = data.draw(st.sampled_from(sorted(self.model)))
        v = self._vectors(1)
        self.index.add(v, [key], replace=True)
        self.model[key] = v[0]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove(self, data):
        keys = data.draw(st.lists(st.sampled_from(sorted(self.model)), min_size=1, max_size=5, unique=True))
        self.index.remove(keys)
        for key in keys:
            del self.model[key]

    @rule()
    def compact(self):
        self.index.compact()

    @rule(how=st.sampled_from(["pickle", "save", "mmap"]))
    def round_trip(self, how):
        if how == "pickle":
            self.index = pickle.loads(pickle.dumps(self.index))
            return
        import tempfile
        self.tmp = tempfile.mkdtemp()
        path = os.path.join(self.tmp, "i.skh")
        self.index.save(path)
        self.index = simkern.HNSWIndex.load(path, mmap=how == "mmap")
        if how == "mmap":
            self.index.compact()  # writable again

    @rule(k=st.integers(1, 8))
    def search(self, k):
        q = self.rng.standard_normal((3, DIM)).astype(np.float32)
        n = len(self.model)
        scores, ids = self.index.search(q, k=k, ef=max(n, k, 1) + 8)
        keys = np.array(sorted(self.model), np.int64)
        assert (ids[:, min(k, n):] == -1).all()
        if not n:
            return
        vecs = np.stack([self.model[int(i)] for i in keys]).astype(np.float64)
        if self.index.storage == "float16":
            vecs = vecs  # the final scores are float32-exact re-scores: compare as float32
        d = ((q[:, None, :] - vecs[None]) ** 2).sum(-1) if self.index.metric == "l2" else -(q @ vecs.T)
        for row in range(3):
            got = ids[row, :min(k, n)]
            assert (got >= 0).all() and len(set(got.tolist())) == len(got)
            want = np.sort(d[row])[:min(k, n)]
            have = d[row][np.searchsorted(keys, got)]
            np.testing.assert_allclose(np.sort(have), want, rtol=1e-4, atol=1e-4)

    @invariant()
    def same_ids(self):
        if hasattr(self, "index"):
            assert len(self.index) == len(self.model)
            assert sorted(self.index.ids().tolist()) == sorted(self.model)


HNSWMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
test_hnsw_state_machine = HNSWMachine.TestCase
