"""PQIndex: a flat product-quantized index (codes in memory, exhaustive ADC scan with fused top-k).

Search returns the exact top-k of float ADC scores (equal to ``ProductQuantizer.adc`` bit for bit), on the
library's thread pool, splitting the codes of a single query across threads. Both code widths are scanned with
uint8-quantised tables and uint16 sums (4-bit: 16-entry vpshufb lookups over blocks of 32 codes; 8-bit: blocks
of 64 codes, AVX-512 VBMI byte permutes where the CPU has them, table loads otherwise), up to four queries per
pass over the codes, with a running threshold in the kernel so that only ids within the quantisation error bound
of the k-th best come out; those are re-scored with the float tables; m > 256 falls back to the float scan.
The blocked copy of the codes (as large as the packed codes) is extended by the first search after ``add`` with
the blocks completed since (``_BlockedCodes``); the partial last block is re-scored directly.
``filter`` restricts the ids inside the scan. With ``keep_vectors=True`` the original vectors are stored too and
``rerank=r`` re-scores the best ``r * k`` candidates exactly.

Vectors and queries must be finite with Euclidean norms of at most 2**62 (larger ones could overflow float32 in
the distance arithmetic): ValueError otherwise.

File format (``save`` / ``load``): the container of every index (``_container.py``), kind ``PQIndex`` version 2:
meta (dim, m, nbits, metric, keep_vectors, opq, n) and sections ``codebooks`` float32 (m, ksub, dsub), ``codes``
uint8 (n, m) one code per byte, ``vectors`` float32 (n, dim) if stored, ``rotation`` float32 (dim, dim) with OPQ.
``load(path, mmap=True)`` leaves the codes and vectors in the file (mapped read-only and private; a search on a
file changed meanwhile raises ValueError). Version 1 files (magic ``SIMKPQI\\0``, one CRC over the file) are still
read. Loading checks sizes, checksums and values and raises ValueError otherwise. Pickling (protocol >= 2) streams
the same sections through the same checks (``_pickling.py``).
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import IO, Any, SupportsIndex, TypeVar

import numpy as np
import numpy.typing as npt

from . import _container, _core, _pickling
from ._progress import progress_reporter
from ._validate import (
    atomic_write,
    check_norms,
    filter_arg,
    float32_rows,
    int_arg,
    out_pair,
    pair_into_out,
    positive_int,
    state_array,
    state_dict,
    threads_arg,
)
from .opq import OPQ
from .pq import ProductQuantizer

_PROGRESS_ROWS = 1 << 16  # rows encoded between two progress reports of add(progress=True)

__all__ = ["PQIndex"]

_MAGIC = b"SIMKPQI\0"  # version 1 files (before the shared container)
_VERSION = 2  # the PQIndex kind version inside the container
_HEADER = struct.Struct("<8sIIIIIQII")  # magic, version, dim, m, nbits, metric, n, flags, reserved
_Scalar = TypeVar("_Scalar", bound=np.generic)


def _block_codes(codes: npt.NDArray[np.uint8], nbits: int) -> npt.NDArray[np.uint8]:
    """Codes re-packed for the quantised scans. 4-bit: (ceil(n / 32), ceil(m / 2), 32) bytes, byte i of a block =
    code of vector i for subspace 2p (low nibble) and 2p + 1 (high nibble). 8-bit: (ceil(n / 64), m, 64), row s of
    a block = the codes of its 64 vectors for subspace s. Padding vectors and subspace are 0."""
    n, m = codes.shape
    if nbits == 4:
        n_blocks, n_pairs = (n + 31) // 32, (m + 1) // 2
        padded = np.zeros((n_blocks * 32, n_pairs * 2), np.uint8)
        padded[:n, :m] = codes
        pairs = padded.reshape(n_blocks, 32, n_pairs, 2)
        packed = pairs[..., 0] | (pairs[..., 1] << 4)            # (n_blocks, 32, n_pairs)
        return np.ascontiguousarray(packed.transpose(0, 2, 1))
    n_blocks = (n + 63) // 64
    padded = np.zeros((n_blocks * 64, m), np.uint8)
    padded[:n] = codes
    return np.ascontiguousarray(padded.reshape(n_blocks, 64, m).transpose(0, 2, 1))


class _BlockedCodes:
    """The blocked copy (``_block_codes``) of the full blocks of an index's codes, shared by all its snapshots and
    extended in place: a search blocks the rows added since the last one (under a lock), never all of them again.
    Blocks once handed out are never rewritten (new blocks go past them, into spare capacity or a new buffer), so
    a search keeps a stable view while an add and another search extend it. The partial last block is not
    blocked: the quantised scan re-scores those < 64 codes directly (the same exact results)."""

    __slots__ = ("nbits", "rows", "_state", "_lock")

    def __init__(self, nbits: int) -> None:
        self.nbits = nbits
        self.rows = 32 if nbits == 4 else 64  # vectors per block
        # (buffer of capacity blocks, blocks filled): replaced as one tuple, so a reader never pairs a new count
        # with an older, shorter buffer
        self._state: tuple[npt.NDArray[np.uint8] | None, int] = (None, 0)
        self._lock = threading.Lock()

    def full(self, codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """The blocks of the first ``len(codes) // rows`` full blocks of ``codes`` (rows of this index's codes,
        which never change once added)."""
        want = len(codes) // self.rows
        if want == 0:
            return _block_codes(codes[:0], self.nbits)
        buf, done = self._state
        if buf is None or done < want:
            with self._lock:
                buf, done = self._state
                if done < want:
                    new = _block_codes(codes[done * self.rows:want * self.rows], self.nbits)
                    if buf is None:
                        buf = np.empty((max(want, 16),) + new.shape[1:], np.uint8)
                    elif len(buf) < want:  # grow by half: amortised O(1) copies per block
                        buf = _grow(buf, done, max(want, done + done // 2))
                    buf[done:want] = new
                    self._state = (buf, want)
        assert buf is not None
        return buf[:want]


class _Snapshot:
    """One published state of a PQIndex: ``codes`` (n, m) and ``vectors`` (n, dim) or None, never modified after
    publication, and the index's shared blocked copy of the codes (``_BlockedCodes``)."""

    __slots__ = ("codes", "vectors", "blocked")

    def __init__(self, codes: npt.NDArray[np.uint8], vectors: npt.NDArray[np.float32] | None,
                 blocked: _BlockedCodes) -> None:
        self.codes, self.vectors, self.blocked = codes, vectors, blocked


