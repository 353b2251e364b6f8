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

Filters (``filter=``, the rule of every index, docs/API.md): a boolean mask with exactly ``index.id_bound`` entries
(``mask[id]``) or an array of allowed ids (ids not in the index match nothing), applied inside the graph walk: excluded
nodes route but never enter the results. When fewer than 2048 ids are
allowed, fewer than 2 % of the index, or no more than ``ef``, the search is exact over the allowed set instead
(a graph walk would have to visit most of the index to find them); so is a search whose ``ef`` is at least the
number of live vectors. Fewer than k results: ids -1 and scores +inf (l2) / -inf.

Threads: ``add`` and ``search`` release the GIL and use the library's thread pool (``threads=``). With
``threads=1`` and a seed the graph is deterministic, and distances are bit-identical on every ISA (32 fixed
accumulation lanes), so the same ids come back everywhere. Searches may run from other Python threads while an
``add`` runs: they see the vectors published before they started (and possibly some that are being linked),
never a half-written record; ``remove``/``compact``/``add`` calls are serialised with each other.

File format (``save``): the container of every index (``_container.py``), kind ``HNSW`` version 3: meta (dim,
metric, storage, M, ef_construction, seed, node count, next default id, search ef, entry point, top level, link id
count) and sections ``labels`` (int64), ``levels`` (uint8), ``deleted`` (uint8), ``next_dup`` (uint32 per node: the
next exact duplicate, 0 for none), ``link_counts`` (uint32 per node and level), ``vectors`` (float32 n x dim, 64-byte
aligned), ``link_ids`` (uint32). ``save`` holds the writer lock and exports the vectors and links a range of nodes
at a time (its memory beyond the index: 64 KiB chunks); pickling streams the same sections (``_pickling.py``);
``load`` feeds them to the new graph a chunk at a time
and checks every section's checksum, every link (ids in range, counts within the level's limit) and the levels;
``load(path, mmap=True)`` maps the file and uses the vectors in place (see ``load``). Files of versions 1 and 2
(magic ``SIMKHNSW``) are still read.

Ids: 0 <= id <= 2**63 - 2 (-1 is the padding of results); anything else raises ValueError. Vectors and queries
must be finite with a norm of at most 2**62 (distances between such vectors cannot overflow float32).

Interrupted ``add`` (Ctrl-C, or any error while linking): the index is left exactly as if only the first j vectors
of the call had been added (their ids are in the index, the others are not), and the KeyboardInterrupt carries a
note saying how many. Exact duplicate vectors are chained to the copy already in the graph instead of competing
for its links, and a search that finds fewer than ``min(k, live)`` results (a walk cut off by tombstones or a
filter) is redone as an exact scan: fewer than k results only when fewer exist.

Concurrency: any number of threads may ``search`` (and ``len``, ``in``, ``ids``, ``get_vectors``) while one thread
adds, removes, compacts or saves; those writers are serialised with each other. A process forked while another
thread was modifying an index gets an incomplete copy: every use of that copy in the child raises ValueError.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from collections.abc import Iterator
from typing import IO, Any, SupportsIndex

import numpy as np
import numpy.typing as npt

from . import _container, _core, _pickling
from ._enums import METRICS, STORAGES, choice
from ._progress import progress_reporter
from ._validate import (
    MAX_ID,
    atomic_write,
    check_norms,
    filter_arg,
    float32_rows,
    id_vector,
    into_out,
    is_valid_id,
    out_array,
    out_pair,
    pair_into_out,
    positive_int,
    seed_arg,
    threads_arg,
)

__all__ = ["HNSWIndex"]

