"""Fuzz targets: one function per loader / payload, each taking the fuzzer's bytes.

Contract checked by every target: for any input, simkern raises ValueError or TypeError (a corrupt file or state
is refused) or accepts it; an accepted object is then used a little (search, encode, ...), which must not fail
either way. Any other exception escapes the target and is a finding (atheris / libFuzzer stops and writes the
input as crash-*); so is a process crash (a signal; an ASan / UBSan report when run on the sanitizer build).

    hnsw_file        HNSWIndex.load of a mutated saved file; control bit MMAP: load(..., mmap=True)
    hnsw_pickle      pickle.loads of an HNSWIndex whose state {"data": ...} carries the mutated payload
    pq_index_file    PQIndex.load of a mutated saved file
    ivfpq_file       IVFPQIndex.load of a mutated saved file; control bit MMAP: load(..., mmap=True)
    pq_pickle        pickle.loads of a ProductQuantizer / OPQ / PQIndex whose state was mutated field by field
    multivector_dir  MultiVectorIndex.load of a saved folder with one file replaced by the mutated bytes
    ragged           Ragged(tokens, offsets) / as_ragged / Ragged pickle state with fuzzed offsets and shapes, then
                     maxsim, maxsim_topk, maxsim_pairs against a NumPy reference
    hnswlib_file     simkern.compat.hnswlib's readers of hnswlib's own files (Index.load_index, BFIndex.load_index:
                     control bit 0), in the space of control bits 1-2; the format has no checksums, so every
                     mutated byte reaches the checks; an accepted index is searched, grown, saved and reloaded

File targets take a control byte first: FIX (0x01) repairs the checksums of the mutated bytes (CRC-32s of the
HNSW header and sections, the PQIndex trailer, the manifest's SHA-256 of the replaced file) so that inputs reach
the checks behind them; for HNSW, EDIT (0x04) reads the rest as edits of a saved file (header fields, array
entries and lengths; see edit_hnsw), re-serialised with consistent lengths and checksums, which reaches the C++
graph checks and the search far more often than byte mutations (atheris sees only Python coverage).

Pickle targets never hand raw mutated bytes to pickle (that would fuzz the pickle module, and arbitrary pickles
execute code): they build a well-formed pickle whose *state* is mutated, so that only the classes' __setstate__
sees bad data - there a pickle.UnpicklingError / EOFError / struct.error / KeyError ... is a finding like any
other exception.

Inputs are decoded with ``Bytes`` (below), not atheris.FuzzedDataProvider, so a saved crash input replays without
atheris (tests/test_fuzz_regressions.py, ``fuzz_target.py NAME SEEDS --repro FILE``).
"""

from __future__ import annotations

import copy
import copyreg
import hashlib
import io
import json
import os
import pickle
import shutil
import struct
import tempfile
import traceback
import zlib

import numpy as np
import simkern
import simkern.hnsw
from simkern import _container
from simkern.ragged import as_ragged

ALLOWED = (ValueError, TypeError)

# Findings already reported, each with an xfail(strict=True) test in tests/test_fuzz_regressions.py:
# (exception types, files, function of the innermost simkern frame, regression test), e.g.
#     (("EOFError", "TokenError"), ("multivector.py",), "load", "test_multivector_load_malformed_npy"),
# fuzz_target.py lets the fuzzer go on past them (libFuzzer would stop at the first) and prints "known finding"
# once per signature; anything else is new. Remove an entry with its fix (strict xfail fails the suite then).
# Empty: the findings so far were fixed in a01d4a1.
KNOWN: list[tuple[tuple[str, ...], tuple[str, ...], str, str]] = [
]


class AcceptedInvalid(AssertionError):
    """A loader accepted an inconsistent object (the root cause of whatever fails when it is used); ``where`` is
    the (file, function) that should have refused it."""

    def __init__(self, message: str, where: tuple[str, str]):
        super().__init__(message)
        self.where = where
FIX, MMAP, EDIT = 0x01, 0x02, 0x04
MV_FILES = ["manifest.json", "tokens.npy", "offsets.npy", "ids.npy", "alive.npy", "ann.bin", "fdes.npy",
            "index.skc"]  # the files of a version 1 folder, then the container of version 2
MV_V1 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "mv_v1")
BASE = None  # set by fuzz_target.py: SEEDS/<target>/base
_work: str | None = None


def _work_dir() -> str:
    """Scratch files of this process: under $SIMKERN_FUZZ_TMP (run.py points it into its work folder, removed with
    it; libFuzzer exits without running Python's atexit), else a new temporary folder."""
    global _work
    if _work is None:
        parent = os.environ.get("SIMKERN_FUZZ_TMP")
        if parent:
            os.makedirs(parent, exist_ok=True)
        _work = tempfile.mkdtemp(prefix="simkern-fuzz-", dir=parent or None)
    return _work


