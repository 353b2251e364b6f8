"""HNSW approximate nearest-neighbour index (hierarchical navigable small world graphs).

    index = simkern.HNSWIndex(384, metric="cosine", M=16, ef_construction=200)
    index.add(vectors)                        # ids 0..n-1; or index.add(vectors, ids)
    scores, ids = index.search(queries, k=10, ef=64)
    index.remove([3, 5]); index.compact()
    index.save("index.skh"); index = simkern.HNSWIndex.load("index.skh")   # or load(..., mmap=True)

Metrics: ``"l2"`` (squared L2, ascending scores), ``"ip"`` (inner product, descending) and ``"cosine"`` (vectors
and queries normalised to unit length, then inner product, descending). Storage ``"float32"``, or ``"float16"``:
the graph is walked on float16 copies of the vectors and the final candidates are re-scored on float32 (the
float32 vectors are kept apart from the graph records, so this saves cache and bandwidth during the walk, not
memory).

Ids are int64 user ids (default: 0, 1, ... continuing after the largest id added so far). Adding an id that is
present raises ValueError unless ``replace=True`` (the old vector becomes a tombstone and the new one is linked).
The index grows by itself. ``remove(ids)`` leaves tombstones: never returned, still used for routing;
``compact()`` rebuilds the graph from the live vectors and frees the tombstones.

Filters (``filter=``): a boolean mask over ids (``mask[id]``; ids past its end are excluded) or an array of allowed
ids, applied inside the graph walk: excluded nodes route but never enter the results. When fewer than 2048 ids are
allowed, or fewer than 2 % of the index, the search is exact over the allowed set instead (a graph walk would
have to visit most of the index to find them). Fewer than k results: ids -1 and scores +inf (l2) / -inf.

Threads: ``add`` and ``search`` release the GIL and use the library's thread pool (``threads=``). With
``threads=1`` and a seed the graph is deterministic, and distances are bit-identical on every ISA (32 fixed
accumulation lanes), so the same ids come back everywhere. Searches may run from other Python threads while an
``add`` runs: they see the vectors published before they started (and possibly some that are being linked),
never a half-written record; ``remove``/``compact``/``add`` calls are serialised with each other.

File format (``save``): little-endian; a 64-byte header (magic ``SIMKHNSW``, format version, dim, metric, storage,
M, ef_construction, seed, node count, next default id, search ef, entry point, top level, CRC32 of the header),
then sections, each ``[8-byte name][uint64 byte length][uint32 CRC32][bytes]``: labels (int64), levels (uint8),
tombstones (uint8), vectors (float32 n x dim), link counts (uint32 per node and level), link ids (uint32). ``load``
checks lengths, checksums and every link (ids in range, counts within the level's limit) and raises ValueError on
anything inconsistent. ``load(path, mmap=True)`` maps the file and reads the vectors in place (see ``load``).
"""

from __future__ import annotations


import numbers
import os
import struct
import sys
import zlib

import numpy as np

from . import _core
from ._validate import float32_rows, int64_vector, positive_int, threads_arg

__all__ = ["HNSWIndex"]

_METRICS = {"l2": 0, "ip": 1, "cosine": 2}
_STORAGES = {"float32": 0, "float16": 1}
_MAGIC = b"SIMKHNSW"
_VERSION = 1
# magic, version, dim, metric, storage, M, ef_construction, seed, nodes, next_id, ef, entry, top level, crc
_HEADER = struct.Struct("<8sIIBBHIQQqIqi")
_SECTIONS = [("labels", np.int64), ("levels", np.uint8), ("deleted", np.uint8), ("vectors", np.float32),
             ("lcounts", np.uint32), ("link_ids", np.uint32)]
_STATE_KEYS = {"labels": "labels", "levels": "levels", "deleted": "deleted", "vectors": "vectors",
               "lcounts": "link_counts", "link_ids": "link_ids"}