_METRICS, _STORAGES = METRICS, STORAGES  # the shared tables (their codes are in the file header)
_MAGIC = b"SIMKHNSW"  # files of versions 1 and 2 (before the shared container), still read
_VERSION = 2
_CONTAINER_VERSION = 3  # the HNSW kind version inside the container (_container.py)
_SAVE_CHUNK_BYTES = 1 << 16  # vectors / link ids exported per step by save (below glibc's mmap threshold: see
# docs/ARCHITECTURE.md "Persistence")
_LOAD_CHUNK_BYTES = 1 << 18  # and read per step by load (the transient beyond the new graph: under 1 MB in all)
# magic, version, dim, metric, storage, M, ef_construction, seed, nodes, next_id, ef, entry, top level, crc
_HEADER = struct.Struct("<8sIIBBHIQQqIqi")
_SECTIONS = {  # per format version, in file order
    1: [("labels", np.int64), ("levels", np.uint8), ("deleted", np.uint8), ("vectors", np.float32),
        ("lcounts", np.uint32), ("link_ids", np.uint32)],
    2: [("labels", np.int64), ("levels", np.uint8), ("deleted", np.uint8), ("nextdup", np.uint32),
        ("vectors", np.float32), ("lcounts", np.uint32), ("link_ids", np.uint32)],
}
_SECTION_HEAD = {1: struct.Struct("<8sQI"), 2: struct.Struct("<8sQII")}
_ALIGN = 64  # version 2: every section's bytes start at a multiple of 64 in the file
_STATE_KEYS = {"labels": "labels", "levels": "levels", "deleted": "deleted", "vectors": "vectors",
               "lcounts": "link_counts", "link_ids": "link_ids", "nextdup": "next_dup"}


def _pad(offset: int) -> int:
    return -offset % _ALIGN