class Bytes:
    """Deterministic decoding of the fuzzer's bytes into choices (zeros once the input is exhausted)."""

    def __init__(self, data: bytes):
        self.data, self.pos = bytes(data), 0

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out + bytes(n - len(out))

    def uint(self, nbytes: int = 1) -> int:
        return int.from_bytes(self.take(nbytes), "little")

    def pick(self, seq):
        return seq[self.uint(1) % len(seq)]

    def range(self, lo: int, hi: int) -> int:
        """An int in lo..hi (inclusive)."""
        span = hi - lo + 1
        return lo + self.uint(1 if span <= 256 else 2 if span <= 65536 else 8) % span

    def bool(self) -> bool:
        return bool(self.uint(1) & 1)

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out


def signature(exc: BaseException) -> tuple[str, str, str]:
    """(exception type, file, function) of the innermost frame in simkern (else the innermost frame)."""
    if isinstance(exc, AcceptedInvalid):
        return (type(exc).__name__,) + exc.where
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}simkern{os.sep}" in f.filename] or frames[-1:]
    where = ours[-1] if ours else None
    return (type(exc).__name__, os.path.basename(where.filename) if where else "?", where.name if where else "?")


def known(exc: BaseException) -> str | None:
    """The regression test of a known finding with this exception's signature, else None."""
    sig = signature(exc)
    for types, files, func, test in KNOWN:
        if sig[0] in types and sig[1] in files and sig[2] == func:
            return test
    return None


# -- helpers ------------------------------------------------------------------------------------------------------
def _crc(b) -> bytes:
    return struct.pack("<I", zlib.crc32(bytes(b)))


_HNSW_HEADER = struct.Struct("<8sIIBBHIQQqIqi")  # + CRC32; then sections (python/simkern/hnsw.py, versions 1, 2)
_HNSW_SECTIONS = [("labels", np.int64), ("levels", np.uint8), ("deleted", np.uint8), ("nextdup", np.uint32),
                  ("vectors", np.float32), ("lcounts", np.uint32), ("link_ids", np.uint32)]  # v1: no nextdup
_HNSW_EDIT_VALUES = [0, 1, 2, -1, 3, 7, 15, 16, 255, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, -(2**63), 2**64 - 1]


def _hnsw_section_start(version: int, off: int) -> int:
    """Where a section's bytes start, given the offset of its header: v1 20-byte headers, v2 24-byte headers and
    zero padding to a multiple of 64."""
    if version >= 2:
        off += 24
        return off + (-off % 64)
    return off + 20


def fix_container(p: bytearray) -> None:
    """Recompute the checksums of a (mutated) container file (python/simkern/_container.py): the header's (over
    its first 44 bytes and the meta) and every section's that the section lengths let us find."""
    head, section = _container._HEAD.size, _container._SECTION.size
    if len(p) < head:
        return
    (meta_len,) = struct.unpack_from("<Q", p, 32)
    meta_len = min(meta_len, len(p) - head)
    p[44:48] = struct.pack("<I", zlib.crc32(bytes(p[head:head + meta_len]), zlib.crc32(bytes(p[:44]))))
    off = head + meta_len + _container._pad(meta_len)
    while off + section <= len(p) - _container._TRAILER.size:
        (length,) = struct.unpack_from("<Q", p, off + 32)
        start = off + section
        p[off + 40:off + 44] = _crc(p[start:min(len(p), start + length)])
        off = start + length + _container._pad(length)


def fix_hnsw(p: bytearray) -> None:
    """Recompute the header CRC and every section CRC that the (mutated) section lengths let us find: the
    container (version 3) or the layout of versions 1 and 2."""
    if p[:len(_container.MAGIC)] == _container.MAGIC:
        fix_container(p)
        return
    head = _HNSW_HEADER.size
    if len(p) < head + 4:
        return
    p[head:head + 4] = _crc(p[:head])
    (version,) = struct.unpack_from("<I", p, 8)
    off = head + 4
    while off + 20 <= len(p):
        (length,) = struct.unpack_from("<Q", p, off + 8)
        start = _hnsw_section_start(version, off)
        p[off + 16:off + 20] = _crc(p[start:min(len(p), start + length)])
        off = start + length


_HNSW_META = ["dim", "metric", "storage", "M", "ef_construction", "seed", "nodes", "next_id", "ef", "entry",
              "max_level"]  # the container's meta keys, in the order of the version 1/2 header after the version
_CONTAINER_NAMES = {"nextdup": "next_dup", "lcounts": "link_counts"}  # other sections: the same name