class HNSWIndex:
    """HNSW index over ``dim``-dimensional float32 vectors (see the module docstring)."""

    def __init__(self, dim: int, *, metric: str = "l2", M: int = 16, ef_construction: int = 200,
                 storage: str = "float32", seed: int = 0, capacity: int | None = None):
        dim = positive_int(dim, "dim")
        if metric not in _METRICS:
            raise ValueError(f"metric must be 'l2', 'ip' or 'cosine', got {metric!r}")
        if storage not in _STORAGES:
            raise ValueError(f"storage must be 'float32' or 'float16', got {storage!r}")
        M = positive_int(M, "M")
        if not 2 <= M <= 1024:
            raise ValueError(f"M must be in 2..1024, got {M}")
        ef_construction = positive_int(ef_construction, "ef_construction")
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an int in 0..2**64-1, got {seed!r}")
        if capacity is not None:
            positive_int(capacity, "capacity")  # accepted for hnswlib-style code: the index grows by itself
        self._dim, self._metric, self._storage = dim, metric, storage
        self._M, self._ef_construction, self._seed = M, ef_construction, int(seed)
        self._ef = 64
        self._next_id = 0
        self._core = _core._HNSW(dim, _METRICS[metric], M, ef_construction, storage == "float16", int(seed))

    # -- properties --------------------------------------------------------------------------------------------
    dim = property(lambda self: self._dim)
    metric = property(lambda self: self._metric)
    storage = property(lambda self: self._storage)
    M = property(lambda self: self._M)
    ef_construction = property(lambda self: self._ef_construction)

    @property
    def ef(self) -> int:
        """Default search beam width (``search`` uses max(k, ef) unless given ``ef=``)."""
        return self._ef

    @ef.setter
    def ef(self, value: int) -> None:
        self._ef = positive_int(value, "ef")

    def __len__(self) -> int:
        return int(self._core.live)

    def __contains__(self, id) -> bool:
        if isinstance(id, (bool, np.bool_)) or not isinstance(id, numbers.Integral):
            return False
        return bool(self._core.contains(np.array([id], np.int64))[0])

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the graph: records (links + vectors), float32 copies (float16 storage), upper levels, ids."""
        return int(self._core.memory_bytes)

    def __repr__(self) -> str:
        tomb = self._core.deleted
        return (f"HNSWIndex(dim={self._dim}, metric={self._metric!r}, M={self._M}, "
                f"ef_construction={self._ef_construction}, storage={self._storage!r}, len={len(self)}"
                + (f", tombstones={tomb}" if tomb else "") + ")")

    # -- building ----------------------------------------------------------------------------------------------
    def add(self, x, ids=None, *, replace: bool = False, threads: int | None = None, progress: bool = False) -> None:
        """Insert float32 ``(n, dim)`` vectors under int64 ``ids`` (default: continuing after the largest id)."""
        x = float32_rows(x, self._dim, "x", allow_vector=True)
        n = x.shape[0]
        if ids is None:
            ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        else:
            ids = int64_vector(ids, "ids")
            if ids.shape[0] != n:
                raise ValueError(f"ids must have one entry per row of x ({n}), got {ids.shape[0]}")
            if n and np.unique(ids).size != n:
                dup = ids[np.flatnonzero(np.diff(np.sort(ids)) == 0)[0]]
                raise ValueError(f"ids contain duplicates (id {int(dup)} appears more than once)")
        if self._metric == "cosine" and n:
            norms = np.einsum("ij,ij->i", x, x)
            if (norms == 0).any():
                raise ValueError(f"x row {int(np.flatnonzero(norms == 0)[0])} is all zeros: cosine is undefined")
        if n and not replace:
            present = self._core.contains(ids)
            if present.any():
                raise ValueError(f"id {int(ids[np.flatnonzero(present)[0]])} is already in the index "
                                 f"(pass replace=True to replace it)")
        threads = threads_arg(threads)
        if n == 0:
            return
        if not progress:
            self._core.add(x, ids, threads)
        else:
            step = 4096
            bar = _progress(n)
            for start in range(0, n, step):
                self._core.add(x[start:start + step], ids[start:start + step], threads)
                bar(min(n, start + step))
        self._next_id = max(self._next_id, int(ids.max()) + 1)

    # -- search ------------------------------------------------------------------------------------------------
    def search(self, queries, k: int = 10, *, ef: int | None = None, filter=None, threads: int | None = None):
        """``(scores, ids)`` of shape ``(n_queries, k)``: the k nearest live vectors per query (see the module
        docstring for the score convention, filters and padding)."""
        q = float32_rows(queries, self._dim, "queries", allow_vector=True)
        k = positive_int(k, "k")
        ef = self._ef if ef is None else positive_int(ef, "ef")
        threads = threads_arg(threads)
        mask = ids = None
        if filter is not None:
            arr = np.asarray(filter)
            if arr.dtype == np.bool_:
                if arr.ndim != 1:
                    raise ValueError(f"filter mask must be 1-D (one entry per id), got shape {arr.shape}")
                mask = np.ascontiguousarray(arr).view(np.uint8)
            elif np.issubdtype(arr.dtype, np.integer) or arr.size == 0:
                ids = int64_vector(arr, "filter")
            else:
                raise TypeError(f"filter must be a boolean mask over ids or an array of ids, got dtype {arr.dtype}")
        return self._core.search(q, k, max(ef, k), mask, ids, threads)

    # -- maintenance -------------------------------------------------------------------------------------------
    def remove(self, ids) -> None:
        """Tombstone ``ids`` (all must be present; nothing is removed otherwise)."""
        ids = int64_vector(np.atleast_1d(ids), "ids")
        present = self._core.contains(ids)
        if not present.all():
            raise ValueError(f"id {int(ids[np.flatnonzero(~present)[0]])} is not in the index")
        if np.unique(ids).size != ids.size:
            raise ValueError("ids contain duplicates")
        self._core.remove(ids)

    def compact(self, *, threads: int | None = None) -> None:
        """Rebuild the graph from the live vectors (tombstones and their memory go away)."""
        self._core.compact(threads_arg(threads))

    def get_vectors(self, ids) -> np.ndarray:
        """float32 ``(len(ids), dim)`` stored vectors (normalised for cosine); unknown ids raise ValueError."""
        return self._core.get_vectors(int64_vector(np.atleast_1d(ids), "ids"))

    def ids(self) -> np.ndarray:
        """The live ids, in insertion order."""
        labels, deleted = self._core.labels()
        return labels[~deleted]

    # -- persistence -------------------------------------------------------------------------------------------
    def _to_bytes(self) -> bytes:
        st = self._core.state()
        n = int(st["labels"].shape[0])
        fields = (_MAGIC, _VERSION, self._dim, _METRICS[self._metric], _STORAGES[self._storage], self._M,
                  self._ef_construction, self._seed, n, self._next_id, self._ef, int(st["entry"]),
                  int(st["max_level"]))
        head = _HEADER.pack(*fields)
        parts = [head, struct.pack("<I", zlib.crc32(head))]
        for name, dtype in _SECTIONS:
            data = np.ascontiguousarray(st[_STATE_KEYS[name]], dtype=dtype).tobytes()
            parts.append(name.encode().ljust(8, b"\0") + struct.pack("<QI", len(data), zlib.crc32(data)))
            parts.append(data)
        return b"".join(parts)

    @classmethod
    def _from_bytes(cls, data, where: str, mapped: bool = False) -> HNSWIndex:
        mv = memoryview(data)
        if len(mv) < _HEADER.size + 4:
            raise ValueError(f"{where}: not a simkern HNSW file (too short: {len(mv)} bytes)")
        fields = _HEADER.unpack_from(mv, 0)
        (magic, version, dim, metric, storage, M, efc, seed, n, next_id, ef, entry, top) = fields
        if magic != _MAGIC:
            raise ValueError(f"{where}: not a simkern HNSW file (bad magic)")
        if version != _VERSION:
            raise ValueError(f"{where}: unsupported HNSW file version {version} (this build reads {_VERSION})")
        (crc,) = struct.unpack_from("<I", mv, _HEADER.size)
        if zlib.crc32(mv[:_HEADER.size]) != crc:
            raise ValueError(f"{where}: header checksum mismatch (the file is corrupted)")
        metrics = {v: k for k, v in _METRICS.items()}
        storages = {v: k for k, v in _STORAGES.items()}
        if metric not in metrics or storage not in storages or dim == 0 or not 2 <= M <= 1024 or efc == 0 or ef == 0:
            raise ValueError(f"{where}: corrupted header (dim={dim}, metric={metric}, storage={storage}, M={M})")
        offset = _HEADER.size + 4
        arrays = {}
        for name, dtype in _SECTIONS:
            if len(mv) < offset + 20:
                raise ValueError(f"{where}: truncated file (section {name!r} missing)")
            tag = bytes(mv[offset:offset + 8])
            length, sec_crc = struct.unpack_from("<QI", mv, offset + 8)
            offset += 20
            if tag != name.encode().ljust(8, b"\0"):
                raise ValueError(f"{where}: corrupted file (expected section {name!r}, found {tag!r})")
            if length % np.dtype(dtype).itemsize or offset + length > len(mv):
                raise ValueError(f"{where}: truncated or corrupted section {name!r}")
            chunk = mv[offset:offset + length]
            if mapped and name == "vectors":  # left on disk: neither read nor checksummed
                arrays[name] = np.frombuffer(chunk, dtype)
            else:
                if zlib.crc32(chunk) != sec_crc:
                    raise ValueError(f"{where}: checksum mismatch in section {name!r} (the file is corrupted)")
                arrays[name] = np.frombuffer(chunk, dtype).copy()
            offset += length
        if offset != len(mv):
            raise ValueError(f"{where}: {len(mv) - offset} unexpected bytes after the last section")
        for name in ("labels", "levels", "deleted"):
            if arrays[name].shape[0] != n:
                raise ValueError(f"{where}: corrupted file (section {name!r} has {arrays[name].shape[0]} entries, "
                                 f"expected {n})")
        if arrays["vectors"].size != n * dim:
            raise ValueError(f"{where}: corrupted file (vectors section has the wrong size)")
        index = cls(dim, metric=metrics[metric], M=M, ef_construction=efc, storage=storages[storage], seed=seed)
        index._core.restore(arrays["labels"], arrays["levels"], arrays["deleted"],
                            arrays["vectors"].reshape(n, dim), arrays["lcounts"], arrays["link_ids"], entry, top,
                            mapped)
        index._next_id = next_id
        index._ef = ef
        return index

    def save(self, path: str | os.PathLike) -> None:
        """Write the index (format in the module docstring), atomically (a temporary file renamed into place)."""
        data = self._to_bytes()
        tmp = f"{os.fspath(path)}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = False) -> HNSWIndex:
        """Read an index written by ``save``; a truncated, corrupted or foreign file raises ValueError.

        ``mmap=True``: the vectors stay in the file, mapped read-only (the operating system pages them in as
        searches touch them); the graph, ids and links are read and checked as usual, but the vectors section is
        neither read nor checksummed. Such an index is read-only for ``add`` (``remove`` works; ``compact()`` copies
        it into memory and makes it writable); the file must not change while it is open. float16 storage walks
        the graph on the mapped float32 vectors."""
        if not mmap:
            with open(path, "rb") as f:
                data = f.read()
            return cls._from_bytes(data, os.fspath(path))
        if os.path.getsize(path) == 0:
            raise ValueError(f"{os.fspath(path)}: not a simkern HNSW file (empty)")
        data = np.memmap(path, dtype=np.uint8, mode="r")
        return cls._from_bytes(data, os.fspath(path), mapped=True)

    @property
    def mmapped(self) -> bool:
        """True when the vectors are read from a memory-mapped file (``load(..., mmap=True)``)."""
        return bool(self._core.external)

    def __getstate__(self):
        return {"data": self._to_bytes()}

    def __setstate__(self, state):
        other = HNSWIndex._from_bytes(state["data"], "pickle")
        self.__dict__.update(other.__dict__)


def _progress(total: int, unit: str = "vec", label: str = "HNSWIndex.add"):
    """A progress callback (count done so far): tqdm when installed, else a line on stderr."""
    try:
        from tqdm import tqdm  # optional
    except ImportError:
        tqdm = None
    if tqdm is not None:
        bar = tqdm(total=total, unit=unit)
        done = [0]

        def update(count):
            bar.update(count - done[0])
            done[0] = count
            if count >= total:
                bar.close()
        return update

    def plain(count):
        sys.stderr.write(f"\r{label}: {count}/{total}")
        if count >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return plain