class HNSWIndex:
    """HNSW index over ``dim``-dimensional float32 vectors (see the module docstring)."""

    def __init__(self, dim: int, *, metric: str = "l2", M: int = 16, ef_construction: int = 200,
                 storage: str = "float32", seed: int = 0, capacity: int | None = None) -> None:
        dim = positive_int(dim, "dim")
        metric = choice(metric, "metric", _METRICS)
        storage = choice(storage, "storage", _STORAGES)
        M = positive_int(M, "M")
        if not 2 <= M <= 1024:
            raise ValueError(f"M must be in 2..1024, got {M}")
        ef_construction = positive_int(ef_construction, "ef_construction")
        seed = seed_arg(seed)
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

    @property
    def id_bound(self) -> int:
        """One more than the largest id ever added (removals do not lower it): every id is below it, default ids
        continue from it, and a boolean ``filter`` mask has exactly this many entries."""
        return self._next_id

    def __contains__(self, id: object) -> bool:
        if not is_valid_id(id):
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
    def add(self, x: npt.NDArray[np.float32], ids: npt.ArrayLike | None = None, *, replace: bool = False,
            threads: int | None = None, progress: bool = False) -> npt.NDArray[np.int64]:
        """Insert float32 ``(n, dim)`` vectors under int64 ``ids`` (default: continuing after the largest id, i.e.
        from ``id_bound``); returns the ids as an int64 array.

        Interrupted (Ctrl-C) or failing while linking: the first j vectors stay added, the others are not, and the
        exception says j in a note (``e.__notes__``); the index is exactly as if ``add(x[:j], ids[:j])`` had run."""
        x = float32_rows(x, self._dim, "x", allow_vector=True)
        n = x.shape[0]
        if ids is None:
            if self._next_id + n - 1 > MAX_ID:
                raise ValueError("default ids would pass 2**63-2: pass ids explicitly")
            ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        else:
            ids = id_vector(ids, "ids")
            if ids.shape[0] != n:
                raise ValueError(f"ids must have one entry per row of x ({n}), got {ids.shape[0]}")
            if n and np.unique(ids).size != n:
                dup = ids[np.flatnonzero(np.diff(np.sort(ids)) == 0)[0]]
                raise ValueError(f"ids contain duplicates (id {int(dup)} appears more than once)")
        check_norms(x, "x", cosine=self._metric == "cosine")
        if n and not replace:
            present = self._core.contains(ids)
            if present.any():
                raise ValueError(f"id {int(ids[np.flatnonzero(present)[0]])} is already in the index "
                                 f"(pass replace=True to replace it)")
        return self._add_checked(x, ids, threads_arg(threads), progress)

    def _add_checked(self, x: npt.NDArray[np.float32], ids: npt.NDArray[np.int64], threads: int,
                     progress: bool = False) -> npt.NDArray[np.int64]:
        """The linking part of ``add`` for arguments the caller checked (float32 C-contiguous finite rows of dim
        with norms <= 2**62, distinct ids in 0..2**63-2 not in the index, threads resolved): the internal path of
        composed calls (MultiVectorIndex), which produced or checked them already."""
        n = x.shape[0]
        if n == 0:
            return ids
        step = 4096 if progress else n
        bar = progress_reporter(n, "vec", "HNSWIndex.add") if progress else None
        done = 0
        try:
            for start in range(0, n, step):
                chunk = ids[start:start + step]
                try:
                    self._core.add(x[start:start + step], chunk, threads)
                except BaseException:
                    done = start + int(self._core.last_add_count)  # the graph kept this prefix of the chunk
                    raise
                done = start + len(chunk)
                if bar is not None:
                    bar(min(n, start + step))
        except BaseException as e:
            if done < n and hasattr(e, "add_note"):
                e.add_note(f"HNSWIndex.add stopped: the first {done} of {n} vectors were added "
                           f"(ids[:{done}]), the other {n - done} were not")
            raise
        finally:
            if done:
                self._next_id = max(self._next_id, int(ids[:done].max()) + 1)
        return ids

    # -- search ------------------------------------------------------------------------------------------------
    def search(self, queries: npt.NDArray[np.float32], k: int = 10, *, ef: int | None = None,
               filter: npt.ArrayLike | None = None, threads: int | None = None,
               out: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None = None
               ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """``(scores, ids)`` of shape ``(n_queries, k)``: the k nearest live vectors per query (see the module
        docstring for the score convention, filters and padding). ``out``: an optional ``(scores float32, ids
        int64)`` pair of arrays to write the results into (docs/API.md)."""
        q = float32_rows(queries, self._dim, "queries", allow_vector=True)
        if self._metric != "cosine":  # cosine queries are normalised in float64 first
            check_norms(q, "queries")
        k = positive_int(k, "k")
        ef = self._ef if ef is None else positive_int(ef, "ef")
        threads = threads_arg(threads)
        mask, ids = filter_arg(filter, self._next_id)
        dest = out_pair(out, (q.shape[0], k))
        return pair_into_out(self._core.search(q, k, max(ef, k), mask, ids, threads), dest)

    def _search_masked(self, q: npt.NDArray[np.float32], k: int, ef: int, mask: npt.NDArray[np.bool_] | None,
                       threads: int | None) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The internal path of composed calls (MultiVectorIndex), past the public checks: ``q`` float32 rows its
        caller produced or checked, ``k`` and ``ef`` ints >= 1, ``mask`` a boolean array over ids 0..len(mask)-1
        whose ids past its end are excluded (the caller's snapshot may be shorter than a graph a writer is
        extending)."""
        m = None if mask is None else np.ascontiguousarray(mask).view(np.uint8)
        return self._core.search(q, k, max(ef, k), m, None, threads_arg(threads))

    # -- maintenance -------------------------------------------------------------------------------------------
    def remove(self, ids: npt.ArrayLike) -> None:
        """Tombstone ``ids`` (all must be present; nothing is removed otherwise)."""
        ids = id_vector(np.atleast_1d(ids), "ids")
        present = self._core.contains(ids)
        if not present.all():
            raise ValueError(f"id {int(ids[np.flatnonzero(~present)[0]])} is not in the index")
        if np.unique(ids).size != ids.size:
            raise ValueError("ids contain duplicates")
        self._core.remove(ids)

    def unremove(self, ids: npt.ArrayLike) -> None:
        """Bring removed ``ids`` back: each one's most recent tombstone is live again with the vector it had (the
        graph links it kept). An id that is live, was never added or was dropped by ``compact`` raises ValueError,
        and then none of ``ids`` is revived."""
        ids = id_vector(np.atleast_1d(ids), "ids")
        if np.unique(ids).size != ids.size:
            raise ValueError("ids contain duplicates")
        present = self._core.contains(ids)
        if present.any():
            raise ValueError(f"id {int(ids[np.flatnonzero(present)[0]])} is live: only removed ids come back")
        revived: list[int] = []
        for i in ids.tolist():
            if not self._core.unremove(i):
                if revived:
                    self._core.remove(np.array(revived, np.int64))
                raise ValueError(f"id {i} has no tombstone to revive (never added, or compacted away)")
            revived.append(i)

    def compact(self, *, threads: int | None = None) -> None:
        """Rebuild the graph from the live vectors (tombstones and their memory go away)."""
        self._core.compact(threads_arg(threads))

    def get_vectors(self, ids: npt.ArrayLike, *,
                    out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        """float32 ``(len(ids), dim)`` stored vectors (normalised for cosine); unknown ids raise ValueError.
        ``out``: write into this array instead (docs/API.md)."""
        ids = id_vector(np.atleast_1d(ids), "ids")
        dest = out_array(out, (ids.shape[0], self._dim), np.float32)
        return into_out(self._core.get_vectors(ids), dest)

    def contains(self, ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each of ``ids`` is live (``id in index`` for many ids at once)."""
        return self._core.contains(id_vector(np.atleast_1d(ids), "ids"))

    def removed_ids(self) -> npt.NDArray[np.int64]:
        """The ids that ``unremove`` can bring back: removed (a tombstone is kept) and not live again, sorted."""
        labels, deleted = self._core.labels()
        return np.setdiff1d(labels[deleted], labels[~deleted])

    def ids(self) -> npt.NDArray[np.int64]:
        """The live ids, in insertion order."""
        labels, deleted = self._core.labels()
        return labels[~deleted]

    # -- persistence -------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _save_plan(self, chunk_bytes: int = _SAVE_CHUNK_BYTES) -> Iterator[tuple[dict[str, Any],
                                                                                list[_container.SectionSpec]]]:
        """The meta and sections of one consistent state (the container of ``save``, the parts of a pickle): the
        writer lock is held until the block ends; vectors and link ids are exported a range of nodes at a time
        as the sections' chunks are drawn (no copy of the whole index in memory)."""
        session = self._core.save_session()
        try:
            small = session.small()
            n, dim, total = session.size, self._dim, int(small["link_total"])
            meta = {"dim": dim, "metric": self._metric, "storage": self._storage, "M": self._M,
                    "ef_construction": self._ef_construction, "seed": self._seed, "nodes": n,
                    "next_id": self._next_id, "ef": self._ef, "entry": int(small["entry"]),
                    "max_level": int(small["max_level"]), "link_total": total}
            rows = max(1, chunk_bytes // (4 * dim))

            def vectors() -> Iterator[npt.NDArray[np.float32]]:
                return (session.vectors(b, min(n, b + rows)) for b in range(0, n, rows))

            def links() -> Iterator[npt.NDArray[np.uint32]]:
                step = max(1, chunk_bytes // (4 * 2 * self._M))  # nodes per chunk: ~2M ids each at level 0
                return (session.links(b, min(n, b + step)) for b in range(0, n, step))

            # in the order _restore_steps asks for them (a pickle stream is read in order)
            yield meta, [_container.SectionSpec.of("labels", small["labels"]),
                         _container.SectionSpec.of("levels", small["levels"]),
                         _container.SectionSpec.of("deleted", small["deleted"]),
                         _container.SectionSpec.of("next_dup", small["next_dup"]),
                         _container.SectionSpec.of("link_counts", small["link_counts"]),
                         _container.SectionSpec("vectors", np.float32, (n, dim), vectors),
                         _container.SectionSpec("link_ids", np.uint32, (total,), links)]
        finally:
            session.close()

    def _write(self, f: IO[bytes]) -> None:
        """Stream the index to a seekable binary file object: the shared container (kind ``HNSW``, version 3)."""
        with self._save_plan() as (meta, sections):
            _container.write(f, "HNSW", _CONTAINER_VERSION, meta, sections)

    def _to_bytes(self) -> bytes:
        buf = io.BytesIO()
        self._write(buf)
        return buf.getvalue()

    @classmethod
    def _from_bytes(cls, data: bytes | _core._MappedFile, where: str,
                    mapped: _core._MappedFile | None = None) -> HNSWIndex:
        """An index from the bytes of a file (a pickle's, or a version 1 / 2 file's); ``mapped``: the _MappedFile
        those bytes are (vectors left there; versions 1 and 2 only)."""
        if mapped is None and isinstance(data, bytes) and data[:len(_container.MAGIC)] == _container.MAGIC:
            with _container.Reader(io.BytesIO(data), "HNSW", (_CONTAINER_VERSION,), where=where) as r:
                return cls._from_container(r)
        mv = memoryview(data)
        if len(mv) < _HEADER.size + 4:
            raise ValueError(f"{where}: not a simkern HNSW file (too short: {len(mv)} bytes)")
        fields = _HEADER.unpack_from(mv, 0)
        (magic, version, dim, metric, storage, M, efc, seed, n, next_id, ef, entry, top) = fields
        if magic != _MAGIC:
            raise ValueError(f"{where}: not a simkern HNSW file (bad magic)")
        if version not in _SECTIONS:
            raise ValueError(f"{where}: unsupported HNSW file version {version} (this build reads 1 and 2)")
        (crc,) = struct.unpack_from("<I", mv, _HEADER.size)
        if zlib.crc32(mv[:_HEADER.size]) != crc:
            raise ValueError(f"{where}: header checksum mismatch (the file is corrupted)")
        metrics = {v: k for k, v in _METRICS.items()}
        storages = {v: k for k, v in _STORAGES.items()}
        if metric not in metrics or storage not in storages or dim == 0 or not 2 <= M <= 1024 or efc == 0 or ef == 0:
            raise ValueError(f"{where}: corrupted header (dim={dim}, metric={metric}, storage={storage}, M={M})")
        if efc > 2**31 - 1 or ef > 2**31 - 1 or not 0 <= next_id <= MAX_ID + 1:
            raise ValueError(f"{where}: corrupted header (ef_construction={efc}, ef={ef}, next id={next_id})")
        # Every section must fit in the file: n nodes need at least 14 + 4 * dim bytes each (a bound on n before
        # anything is allocated for it).
        if n * (14 + 4 * dim) > len(mv):
            raise ValueError(f"{where}: truncated or corrupted file ({n} nodes of dim {dim} do not fit in "
                             f"{len(mv)} bytes)")
        section_head = _SECTION_HEAD[version]
        offset = _HEADER.size + 4
        arrays = {}
        for name, dtype in _SECTIONS[version]:
            if len(mv) < offset + section_head.size:
                raise ValueError(f"{where}: truncated file (section {name!r} missing)")
            tag, length, sec_crc, *reserved = section_head.unpack_from(mv, offset)
            offset += section_head.size
            if tag != name.encode().ljust(8, b"\0") or any(reserved):
                raise ValueError(f"{where}: corrupted file (expected section {name!r}, found {tag!r})")
            if version >= 2:
                pad = _pad(offset)
                if offset + pad > len(mv) or any(mv[offset:offset + pad]):
                    raise ValueError(f"{where}: corrupted file (padding before section {name!r})")
                offset += pad
            if length % np.dtype(dtype).itemsize or offset + length > len(mv):
                raise ValueError(f"{where}: truncated or corrupted section {name!r}")
            chunk = mv[offset:offset + length]
            if mapped is not None and name == "vectors" and offset % 4 == 0:  # left in the file, not read
                arrays[name] = np.frombuffer(chunk, dtype)
            else:
                if zlib.crc32(chunk) != sec_crc:
                    raise ValueError(f"{where}: checksum mismatch in section {name!r} (the file is corrupted)")
                arrays[name] = np.frombuffer(chunk, dtype).copy()
            offset += length
        if offset != len(mv):
            raise ValueError(f"{where}: {len(mv) - offset} unexpected bytes after the last section")
        for name in ("labels", "levels", "deleted", "nextdup"):
            if name in arrays and arrays[name].shape[0] != n:
                raise ValueError(f"{where}: corrupted file (section {name!r} has {arrays[name].shape[0]} entries, "
                                 f"expected {n})")
        if arrays["vectors"].size != n * dim:
            raise ValueError(f"{where}: corrupted file (vectors section has the wrong size)")
        labels = arrays["labels"]
        if n and (labels.min() < 0 or labels.max() > MAX_ID):
            raise ValueError(f"{where}: corrupted file (an id outside 0..2**63-2)")
        external = mapped is not None and not arrays["vectors"].flags.owndata
        index = cls(dim, metric=metrics[metric], M=M, ef_construction=efc, storage=storages[storage], seed=seed)
        index._core.restore(labels, arrays["levels"], arrays["deleted"],
                            arrays["vectors"].reshape(n, dim), arrays["lcounts"], arrays["link_ids"], entry, top,
                            arrays.get("nextdup"), mapped if external else None)
        index._next_id = next_id
        index._ef = ef
        return index

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index (format in the module docstring) atomically: a uniquely named temporary file beside
        ``path``, flushed, then renamed over it (a failed save leaves the previous file as it was)."""
        atomic_write(path, self._write)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False) -> HNSWIndex:
        """Read an index written by ``save``; a truncated, corrupted or foreign file raises ValueError.

        ``mmap=True``: the vectors stay in the file, mapped read-only and private (the operating system pages them
        in as searches touch them); the graph, ids and links are read and checked as usual, but the vectors
        section is neither read nor checksummed. Such an index is read-only for ``add`` (``remove`` works;
        ``compact()`` copies it into memory and makes it writable). The file must not change while it is mapped;
        if it does (truncated, rewritten in place) the next call that reads the vectors raises ValueError instead
        of returning scores of changed vectors, and a truncation during a search is caught too (the pages that
        vanished read as zeros and the search raises ValueError) - never a crash. ``save`` to the same path is
        safe: it writes a new file and renames it, so the mapped one stays intact. Version 1 files, whose vectors
        may be misaligned, are read into memory instead."""
        if os.path.isfile(path) and _container.is_container(path):
            with _container.Reader(path, "HNSW", (_CONTAINER_VERSION,), mapped=mmap) as r:
                return cls._from_container(r)
        if not mmap:  # versions 1 and 2 (before the shared container)
            with open(path, "rb") as f:
                data = f.read()
            return cls._from_bytes(data, os.fspath(path))
        mapped = _core._MappedFile(os.fspath(path))
        if mapped.size == 0:
            raise ValueError(f"{os.fspath(path)}: not a simkern HNSW file (empty)")
        return cls._from_bytes(mapped, os.fspath(path), mapped=mapped)

    @classmethod
    def _from_container(cls, r: _container.Reader) -> HNSWIndex:
        """An index from an open container (mapped: the vectors are used in place)."""
        mapped = r.mapped_file
        steps = cls._restore_steps(r.meta, r.layout, r.where, mapped,
                                   r.view("vectors") if mapped is not None and "vectors" in r.sections else None)
        index: HNSWIndex = _container.restore(r, steps)
        return index

    @classmethod
    def _restore_steps(cls, m: dict[str, Any], layout: _container.Layout, where: str,
                       mapped: _core._MappedFile | None = None,
                       mapped_vectors: npt.NDArray[np.float32] | None = None) -> _container.RestoreSteps:
        """The index rebuilt from a container's meta and sections (a file's or a pickle stream's; see
        _container.restore): header fields and per-node sections checked, then vectors (unless mapped) and link
        ids fed to a restorer a chunk at a time."""
        try:
            dim, M, efc, ef, n = (int(m[k]) for k in ("dim", "M", "ef_construction", "ef", "nodes"))
            seed, next_id, entry, top, total = (int(m[k]) for k in ("seed", "next_id", "entry", "max_level",
                                                                     "link_total"))
            index = cls(dim, metric=m["metric"], M=M, ef_construction=efc, storage=m["storage"], seed=seed)
            index.ef = ef
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: corrupted header ({e})") from None
        if not 0 <= next_id <= MAX_ID + 1:
            raise ValueError(f"{where}: corrupted header (next id={next_id})")
        want = {"labels": ((n,), np.int64), "levels": ((n,), np.uint8), "deleted": ((n,), np.uint8),
                "next_dup": ((n,), np.uint32), "vectors": ((n, dim), np.float32), "link_ids": ((total,), np.uint32)}
        if set(layout) != set(want) | {"link_counts"} or layout["link_counts"][1][1:] or any(
                layout[k][1] != shape or layout[k][0] != dtype for k, (shape, dtype) in want.items()) \
                or layout["link_counts"][0] != np.uint32:
            raise ValueError(f"{where}: corrupted file (sections do not match the header)")
        labels = yield from _container.collect("labels", layout)
        if n and (labels.min() < 0 or labels.max() > MAX_ID):
            raise ValueError(f"{where}: corrupted file (an id outside 0..2**63-2)")
        levels = yield from _container.collect("levels", layout)
        deleted = yield from _container.collect("deleted", layout)
        next_dup = yield from _container.collect("next_dup", layout)
        counts = yield from _container.collect("link_counts", layout)
        restorer = _core._HNSWRestorer(index._core, labels, levels, deleted, counts, total, mapped, mapped_vectors)
        if mapped_vectors is None:
            yield from _container.feed("vectors", layout, _LOAD_CHUNK_BYTES, restorer.vectors)
        yield from _container.feed("link_ids", layout, _LOAD_CHUNK_BYTES, restorer.links)
        restorer.finish(next_dup, entry, top)
        index._next_id = next_id
        return index

    @property
    def mmapped(self) -> bool:
        """True when the vectors are read from a memory-mapped file (``load(..., mmap=True)``)."""
        return bool(self._core.external)

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        """Pickling streams the container's sections a part at a time (_pickling.py), with the writer lock held
        until the last part is written; protocols 0 and 1: the whole file as the state (``__getstate__``)."""
        if int(protocol) < 2:
            return super().__reduce_ex__(protocol)
        return _pickling.reduce(self, "HNSW", _CONTAINER_VERSION, self._save_plan(_pickling.PART_BYTES))

    def __copy__(self) -> HNSWIndex:
        """An independent copy (vectors in memory, whatever this index maps), built a part at a time."""
        copy: HNSWIndex = _pickling.copy_of(self)
        return copy

    def __deepcopy__(self, memo: dict[int, Any]) -> HNSWIndex:
        return self.__copy__()

    def __getstate__(self) -> dict[str, bytes]:
        return {"data": self._to_bytes()}

    def __setstate__(self, state: dict[str, bytes]) -> None:
        """Pickles of protocols 0 and 1, and of simkern before the streamed pickle."""
        other = HNSWIndex._from_bytes(state["data"], "pickle")
        self.__dict__.update(other.__dict__)


_pickling.register("HNSW", HNSWIndex._restore_steps, (_CONTAINER_VERSION,))