def _hnsw_serialise(head: list, arrays: dict) -> bytes:
    """Header fields (the version 1/2 header's order: magic, version, dim, metric code, ...) and the sections, in
    the layout of version head[1] (1, 2 or the container's 3; any other value: 3)."""
    version = head[1] if head[1] in (1, 2, 3) else 3
    if version == 3:
        meta = dict(zip(_HNSW_META, head[2:]))
        codes = {v: k for k, v in simkern.hnsw._METRICS.items()}, {v: k for k, v in simkern.hnsw._STORAGES.items()}
        meta["metric"] = codes[0].get(meta["metric"], meta["metric"])  # an unknown code stays a number
        meta["storage"] = codes[1].get(meta["storage"], meta["storage"])
        meta["link_total"] = int(arrays["link_ids"].size)
        shaped = dict(arrays)
        dim = int(head[2])
        if dim and shaped["vectors"].size % dim == 0:  # (rows, dim), as save writes it
            shaped["vectors"] = shaped["vectors"].reshape(-1, dim)
        sections = [_container.SectionSpec.of(_CONTAINER_NAMES.get(name, name), shaped[name])
                    for name, _ in _HNSW_SECTIONS]
        buf = io.BytesIO()
        _container.write(buf, "HNSW", simkern.hnsw._CONTAINER_VERSION, meta, sections)
        return buf.getvalue()
    header = _HNSW_HEADER.pack(*head)
    out = bytearray(header + _crc(header))
    for name, _ in _HNSW_SECTIONS:
        if name == "nextdup" and version == 1:
            continue
        data = arrays[name].tobytes()
        tag = name.encode().ljust(8, b"\0")
        section_head = struct.pack("<8sQ", tag, len(data)) + _crc(data) + (bytes(4) if version >= 2 else b"")
        start = _hnsw_section_start(version, len(out))
        out += section_head
        out += bytes(start - len(out))
        out += data
    return bytes(out)