class PQIndex:
    """Flat PQ index over ``dim``-dimensional float32 vectors (``metric`` "l2": ascending squared distances;
    "ip": descending inner products). Ids are 0..len-1 in insertion order.

    Threads: any number of ``search`` calls may run concurrently with each other and with ``add`` (``add`` calls
    are serialised with each other). A search sees the index as it was at one instant: every vector of the
    ``add`` calls that completed before it started, and of those that complete while it runs either all the
    vectors of an ``add`` or none; results, ``filter`` masks and ``rerank`` refer to that state (a mask must
    have the length of that state). ``train``, ``load`` and unpickling must not run concurrently with other
    calls on the same index.
    """

    def __init__(self, dim: int, m: int, nbits: int = 8, metric: str = "l2", *, keep_vectors: bool = False,
                 opq: bool = False) -> None:
        # opq=True: learn an OPQ rotation at train() and quantise rotated vectors (see simkern.OPQ).
        self.opq = OPQ(dim, m, nbits, metric) if opq else None
        self.pq = self.opq.pq if opq else ProductQuantizer(dim, m, nbits, metric)  # type: ignore[union-attr]  # opq: an OPQ
        self.keep_vectors = bool(keep_vectors)
        self._write_lock = threading.Lock()
        self._mapped: _core._MappedFile | None = None  # load(mmap=True): the file the codes / vectors lie in
        self._set_contents(np.zeros((0, self.pq.m), np.uint8),
                           np.zeros((0, self.dim), np.float32) if self.keep_vectors else None)

    def _set_contents(self, codes: npt.NDArray[np.uint8], vectors: npt.NDArray[np.float32] | None) -> None:
        """Adopt ``codes`` (one code per byte, whatever nbits) and ``vectors`` as the buffers and publish them."""
        self._code_buf, self._vector_buf = codes, vectors  # rows past the published n are private to add()
        self._snap = _Snapshot(codes, vectors, _BlockedCodes(self.pq.nbits))

    # -- basic properties --------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.pq.dim

    @property
    def metric(self) -> str:
        return self.pq.metric

    @property
    def is_trained(self) -> bool:
        return self.pq.is_trained

    @property
    def mmapped(self) -> bool:
        """True when the codes (and vectors) are read from a memory-mapped file (``load(..., mmap=True)``)."""
        return self._mapped is not None

    def __len__(self) -> int:
        return int(self._snap.codes.shape[0])

    @property
    def id_bound(self) -> int:
        """Ids are 0..len(index)-1 in the order added, so this is ``len(index)``: the length of a boolean
        ``filter`` mask (the same property as ``HNSWIndex.id_bound``)."""
        return len(self)

    def __repr__(self) -> str:
        return (f"PQIndex(dim={self.dim}, m={self.pq.m}, nbits={self.pq.nbits}, metric={self.metric!r}, "
                f"n={len(self)}, keep_vectors={self.keep_vectors}, opq={self.opq is not None}, "
                f"{'trained' if self.is_trained else 'untrained'})")

    @property
    def _codes(self) -> npt.NDArray[np.uint8]:
        """The published codes, one per byte (read-only use: demo and benchmarks read them)."""
        return self._snap.codes

    @property
    def codes(self) -> npt.NDArray[np.uint8]:
        """uint8 ``(n, code_size)`` codes in ProductQuantizer's format (4-bit codes packed two per byte)."""
        codes = self._snap.codes
        return codes.copy() if self.pq.nbits == 8 else self.pq._pack4(codes)

    # -- building ----------------------------------------------------------------------------------------------
    def train(self, x: npt.NDArray[np.float32], *, seed: int = 0, iters: int = 25, max_train_points: int | None = None,
              threads: int | None = None) -> PQIndex:
        """Train the quantizer (see ``ProductQuantizer.train``). Returns ``self``."""
        iters = int_arg(iters, "iters", 0)
        with self._write_lock:
            if len(self):
                raise ValueError("train() must come before add(): the index already holds codes")
            if self.opq is not None:
                self.opq.train(x, pq_final_iters=iters, seed=seed, max_train_points=max_train_points, threads=threads)
            else:
                self.pq.train(x, iters=iters, seed=seed, max_train_points=max_train_points, threads=threads)
        return self

    def _to_pq_space(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Checked float32 rows as the quantizer sees them (rotated with OPQ; not checked again)."""
        return x if self.opq is None else self.opq._rotate_checked(x)

    def add(self, x: npt.NDArray[np.float32], *, threads: int | None = None,
            progress: bool = False) -> npt.NDArray[np.int64]:
        """Encode and append ``x`` (float32 ``(n, dim)``); the new ids continue from ``len(index)`` and are
        returned (int64). Concurrent searches see all of ``x`` or none of it (see the class docstring).
        ``progress=True`` reports the encoding (tqdm when installed, else stderr)."""
        if not self.is_trained:
            raise ValueError("the index is not trained: call train() first")
        x = float32_rows(x, self.dim, "x")
        check_norms(x, "x")
        return self._add_checked(x, threads_arg(threads), progress)

    def _add_checked(self, x: npt.NDArray[np.float32], core_threads: int,
                     progress: bool = False) -> npt.NDArray[np.int64]:
        """``add`` for rows the caller checked (float32 C-contiguous finite rows of dim, norms <= 2**62) on a
        trained index, threads resolved: the internal path of composed calls (MultiVectorIndex)."""
        if progress and len(x):
            report = progress_reporter(len(x), "vec", "PQIndex.add")
            parts = []
            for start in range(0, len(x), _PROGRESS_ROWS):
                part = x[start:start + _PROGRESS_ROWS]
                # pq._ct is set once the quantizer is trained (checked above)
                parts.append(_core._pq_encode(self._to_pq_space(part), self.pq._ct, core_threads))  # type: ignore[arg-type]
                report(start + len(part))
            codes = np.concatenate(parts)
        else:
            codes = _core._pq_encode(self._to_pq_space(x), self.pq._ct, core_threads)  # type: ignore[arg-type]  # as above
        if not len(codes):
            return np.zeros(0, np.int64)
        with self._write_lock:
            n, count = len(self), len(codes)
            if n + count > len(self._code_buf):
                # Grow by half (amortised O(1) copies per row); published snapshots keep the old buffers.
                capacity = max(n + count, n + n // 2, 64)
                self._code_buf = _grow(self._code_buf, n, capacity)
                if self.keep_vectors:
                    # _vector_buf is an array exactly when keep_vectors (here and below)
                    self._vector_buf = _grow(self._vector_buf, n, capacity)  # type: ignore[arg-type]
            # Rows n.. of the buffers belong to no published snapshot: writing them is invisible to searches.
            self._code_buf[n : n + count] = codes
            if self.keep_vectors:
                self._vector_buf[n : n + count] = x  # type: ignore[index]
            self._snap = _Snapshot(self._code_buf[: n + count],
                                   self._vector_buf[: n + count] if self.keep_vectors else None,  # type: ignore[index]
                                   self._snap.blocked)
        return np.arange(n, n + count, dtype=np.int64)

    # -- search ------------------------------------------------------------------------------------------------
    def search(self, queries: npt.NDArray[np.float32], k: int = 10, *, filter: npt.ArrayLike | None = None,
               rerank: int | None = None, threads: int | None = None,
               out: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None = None
               ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The ``k`` best ids per query: ``(distances float32 (nq, k), ids int64 (nq, k))``, best first.

        ``filter``: a boolean mask with exactly ``id_bound`` (= ``len(index)``) entries or an array of allowed ids
        (ids not in the index match nothing; an empty list allows none: every result is padding); applied inside
        the scan. The same rule as every index (docs/API.md).
        ``rerank``: re-score the best ``rerank * k`` ADC candidates with the stored vectors (needs
        ``keep_vectors=True``; without stored vectors the scan is already exact float ADC, so rerank would change
        nothing and is refused). Fewer than ``k`` results: ids -1 and +inf (l2) / -inf (ip).
        ``out``: an optional ``(distances float32, ids int64)`` pair of arrays to write the results into
        (docs/API.md).
        """
        mapped = self._mapped
        if mapped is not None:
            mapped.check()  # a file changed under the mapping raises ValueError (before and after the scan)
        result = self._search(queries, k, filter, rerank, threads)
        if mapped is not None:
            mapped.check()  # results computed from a file that changed meanwhile are not returned
        return pair_into_out(result, out_pair(out, result[0].shape))

    def _search(self, queries: npt.NDArray[np.float32], k: int, filter: npt.ArrayLike | None, rerank: int | None,
                threads: int | None, checked: bool = False) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        # checked: the queries are float32 finite rows of dim with norms <= 2**62 already (composed calls)
        if not self.is_trained:
            raise ValueError("the index is not trained: call train() first")
        k = positive_int(k, "k")
        core_threads = threads_arg(threads)
        if rerank is not None:
            rerank = positive_int(rerank, "rerank")
            if not self.keep_vectors:
                raise ValueError("rerank needs the original vectors: build the index with keep_vectors=True")
        if not checked:
            queries = float32_rows(queries, self.dim, "queries")
            check_norms(queries, "queries")
        snap = self._snap  # one consistent state for the whole search (add publishes a new one)
        n = len(snap.codes)
        mask = self._filter_mask(filter, n)
        tables = self.pq._tables_checked(self._to_pq_space(queries), core_threads)
        smaller = self.metric == "l2"
        # More candidates than ids only adds padding: cap the width (k * rerank may be huge).
        width = min(k * rerank, max(k, n)) if rerank else k
        if n and self.pq.m <= 256:
            # Quantised scan on uint8 tables (4-bit: fast scan over blocked codes), then exact float re-scoring of
            # every id within the error bound of the k-th best: the same result as the float scan.
            # Only full blocks are blocked (an add never re-blocks what was blocked before); the scan re-scores
            # the codes past them (< 64) directly: the same exact result.
            scores, ids = _core._pq_search_quantised(tables, snap.codes, snap.blocked.full(snap.codes), mask, width,
                                                     smaller, core_threads)
        else:
            scores, ids = _core._pq_search(tables, snap.codes, mask, width, smaller, core_threads)
        if rerank:
            # rerank requires keep_vectors (checked above): snap.vectors is an array
            scores, ids = self._rerank(snap.vectors, queries, ids, k, smaller)  # type: ignore[arg-type]
        return scores, ids

    @staticmethod
    def _filter_mask(filter: npt.ArrayLike | None, n: int) -> npt.NDArray[np.uint8] | None:
        """The byte mask over the ``n`` ids of the searched state, from any filter of the shared rule
        (``filter_arg``: a boolean mask of exactly n entries, or allowed ids, those >= n matching nothing)."""
        mask, ids = filter_arg(filter, n)
        if ids is None:
            return mask
        mask = np.zeros(n, np.uint8)
        mask[ids[ids < n]] = 1
        return mask

    @staticmethod
    def _rerank(vectors: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], cand: npt.NDArray[np.int64], k: int,
                smaller: bool) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        nq = cand.shape[0]
        out_scores = np.full((nq, k), np.inf if smaller else -np.inf, np.float32)
        out_ids = np.full((nq, k), -1, np.int64)
        for qi in range(nq):
            ids = cand[qi][cand[qi] >= 0]
            vecs = vectors[ids]
            if smaller:
                exact = ((vecs - queries[qi]) ** 2).sum(axis=1, dtype=np.float32)
                order = np.lexsort((ids, exact))[:k]
            else:
                exact = (vecs @ queries[qi]).astype(np.float32)
                order = np.lexsort((ids, -exact))[:k]
            out_scores[qi, : len(order)] = exact[order]
            out_ids[qi, : len(order)] = ids[order]
        return out_scores, out_ids

    # -- persistence -------------------------------------------------------------------------------------------
    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        """Pickling streams the container's sections a part at a time (_pickling.py); an untrained index, and
        protocols 0 and 1: the dict state (``__getstate__``)."""
        if int(protocol) < 2 or not self.is_trained:
            return super().__reduce_ex__(protocol)
        return _pickling.reduce(self, "PQIndex", _VERSION, self._save_plan())

    def __copy__(self) -> PQIndex:
        """An independent copy (in memory, whatever this index maps)."""
        if not self.is_trained:
            other = PQIndex.__new__(PQIndex)
            other.__setstate__(self.__getstate__())
            return other
        copy: PQIndex = _pickling.copy_of(self)
        return copy

    def __deepcopy__(self, memo: dict[int, Any]) -> PQIndex:
        return self.__copy__()

    def __getstate__(self) -> dict[str, Any]:
        snap = self._snap
        return {"pq": self.pq.__getstate__(), "keep_vectors": self.keep_vectors, "codes": snap.codes,
                "vectors": snap.vectors, "opq": None if self.opq is None else self.opq.__getstate__()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = state_dict(state, ("pq", "keep_vectors", "codes", "vectors", "opq"), "PQIndex")
        if state.get("opq") is not None:
            self.opq = OPQ.__new__(OPQ)
            self.opq.__setstate__(state["opq"])
            self.pq = self.opq.pq
        else:
            self.opq = None
            self.pq = ProductQuantizer.__new__(ProductQuantizer)
            self.pq.__setstate__(state["pq"])
        if not isinstance(state["keep_vectors"], (bool, np.bool_)):
            raise ValueError("corrupt PQIndex state: keep_vectors must be a bool")
        self.keep_vectors = bool(state["keep_vectors"])
        codes = state_array(state["codes"], "codes", np.uint8, (None, self.pq.m))
        if codes.size and int(codes.max()) >= self.pq.ksub:
            raise ValueError(f"corrupt PQIndex state: codes out of range for nbits={self.pq.nbits}")
        vectors = None
        if self.keep_vectors:
            vectors = state_array(state["vectors"], "vectors", np.float32, (len(codes), self.dim))
        elif state["vectors"] is not None:
            raise ValueError("corrupt PQIndex state: vectors stored without keep_vectors")
        self._mapped = None
        self._write_lock = threading.Lock()
        self._set_contents(codes, vectors)

    @contextlib.contextmanager
    def _save_plan(self) -> Iterator[tuple[dict[str, Any], list[_container.SectionSpec]]]:
        """The meta and sections of the state published now (the container of ``save``, the parts of a pickle);
        adds may go on meanwhile (no lock is held). The index must be trained."""
        cb = self.pq._require_trained()
        snap = self._snap
        meta = {"dim": self.dim, "m": self.pq.m, "nbits": self.pq.nbits, "metric": self.metric,
                "keep_vectors": self.keep_vectors, "opq": self.opq is not None, "n": len(snap.codes)}
        sections = [_container.SectionSpec.of("codebooks", cb), _container.SectionSpec.of("codes", snap.codes)]
        if self.keep_vectors:
            sections.append(_container.SectionSpec.of("vectors", snap.vectors))  # type: ignore[arg-type]  # kept
        if self.opq is not None:
            sections.append(_container.SectionSpec.of("rotation", self.opq.rotation))
        yield meta, sections

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index (format in the module docstring), section by section from its own arrays, atomically:
        a unique temporary file beside ``path``, flushed, renamed over it. The index must be trained."""
        def write(f: IO[bytes]) -> None:
            with self._save_plan() as (meta, sections):
                _container.write(f, "PQIndex", _VERSION, meta, sections)

        # A unique temporary file renamed into place: readers see the old file or the new one; a failed save
        # leaves the old file and no temporary behind; concurrent saves to one path never share a temporary.
        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False) -> PQIndex:
        """Read an index written by ``save``; a truncated, corrupted or foreign file raises ValueError.
        ``mmap=True``: the codes and vectors stay in the file, mapped read-only and private (pages are read as
        searches touch them); ``add`` copies them into memory as it grows the index. A search on a file that
        changed on disk since ``load`` raises ValueError."""
        if not _container.is_container(path):
            return cls._load_v1(path)
        with _container.Reader(path, "PQIndex", (_VERSION,), mapped=mmap) as r:
            views: dict[str, npt.NDArray[Any]] | None = None
            if mmap:
                views = {k: r.view(k) for k in ("codes", "vectors") if k in r.sections}
            index: PQIndex = _container.restore(r, cls._restore_steps(r.meta, r.layout, r.where, views))
            index._mapped = r.mapped_file
        return index

    @classmethod
    def _restore_steps(cls, meta: dict[str, Any], layout: _container.Layout, where: str,
                       views: dict[str, npt.NDArray[Any]] | None = None) -> _container.RestoreSteps:
        """The index rebuilt from a container's meta and sections (a file's or a pickle stream's; see
        _container.restore); ``views``: codes and vectors left in a mapped file."""
        try:
            dim, m, nbits, n = (int(meta[k]) for k in ("dim", "m", "nbits", "n"))
            metric, keep, opq = meta["metric"], bool(meta["keep_vectors"]), bool(meta["opq"])
            index = cls(dim, m, nbits, metric, keep_vectors=keep, opq=opq)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: corrupted header ({e})") from None
        ksub = 1 << nbits
        want = {"codebooks": ((m, ksub, dim // m), np.float32), "codes": ((n, m), np.uint8)}
        if keep:
            want["vectors"] = ((n, dim), np.float32)
        if opq:
            want["rotation"] = ((dim, dim), np.float32)
        if set(layout) != set(want) or any(layout[k][1] != shape or layout[k][0] != dtype
                                           for k, (shape, dtype) in want.items()):
            raise ValueError(f"{where}: corrupted file (sections do not match the header)")
        codebooks = yield from _container.collect("codebooks", layout)
        if not np.isfinite(codebooks).all():
            raise ValueError(f"{where}: codebooks contain NaN or inf")
        codes = views["codes"] if views is not None else (yield from _container.collect("codes", layout))
        if codes.size and int(codes.max()) >= ksub:
            raise ValueError(f"{where}: codes out of range for nbits={nbits}")
        vectors = None
        if keep:
            vectors = views["vectors"] if views is not None else (yield from _container.collect("vectors", layout))
        if opq:
            rotation = yield from _container.collect("rotation", layout)
            if not np.isfinite(rotation).all():
                raise ValueError(f"{where}: rotation contains NaN or inf")
            index.opq.rotation = rotation  # type: ignore[union-attr]  # opq=True
        index.pq._set_codebooks(codebooks)
        index._set_contents(codes, vectors)
        return index

    @classmethod
    def _load_v1(cls, path: str | os.PathLike[str]) -> PQIndex:
        """Files of version 1 (before the shared container): header, arrays, one CRC over the file."""
        with open(path, "rb") as f:
            data = f.read()
        if len(data) < _HEADER.size + 4:
            raise ValueError(f"{os.fspath(path)}: not a simkern PQIndex file (too short: {len(data)} bytes)")
        magic, version, dim, m, nbits, metric, n, flags, _ = _HEADER.unpack_from(data, 0)
        if magic != _MAGIC:
            raise ValueError(f"{os.fspath(path)}: not a simkern PQIndex file (bad magic)")
        if version != 1:
            raise ValueError(f"{os.fspath(path)}: unsupported PQIndex file version {version} (this build reads 1 "
                             f"and 2)")
        if nbits not in (4, 8) or metric not in (0, 1) or m == 0 or dim == 0 or dim % m or flags > 3:
            raise ValueError(f"{os.fspath(path)}: corrupted header (dim={dim}, m={m}, nbits={nbits}, "
                             f"metric={metric}, flags={flags})")
        ksub, dsub = 1 << nbits, dim // m
        sizes = [m * ksub * dsub * 4, n * m, n * dim * 4 if flags & 1 else 0, dim * dim * 4 if flags & 2 else 0]
        expected = _HEADER.size + sum(sizes) + 4
        if len(data) != expected:
            raise ValueError(f"{os.fspath(path)}: truncated or padded file ({len(data)} bytes, expected {expected})")
        (crc,) = struct.unpack_from("<I", data, expected - 4)
        if zlib.crc32(memoryview(data)[: expected - 4]) != crc:
            raise ValueError(f"{os.fspath(path)}: checksum mismatch (the file is corrupted)")
        offset = _HEADER.size
        codebooks = np.frombuffer(data, np.float32, m * ksub * dsub, offset).reshape(m, ksub, dsub).copy()
        offset += sizes[0]
        codes = np.frombuffer(data, np.uint8, n * m, offset).reshape(n, m).copy()
        offset += sizes[1]
        if not np.isfinite(codebooks).all():
            raise ValueError(f"{os.fspath(path)}: codebooks contain NaN or inf")
        if codes.size and codes.max() >= ksub:
            raise ValueError(f"{os.fspath(path)}: codes out of range for nbits={nbits}")
        index = cls(dim, m, nbits, "l2" if metric == 0 else "ip", keep_vectors=bool(flags & 1), opq=bool(flags & 2))
        index.pq._set_codebooks(codebooks)
        vectors = None
        if flags & 1:
            vectors = np.frombuffer(data, np.float32, n * dim, offset).reshape(n, dim).copy()
            offset += sizes[2]
        if flags & 2:
            rotation = np.frombuffer(data, np.float32, dim * dim, offset).reshape(dim, dim).copy()
            if not np.isfinite(rotation).all():
                raise ValueError(f"{os.fspath(path)}: rotation contains NaN or inf")
            index.opq.rotation = rotation  # type: ignore[union-attr]  # flags & 2: built with opq=True
        index._set_contents(codes, vectors)
        return index


def _grow(buf: npt.NDArray[_Scalar], n: int, capacity: int) -> npt.NDArray[_Scalar]:
    """A new buffer of ``capacity`` rows holding the first ``n`` rows of ``buf``."""
    out = np.empty((capacity,) + buf.shape[1:], buf.dtype)
    out[:n] = buf[:n]
    return out


_pickling.register("PQIndex", PQIndex._restore_steps, (_VERSION,))