def _hnsw_parse(base: bytes) -> tuple[list, dict]:
    """Header fields (in the version 1/2 header's order) and section arrays of a saved file: a container
    (version 3, what save writes) or a version 2 file."""
    if base[:len(_container.MAGIC)] == _container.MAGIC:
        with _container.Reader(io.BytesIO(base), "HNSW", (simkern.hnsw._CONTAINER_VERSION,)) as r:
            m = dict(r.meta)
            m["metric"], m["storage"] = simkern.hnsw._METRICS[m["metric"]], simkern.hnsw._STORAGES[m["storage"]]
            head = [simkern.hnsw._MAGIC, simkern.hnsw._CONTAINER_VERSION] + [int(m[k]) for k in _HNSW_META]
            arrays = {name: r.read(_CONTAINER_NAMES.get(name, name)).reshape(-1) for name, _ in _HNSW_SECTIONS}
        return head, arrays
    head = list(_HNSW_HEADER.unpack_from(base, 0))
    arrays, off = {}, _HNSW_HEADER.size + 4
    for name, dtype in _HNSW_SECTIONS:
        (length,) = struct.unpack_from("<Q", base, off + 8)
        start = _hnsw_section_start(2, off)
        arrays[name] = np.frombuffer(base, dtype, length // np.dtype(dtype).itemsize, start).copy()
        off = start + length
    return head, arrays


def hnsw_as_version(base: bytes, version: int) -> bytes:
    """A saved file rewritten in the layout of ``version`` (1, 2: the formats before the container; 3)."""
    head, arrays = _hnsw_parse(base)
    head[1] = version
    return _hnsw_serialise(head, arrays)


def edit_hnsw(base: bytes, b: Bytes) -> bytes:
    """A saved HNSW file (the container, version 3) with fields changed - header (meta) values, array entries,
    array lengths; setting the version field to 1 or 2 writes that older layout - and every length, padding and
    checksum made consistent again, so that the edits reach the graph checks (and the searches) behind them."""
    head, arrays = _hnsw_parse(base)
    for _ in range(b.range(1, 4)):
        what = b.range(0, 2 + len(_HNSW_SECTIONS))
        if what < 2:  # a header field (not the magic)
            i = b.range(1, len(head) - 1)
            head[i] = b.pick(_HNSW_EDIT_VALUES) if b.bool() else head[i] + b.range(-2, 2)
            continue
        name, dtype = _HNSW_SECTIONS[(what - 2) % len(_HNSW_SECTIONS)]
        arr = arrays[name]
        op = b.range(0, 3)
        if op <= 1 and arr.size:   # one entry: a special value, or a small step
            i = b.range(0, arr.size - 1)
            if dtype == np.float32:
                arr[i] = b.pick([np.nan, np.inf, -np.inf, 3e38, -0.0, 1e-40, 2.0**62, float(b.range(-2, 2))])
            else:
                value = b.pick(_HNSW_EDIT_VALUES) if op == 0 else int(arr[i]) + b.range(-2, 2)
                arr[i] = np.array(value % 2**64, np.uint64).astype(dtype)  # wraps like a corrupted file would
        elif op == 2:              # length: drop or repeat entries at the end
            arrays[name] = arr[:b.range(0, arr.size)] if b.bool() else np.concatenate([arr, arr[:b.range(1, 4)]])
        elif arr.size > 1:         # swap two entries
            i, j = b.range(0, arr.size - 1), b.range(0, arr.size - 1)
            arr[i], arr[j] = arr[j], arr[i]
    ranges = [None, (0, 2**32 - 1), (0, 2**32 - 1), (0, 255), (0, 255), (0, 2**16 - 1), (0, 2**32 - 1),
              (0, 2**64 - 1), (0, 2**64 - 1), (-(2**63), 2**63 - 1), (0, 2**32 - 1), (-(2**63), 2**63 - 1),
              (-(2**31), 2**31 - 1)]
    for i, bounds in enumerate(ranges):
        if bounds:
            lo, hi = bounds
            head[i] = lo + (int(head[i]) - lo) % (hi - lo + 1)
    return _hnsw_serialise(head, arrays)


def fix_pq_index(p: bytearray) -> None:
    """The container's checksums (version 2, what save writes), or the version 1 file's trailing CRC."""
    if p[:len(_container.MAGIC)] == _container.MAGIC:
        fix_container(p)
    elif len(p) >= 4:
        p[-4:] = _crc(p[:-4])


def _atomic_write(path: str, data: bytes) -> None:
    # a fresh inode every time: an index still mapping the previous file keeps its own copy
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _rows(seed: int, n: int, dim: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _round_trip(cls, state):
    """pickle.loads of the stream that pickling a ``cls`` object whose __getstate__ returned ``state`` writes
    (NEWOBJ of the class, then BUILD: ``__setstate__(state)``)."""
    blank = cls.__new__(cls)

    class Writer(pickle.Pickler):
        def reducer_override(self, obj):
            return (copyreg.__newobj__, (cls,), state) if obj is blank else NotImplemented

    buf = io.BytesIO()
    Writer(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(blank)
    return pickle.loads(buf.getvalue())


def _load_then_use(load, use, seed: int, check=None) -> None:
    """The shape of every file / state target: ``load()`` may refuse the input (an ALLOWED error: fine); an object
    it accepts goes through ``check(obj)`` (any error there is a finding) and ``use(obj, seed)`` (ALLOWED errors
    fine, anything else a finding)."""
    try:
        obj = load()
    except ALLOWED:
        return
    if check is not None:
        check(obj)
    try:
        use(obj, seed)
    except ALLOWED:
        pass


# -- exercising accepted objects -----------------------------------------------------------------------------------
MAX_DIM = 4096  # accepted objects wider than this are not searched (the fuzzer would spend its time allocating)


def use_hnsw(index: simkern.HNSWIndex, seed: int) -> None:
    repr(index)
    n = len(index)
    ids = index.ids()
    assert ids.shape == (n,), (ids.shape, n)
    if index.dim > MAX_DIM:
        return
    q = _rows(seed, 2, index.dim)
    for k in (1, 3):
        scores, got = index.search(q, k, threads=1)
        assert scores.shape == got.shape == (2, k)
        assert np.isin(got[got >= 0], ids).all(), "search returned an id that is not live"
    if n:
        index.search(q, 2, filter=ids[:1], threads=1)
        index.get_vectors(ids[:2])
        assert ids[0] in index
        index.remove(ids[:1])
        index.compact(threads=1)
        index.search(q, 2, threads=1)
        if int(ids.max()) < 2**62:
            index.add(q[:1], [int(ids.max()) + 1], threads=1)


def use_pq(pq, seed: int) -> None:
    repr(pq)
    if not pq.is_trained or pq.dim > MAX_DIM:
        return
    x = _rows(seed, 3, pq.dim)
    codes = pq.encode(x, threads=1)
    pq.decode(codes)
    pq.adc(x, codes, threads=1)
    pq.distance_tables(x, threads=1)


def check_pq_index_state(index: simkern.PQIndex) -> None:
    """Raise AcceptedInvalid when an unpickled PQIndex holds codes / vectors of the wrong type or shape."""
    codes, vectors, pq = index._snap.codes, index._snap.vectors, index.pq
    problem = None
    try:
        keep = bool(index.keep_vectors)
    except ValueError:  # an array: every use raises ValueError, which the contract allows
        keep = False
    if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != pq.m:
        problem = f"codes {type(codes).__name__} {getattr(codes, 'dtype', '')} {getattr(codes, 'shape', '')}"
    elif keep and (not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32
                                 or vectors.shape != (codes.shape[0], pq.dim)):
        problem = f"vectors {type(vectors).__name__} {getattr(vectors, 'dtype', '')} {getattr(vectors, 'shape', '')}"
    if problem:
        raise AcceptedInvalid(f"PQIndex.__setstate__ accepted {problem} (m={pq.m}, dim={pq.dim})",
                              ("pq_index.py", "__setstate__"))


def use_pq_index(index: simkern.PQIndex, seed: int) -> None:
    repr(index)
    n = len(index)
    _ = index.codes  # the property must not raise on a loaded index
    if not index.is_trained or index.dim > MAX_DIM:
        return
    q = _rows(seed, 2, index.dim)
    index.search(q, 3, threads=1)
    if n:
        index.search(q, 2, filter=np.arange(n) % 2 == 0, threads=1)
    if index.keep_vectors:
        index.search(q, 2, rerank=2, threads=1)
    index.add(q, threads=1)
    index.search(q, 3, threads=1)


def use_ivfpq(index: simkern.IVFPQIndex, seed: int) -> None:
    repr(index)
    n = len(index)
    ids = index.ids()
    assert ids.shape == (n,), (ids.shape, n)
    assert int(index.list_sizes().sum()) == n
    if not index.is_trained or index.dim > MAX_DIM:
        return
    q = _rows(seed, 2, index.dim)
    _, got = index.search(q, 3, nprobe=index.nlist, threads=1)
    assert np.isin(got[got >= 0], ids).all(), "search returned an id that is not stored"
    if n:
        index.search(q, 2, nprobe=1, filter=ids[::2], threads=1)
        index.remove(ids[:1])
    if index.keep_vectors:
        index.search(q, 2, rerank=2, threads=1)
    index.add(q, threads=1)
    index.search(q, 3, nprobe=index.nlist, threads=1)


def use_multivector(index: simkern.MultiVectorIndex, seed: int) -> None:
    repr(index)
    ids = index.ids()
    assert ids.shape == (len(index),)
    index.docs()
    if index.dim > MAX_DIM:
        return
    q = [_rows(seed, 2, index.dim)]
    scores, got = index.search(q, 3, threads=1)
    assert np.isin(got[got >= 0], ids).all(), "search returned an id that is not live"
    if len(ids):
        index.remove(ids[:1])
        index.search(q, 2, threads=1)


# -- targets ---------------------------------------------------------------------------------------------------------
_hnsw_bases: list | None = None


def _hnsw_payload(data: bytes) -> bytes:
    """Control byte, then the file's bytes, or (EDIT) the choice of a saved base file and the edits to apply."""
    global _hnsw_bases
    control, payload = data[0], bytearray(data[1:])
    if control & EDIT:
        if _hnsw_bases is None:
            _hnsw_bases = []
            for name in sorted(os.listdir(BASE)):
                with open(os.path.join(BASE, name), "rb") as f:
                    _hnsw_bases.append(f.read())
        b = Bytes(payload)
        return edit_hnsw(_hnsw_bases[b.uint(1) % len(_hnsw_bases)], b)
    if control & FIX:
        fix_hnsw(payload)
    return bytes(payload)


def hnsw_file(data: bytes) -> None:
    if not data:
        return
    control, payload = data[0], _hnsw_payload(data)
    path = os.path.join(_work_dir(), "index.skh")
    _atomic_write(path, bytes(payload))
    _load_then_use(lambda: simkern.HNSWIndex.load(path, mmap=bool(control & MMAP)), use_hnsw, len(data))


def hnsw_pickle(data: bytes) -> None:
    if not data:
        return
    payload = _hnsw_payload(data)
    _load_then_use(lambda: _round_trip(simkern.HNSWIndex, {"data": bytes(payload)}), use_hnsw, len(data))


def _file_target(data: bytes, fix, filename: str, load, use) -> None:
    """A file target: control byte (FIX: repair the checksums with ``fix``), then the bytes, written to ``filename``
    and loaded by ``load(path, control)``."""
    if not data:
        return
    control, payload = data[0], bytearray(data[1:])
    if control & FIX:
        fix(payload)
    path = os.path.join(_work_dir(), filename)
    _atomic_write(path, bytes(payload))
    _load_then_use(lambda: load(path, control), use, len(data))


def pq_index_file(data: bytes) -> None:
    _file_target(data, fix_pq_index, "index.pqi", lambda path, control: simkern.PQIndex.load(path), use_pq_index)


def ivfpq_file(data: bytes) -> None:
    _file_target(data, fix_container, "index.ivf",
                 lambda path, control: simkern.IVFPQIndex.load(path, mmap=bool(control & MMAP)), use_ivfpq)


_PQ_CLASSES = {"ProductQuantizer": simkern.ProductQuantizer, "OPQ": simkern.OPQ, "PQIndex": simkern.PQIndex}
_pq_bases: list | None = None
_DTYPES = [np.float32, np.float64, np.float16, np.uint8, np.int8, np.int32, np.int64, np.uint64, np.bool_,
           np.complex64, object]
_INTS = [0, 1, 2, 3, 4, 7, 8, 16, 255, 256, -1, -(2**31), 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, 10**30]
_FLOATS = [0.0, -0.0, 1.5, 1e38, 1e300, float("inf"), float("-inf"), float("nan")]
_STRINGS = ["l2", "ip", "cosine", "", "L2", "kmeans++", "float16", "\x00"]


def _leaves(state, path=()):
    """(path, value) of every field of a nested state (dicts and lists/tuples)."""
    if isinstance(state, dict):
        for k, v in state.items():
            yield from _leaves(v, path + (k,))
    if path:
        yield path, state


def _set(state, path, value):
    for k in path[:-1]:
        state = state[k]
    state[path[-1]] = value


def fuzz_array(b: Bytes, old) -> np.ndarray:
    """A mutated version of ``old`` (an array, possibly None) or a new array."""
    base = np.asarray(old) if isinstance(old, np.ndarray) else np.zeros(4, np.float32)
    op = b.uint(1) % 8
    if op == 0:   # new dtype
        dtype = b.pick(_DTYPES)
        return base.astype(dtype) if dtype is not object else base.astype(object)
    if op == 1:   # reshape / resize
        shape = tuple(b.range(0, 5) for _ in range(b.range(0, 3)))
        size = int(np.prod(shape)) if shape else 1
        flat = base.reshape(-1)
        return (np.resize(flat, size) if flat.size else np.zeros(size, base.dtype)).reshape(shape)
    if op == 2 and base.size:   # overwrite some values
        out = base.copy().reshape(-1)
        for _ in range(b.range(1, 4)):
            i = b.range(0, out.size - 1)
            try:
                out[i] = b.pick(_FLOATS) if out.dtype.kind in "fc" else b.pick(_INTS)
            except (OverflowError, ValueError):
                out[i] = b.uint(1)
        return out.reshape(base.shape)
    if op == 3:   # non-contiguous view
        return base[::2] if base.ndim else base
    if op == 4:   # transpose
        return base.T
    if op == 5:   # raw bytes as a new array
        dtype = np.dtype(b.pick(_DTYPES[:-1]))
        raw = b.take(b.range(0, 64))
        raw = raw[:len(raw) - len(raw) % dtype.itemsize]
        return np.frombuffer(raw, dtype).copy()
    if op == 6:   # read-only
        out = base.copy()
        out.flags.writeable = False
        return out
    return base[:b.range(0, len(base))] if base.ndim else base   # truncated


def fuzz_value(b: Bytes, old):
    kind = b.uint(1) % 9
    if kind == 0:
        return b.pick(_INTS)
    if kind == 1:
        return b.pick(_FLOATS)
    if kind == 2:
        return b.bool()
    if kind == 3:
        return None
    if kind == 4:
        return b.pick(_STRINGS)
    if kind in (5, 6):
        return fuzz_array(b, old)
    if kind == 7:
        return np.asarray(old).tolist() if isinstance(old, np.ndarray) else [old]
    if isinstance(old, int) and not isinstance(old, bool):
        return old + b.range(-3, 3)
    return b.take(b.range(0, 16))


def pq_pickle(data: bytes) -> None:
    global _pq_bases
    if _pq_bases is None:
        _pq_bases = []
        for name in sorted(os.listdir(BASE)):
            with open(os.path.join(BASE, name), "rb") as f:
                _pq_bases.append(pickle.load(f))  # our own make_seeds.py output
    if not data:
        return
    b = Bytes(data)
    cls_name, base_state = _pq_bases[b.uint(1) % len(_pq_bases)]
    state = copy.deepcopy(base_state)
    try:  # building the input: a NumPy error here (a value the dtype cannot hold, ...) just skips the input
        for _ in range(b.range(0, 3)):
            fields = list(_leaves(state))
            path, old = fields[b.uint(1) % len(fields)]
            _set(state, path, fuzz_value(b, old))
    except Exception:
        return
    cls = _PQ_CLASSES[cls_name]
    is_index = cls is simkern.PQIndex
    _load_then_use(lambda: _round_trip(cls, state), use_pq_index if is_index else use_pq, len(data),
                   check=check_pq_index_state if is_index else None)


_mv_bases: list | None = None


def multivector_dir(data: bytes) -> None:
    """Control byte: bits 0-1 pick a saved folder under base/ (index.skc) ; bits 2-4 the file the payload
    replaces (MV_FILES: a file of the version 1 folder base/v1, or index.skc); 0x80 repairs the checksum (the
    manifest's SHA-256, or the container's CRCs); 0x40 loads with mmap=True (the container only)."""
    global _mv_bases
    if _mv_bases is None:
        _mv_bases = [os.path.join(BASE, d) for d in sorted(os.listdir(BASE)) if d != "v1"]
    if not data:
        return
    control, payload = data[0], bytearray(data[1:])
    fname = MV_FILES[((control >> 2) & 7) % len(MV_FILES)]
    container = fname == "index.skc"
    base = _mv_bases[(control & 3) % len(_mv_bases)] if container else os.path.join(BASE, "v1")
    folder = os.path.join(_work_dir(), "mv")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(base, folder)
    if container and control & 0x80:
        fix_container(payload)
    with open(os.path.join(folder, fname), "wb") as f:
        f.write(payload)
    if control & 0x80 and not container and fname != "manifest.json":
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
        manifest["files"][fname] = hashlib.sha256(payload).hexdigest()
        with open(os.path.join(folder, "manifest.json"), "w") as f:
            json.dump(manifest, f)
    mmap = container and bool(control & 0x40)
    _load_then_use(lambda: simkern.MultiVectorIndex.load(folder, mmap=mmap), use_multivector, len(data))


# -- ragged -----------------------------------------------------------------------------------------------------
_OFFSET_DTYPES = [np.int64, np.int32, np.int8, np.uint8, np.uint16, np.uint32, np.uint64, np.int16, np.bool_,
                  np.float64, object]


def _tokens(b: Bytes, rows: int, dim: int, dtype=np.float32) -> np.ndarray:
    raw = np.frombuffer(b.take(rows * dim), np.int8).astype(np.float32) / 8
    return raw.reshape(rows, dim).astype(dtype)


def _offsets(b: Bytes, rows: int):
    """Mostly plausible offsets (sorted cuts of 0..rows), then mutated: values, ends, dtype, shape."""
    n = b.range(0, 6)
    cuts = sorted(b.range(0, rows) for _ in range(max(0, n - 1)))
    offs = [0] + cuts + [rows] if n else [0]
    for _ in range(b.range(0, 2)):
        i = b.range(0, len(offs) - 1)
        offs[i] = b.pick([0, 1, -1, rows, rows + 1, 2**31, 2**32 + 1, 2**63 - 1, -(2**63), 2**64 - 1, offs[i] + 1])
    dtype = b.pick(_OFFSET_DTYPES)
    shape_op = b.uint(1) % 8
    try:
        arr = np.array(offs, dtype=dtype)
    except (OverflowError, ValueError):
        arr = np.array(offs, dtype=object)
    if shape_op == 1:
        arr = arr.reshape(1, -1)
    elif shape_op == 2:
        arr = arr[::-1]
    elif shape_op == 3:
        return list(offs)
    elif shape_op == 4 and arr.size:
        arr = np.repeat(arr, 2)[::2]  # non-contiguous copy source
    return arr


def _reference_maxsim(q: simkern.Ragged, d: simkern.Ragged) -> tuple[np.ndarray, np.ndarray]:
    """float64 MaxSim and an error allowance per entry (float32 accumulation, bfloat16 rounding of the query)."""
    qt, dt = q.tokens.astype(np.float64), d.tokens.astype(np.float64)
    out = np.zeros((len(q), len(d)))
    tol = np.zeros_like(out)
    for i in range(len(q)):
        qi = qt[q.offsets[i]:q.offsets[i + 1]]
        for j in range(len(d)):
            dj = dt[d.offsets[j]:d.offsets[j + 1]]
            if len(qi) and not len(dj):
                out[i, j] = -np.inf
            elif len(qi):
                out[i, j] = (qi @ dj.T).max(axis=1).sum()
                tol[i, j] = 2.0**-7 * (np.abs(qi) @ np.abs(dj).T).max(axis=1).sum() + 1e-5
    return out, tol


def _check_maxsim(q: simkern.Ragged, d: simkern.Ragged, b: Bytes) -> None:
    got = simkern.maxsim(q, d, threads=b.pick([None, 1, 2]))
    want, tol = _reference_maxsim(q, d)
    assert got.shape == want.shape, (got.shape, want.shape)
    inf = np.isinf(want)
    assert (got[inf] == want[inf]).all(), f"maxsim: empty docs must score -inf: {got} vs {want}"
    assert (np.abs(got[~inf] - want[~inf]) <= tol[~inf]).all(), f"maxsim differs from NumPy: {got} vs {want}"
    if len(d):
        k = b.range(1, len(d) + 1)
        scores, ids = simkern.maxsim_topk(q, d, k, threads=1)
        valid = ids >= 0
        rows = np.nonzero(valid)[0]
        assert np.array_equal(scores[valid], got[rows, ids[valid]]), "maxsim_topk scores differ from maxsim"
    # pairs with fuzzed ids (out of range ones must raise ValueError)
    p = b.range(0, 4)
    qi = np.array([b.range(-1, len(q)) for _ in range(p)], dtype=np.int64)
    di = np.array([b.range(-1, len(d)) for _ in range(p)], dtype=np.int64)
    try:
        pairs = simkern.maxsim_pairs(q, d, qi, di, threads=1)
    except ValueError:
        ok = (qi >= 0).all() and (qi < len(q)).all() and (di >= 0).all() and (di < len(d)).all()
        assert not ok, "maxsim_pairs refused valid ids"
        return
    assert np.array_equal(pairs, got[qi, di]), "maxsim_pairs differs from maxsim"


def _check_ragged(r: simkern.Ragged, offsets) -> None:
    offs = np.asarray(offsets).astype(np.int64)
    assert np.array_equal(r.offsets, offs), "Ragged stored different offsets"
    assert r.offsets[0] == 0 and (np.diff(r.offsets) >= 0).all() and r.offsets[-1] == r.total_tokens
    assert sum(len(x) for x in r) == r.total_tokens


def ragged(data: bytes) -> None:
    b = Bytes(data)
    mode = b.uint(1) % 5
    dim = b.range(0, 4)
    rows = b.range(0, 12)
    q = simkern.Ragged(_tokens(Bytes(data[::-1]), 3, max(dim, 1)), np.array([0, 1, 1, 3]))
    try:
        if mode in (0, 3):     # Ragged(tokens, offsets), directly or as a pickled state
            tokens = _tokens(b, rows, dim, b.pick([np.float32, np.float16, np.float64, np.int32]))
            if b.uint(1) % 4 == 0:
                tokens = tokens.T if tokens.ndim == 2 else tokens
            offsets = _offsets(b, rows)
            r = simkern.Ragged(tokens, offsets) if mode == 0 else _round_trip(simkern.Ragged, (tokens, offsets))
            _check_ragged(r, offsets)
        elif mode == 1:        # as_ragged: a list of arrays of fuzzed shapes
            parts = []
            for _ in range(b.range(0, 4)):
                nd = b.pick([2, 2, 2, 1, 3])
                shape = (b.range(0, 4), dim) if nd == 2 else (b.range(0, 4),) * nd
                parts.append(_tokens(b, int(np.prod(shape)), 1).reshape(shape))
            r = as_ragged(parts, "docs")
        elif mode == 2:        # as_ragged: a 3-D array, possibly a non-contiguous view
            n, length = b.range(0, 4), b.range(0, 4)
            arr = _tokens(b, n * length, dim).reshape(n, length, dim)
            if b.bool():
                arr = arr[:, ::2]
            r = as_ragged(arr, "docs")
        else:                  # maxsim_topk candidates: fuzzed 2-D array or list of id arrays
            r = simkern.Ragged(_tokens(b, rows, max(dim, 1)), _offsets(Bytes(b.take(8)), rows))
            n = len(r)
            dtype = b.pick([np.int64, np.int32, np.uint8])  # uint8: -1 wraps to 255
            cands = [np.array([b.range(-2, n + 1) for _ in range(b.range(0, 4))], np.int64).astype(dtype)
                     for _ in range(3)]
            cand = np.stack([np.resize(c, 2) for c in cands]) if b.bool() else cands
            scores, ids = simkern.maxsim_topk(q, r, b.range(1, 3), candidates=cand, threads=1)
            full = simkern.maxsim(q, r, threads=1)
            valid = ids >= 0
            assert np.array_equal(scores[valid], full[np.nonzero(valid)[0], ids[valid]])
            return
    except ALLOWED:
        return
    if r.dim == q.dim and r.dtype == np.float32:
        _check_maxsim(q, r, b)
        _check_maxsim(r, q, b)   # r as the queries


def use_hnswlib(index, seed: int) -> None:
    """An index the hnswlib shim loaded: searched, read, grown, saved in hnswlib's format and read back."""
    from simkern.compat import hnswlib as shim
    repr(index)
    bf = isinstance(index, shim.BFIndex)
    dim = index.dim
    n = index.get_current_count() if bf else len(index.simkern)
    q = _rows(seed, 2, dim)
    if n:
        labels, dist = index.knn_query(q, k=min(3, n))
        assert labels.shape == dist.shape == (2, min(3, n))
    if not bf:
        live = index.simkern.ids()
        if live.size:
            index.get_items(live[:2])
        index.resize_index(index.element_count + 3)
        index.add_items(_rows(seed + 1, 3, dim), np.arange(3) + (int(live.max()) + 1 if live.size else 0))
    elif index.get_current_count() < index.get_max_elements():
        index.add_items(_rows(seed + 1, 1, dim), [2**40 + seed])
    path = os.path.join(_work_dir(), "resaved.hnswlib")
    index.save_index(path)
    again = (shim.BFIndex if bf else shim.Index)(index.space, dim)
    again.load_index(path)
    assert again.get_current_count() == index.get_current_count()


def hnswlib_file(data: bytes) -> None:
    if not data:
        return
    from simkern.compat import _hnswlib_file
    from simkern.compat import hnswlib as shim
    control, payload = data[0], bytes(data[1:])
    path = os.path.join(_work_dir(), "index.hnswlib")
    _atomic_write(path, payload)
    bf = bool(control & 1)
    space = ("l2", "ip", "cosine")[(control >> 1) % 3]
    # the dim the records hold (an index of another dim refuses the file at once)
    if bf:
        per = struct.unpack_from("<Q", payload, 8)[0] if len(payload) >= 16 else 0
        dim = (per - 8) // 4 if per > 8 and per % 4 == 0 else 8
    else:
        dim = _hnswlib_file.file_dim(path) or 8
    dim = dim if 1 <= dim <= MAX_DIM else 8

    def load():
        index = shim.BFIndex(space, dim) if bf else shim.Index(space, dim)
        index.load_index(path)
        return index

    _load_then_use(load, use_hnswlib, len(data))


TARGETS = {
    "hnsw_file": hnsw_file,
    "hnsw_pickle": hnsw_pickle,
    "pq_index_file": pq_index_file,
    "ivfpq_file": ivfpq_file,
    "pq_pickle": pq_pickle,
    "multivector_dir": multivector_dir,
    "ragged": ragged,
    "hnswlib_file": hnswlib_file,
}
