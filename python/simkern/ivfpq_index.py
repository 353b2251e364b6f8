"""IVFPQIndex: an inverted-file index over PQ codes (coarse k-means cells, residuals encoded by PQ; FAISS's
``IndexIVFPQ`` / ``IndexIVFPQFastScan``, the search structure of RepCONC and JPQ): a search scans only the codes of
the ``nprobe`` cells nearest the query.

Scores (docs/ARCHITECTURE.md, "IVF-PQ"): the float ADC of the probed cell, exactly, best first (L2 ascending,
IP descending, ties by id):

- L2 by residual: ``|q - c|^2 + sum_s (T2[c][s][code_s] + T3[q][s][code_s])`` with ``T2 = |r_s|^2 + 2 <c_s, r_s>``
  (precomputed per cell, nlist * m * ksub floats: FAISS's precomputed table) and ``T3 = -2 <q_s, r_s>``: equal to
  ``|q - (c + r)|^2`` up to rounding;
- IP by residual: ``<q, c> + sum_s <q_s, r_s>``;
- without residuals: the plain PQ ADC of the vector's code (the cell only selects).

Each probed cell gets uint8 tables on one scale per query; the 8-bit (VBMI) and 4-bit (fast-scan) kernels of
PQIndex scan the cells nearest first with one running threshold across them, and every id within a proven bound
of the k-th best is re-scored with the float formula: the same results as a float scan of the probed cells.
With ``nprobe = nlist`` and ``by_residual=False`` the results equal ``PQIndex``'s over the same codes.

Ids: any int64 in 0..2**63-2, unique (default: continuing from ``id_bound``). ``remove(ids)`` takes them out
(every id must be present). Threads: searches run concurrently with each other; ``add`` / ``remove`` wait for
running searches and block new ones while they change the lists (a lock in the lists), so a search sees an add
entirely or not at all. ``train``, ``load`` and unpickling must not run concurrently with other calls.

File format (``save`` / ``load``): the shared container (``_container.py``), kind ``IVFPQIndex`` version 1: meta
(dim, nlist, m, nbits, metric, by_residual, keep_vectors, opq, n, id_bound, nprobe) and sections ``centroids``
float32 (nlist, dim), ``codebooks`` float32 (m, ksub, dsub), ``rotation`` float32 (dim, dim) with OPQ, ``sizes``
int64 (nlist,), ``blocks`` uint8 (full blocks, code_bytes, group) and ``tails`` uint8 (each cell's last
``size % group`` codes by code byte) - the lists in their scan layout, cell after cell
(csrc/include/simkern/ivfpq.hpp) -, ``ids`` int64 (n,) in the same
order, ``vectors`` float32 (n, dim) with ``keep_vectors``. ``load(path, mmap=True)`` leaves the lists in the file
(a cell is copied into memory when an add or remove changes it); a search on a file changed meanwhile raises
ValueError.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import IO, Any, SupportsIndex

import numpy as np
import numpy.typing as npt

from . import _container, _core, _pickling
from ._enums import PQ_INITS, PQ_METRICS, choice
from ._progress import progress_reporter
from ._validate import (
    atomic_write,
    check_norms,
    filter_arg,
    float32_rows,
    id_vector,
    int_arg,
    is_valid_id,
    out_pair,
    pair_into_out,
    positive_int,
    seed_arg,
    state_dict,
    threads_arg,
)
from .opq import OPQ
from .pq import ProductQuantizer

__all__ = ["IVFPQIndex"]

_KIND, _VERSION = "IVFPQIndex", 1
_ADD_CHUNK = 1 << 14  # rows assigned and encoded per step of add (bounds the residuals' temporary memory)
_MAX_POINTS_PER_CENTROID = 256  # default training sample: 256 points per centroid (FAISS's default)


class IVFPQIndex:
    """Inverted-file PQ index over ``dim``-dimensional float32 vectors: ``nlist`` coarse cells, PQ codes of
    ``m`` subspaces x ``nbits`` (8 or 4) bits, ``metric`` "l2" (ascending squared distances) or "ip" (descending
    inner products). See the module docstring for the score formula, ids, threads and the file format."""

    def __init__(self, dim: int, nlist: int, m: int, nbits: int = 8, metric: str = "l2", *, by_residual: bool = True,
                 opq: bool = False, keep_vectors: bool = False) -> None:
        dim, nlist, m = positive_int(dim, "dim"), positive_int(nlist, "nlist"), positive_int(m, "m")
        if m > 256:
            raise ValueError(f"m must be at most 256 (the quantised scans sum uint8 tables in uint16), got {m}")
        self.metric = choice(metric, "metric", PQ_METRICS)
        self.pq = ProductQuantizer(dim, m, nbits, "l2")  # trained and encoded in L2; tables per metric at search
        self.dim, self.nlist = dim, nlist
        self.by_residual, self.keep_vectors = bool(by_residual), bool(keep_vectors)
        self.opq = OPQ(dim, m, nbits, self.metric) if opq else None
        self._nprobe = 1
        # coarse centroids in the GEMM's column blocks, (ceil(nlist / 16), dim, 16): the one copy kept
        self._centroids_blk: npt.NDArray[np.float32] | None = None
        self._write_lock = threading.Lock()
        self._mapped: _core._MappedFile | None = None
        self._next_id = 0
        self._new_lists()

    def _new_lists(self) -> None:
        self._lists = _core._IVFLists(self.nlist, self.pq.m, self.pq.nbits, self.dim if self.keep_vectors else 0)

    # -- properties --------------------------------------------------------------------------------------------
    @property
    def m(self) -> int:
        return self.pq.m

    @property
    def nbits(self) -> int:
        return self.pq.nbits

    @property
    def is_trained(self) -> bool:
        return self._centroids_blk is not None and self.pq.is_trained

    @property
    def nprobe(self) -> int:
        """Cells scanned per query when ``search`` gets no ``nprobe`` (default 1, as FAISS)."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._nprobe = self._nprobe_arg(value)

    def _nprobe_arg(self, value: object) -> int:
        nprobe = int_arg(value, "nprobe", 1)
        if nprobe > self.nlist:
            raise ValueError(f"nprobe must be in 1..nlist ({self.nlist}), got {nprobe}")
        return nprobe

    @property
    def centroids(self) -> npt.NDArray[np.float32]:
        """float32 ``(nlist, dim)`` coarse centroids (a copy; in the rotated space with OPQ)."""
        return self._require_trained()

    @property
    def mmapped(self) -> bool:
        return self._mapped is not None

    def __len__(self) -> int:
        return int(self._lists.size)

    @property
    def id_bound(self) -> int:
        """One more than the largest id ever added (removals do not lower it): default ids continue from it and a
        boolean ``filter`` mask has exactly this many entries (as ``HNSWIndex.id_bound``)."""
        return self._next_id

    def __contains__(self, id: object) -> bool:
        if not is_valid_id(id):
            return False
        return bool(self._lists.contains(np.array([id], np.int64))[0])

    def list_sizes(self) -> npt.NDArray[np.int64]:
        """Vectors per cell, int64 ``(nlist,)``."""
        return self._lists.cell_sizes()

    @property
    def imbalance_factor(self) -> float:
        """``nlist * sum(size**2) / n**2`` (FAISS's ``invlists.imbalance_factor``): 1 for equal cells; the expected
        work of a probe relative to equal cells. 0 for an empty index."""
        sizes = self.list_sizes().astype(np.float64)
        n = sizes.sum()
        return float(self.nlist * (sizes**2).sum() / n**2) if n else 0.0

    @property
    def memory_bytes(self) -> int:
        """Bytes of the lists (codes, ids, kept vectors; capacity included, or the mapped / loaded arrays they
        borrow), the centroids, codebooks, the L2 residual tables and the rotation."""
        total = int(self._lists.memory_bytes) + sum(int(a.nbytes) for a in self._borrowed)
        for arr in (self._centroids_blk, self._half_norms, self._cell_tables, self.pq._codebooks):
            total += 0 if arr is None else int(arr.nbytes)
        if self.opq is not None:
            total += int(self.opq.rotation.nbytes)
        return total

    _borrowed: tuple[npt.NDArray[Any], ...] = ()
    _half_norms: npt.NDArray[np.float32] | None = None
    _cell_tables: npt.NDArray[np.float32] | None = None
    _cell_lo: npt.NDArray[np.float32] | None = None
    _cell_hi: npt.NDArray[np.float32] | None = None

    def __repr__(self) -> str:
        return (f"IVFPQIndex(dim={self.dim}, nlist={self.nlist}, m={self.m}, nbits={self.nbits}, "
                f"metric={self.metric!r}, by_residual={self.by_residual}, opq={self.opq is not None}, "
                f"keep_vectors={self.keep_vectors}, n={len(self)}, {'trained' if self.is_trained else 'untrained'})")

    def _require_trained(self) -> npt.NDArray[np.float32]:
        self._check_trained()
        centroids = self._centroids
        assert centroids is not None
        return centroids

    def _check_trained(self) -> None:
        if not self.is_trained:
            raise ValueError("the index is not trained: call train() first")

    # -- training ----------------------------------------------------------------------------------------------
    def train(self, x: npt.NDArray[np.float32], *, iters: int = 25, seed: int = 0,
              max_train_points: int | None = None, init: str = "random", threads: int | None = None,
              progress: bool = False) -> IVFPQIndex:
        """Train on ``x`` (float32 ``(n, dim)``, n >= nlist and >= 2**nbits): OPQ rotation first (``opq=True``),
        then the coarse k-means (``iters`` Lloyd iterations, ``init`` "random" as FAISS or "kmeans++"), then
        the PQ on the residuals ``x - centroid`` (or on ``x`` without residuals), ``iters`` iterations too.
        Each k-means trains on at most ``max_train_points`` rows (default 256 per centroid: ``256 * nlist`` and
        ``256 * 2**nbits``, FAISS's default), sampled without replacement from ``seed``. The result depends only
        on the data, ``seed`` and the options, not on the thread count or the ISA. Returns ``self``."""
        x = float32_rows(x, self.dim, "x")
        check_norms(x, "x")
        iters = int_arg(iters, "iters", 0)
        seed = seed_arg(seed)
        init = choice(init, "init", PQ_INITS)
        if max_train_points is not None:
            max_train_points = positive_int(max_train_points, "max_train_points")
        core_threads = threads_arg(threads)
        n = x.shape[0]
        if n < self.nlist or n < self.pq.ksub:
            raise ValueError(f"train needs at least max(nlist, 2**nbits) = {max(self.nlist, self.pq.ksub)} "
                             f"vectors, got {n}")
        report = progress_reporter(3, "step", "IVFPQIndex.train") if progress else None
        with self._write_lock:
            if len(self):
                raise ValueError("train() must come before add(): the index already holds vectors")
            if self.opq is not None:
                self.opq.train(x, pq_final_iters=0, seed=seed, max_train_points=max_train_points, threads=threads)
                x = self.opq._rotate_checked(x)
            if report:
                report(1)
            sample = self._sample(x, max_train_points or _MAX_POINTS_PER_CENTROID * self.nlist, seed)
            centroids = _core._ivf_train(sample, self.nlist, iters, seed, PQ_INITS[init], core_threads)
            self._set_centroids(centroids)
            if report:
                report(2)
            sample = self._sample(x, max_train_points or _MAX_POINTS_PER_CENTROID * self.pq.ksub, seed + 1)
            if self.by_residual:
                sample = self._residuals(sample, self._assign(sample, core_threads), centroids)
            self.pq.train(sample, iters=iters, seed=seed, init=init, threads=threads)
            self._set_tables()
            if report:
                report(3)
        return self

    @staticmethod
    def _sample(x: npt.NDArray[np.float32], count: int, seed: int) -> npt.NDArray[np.float32]:
        if count >= x.shape[0]:
            return x
        rows = np.random.default_rng(seed).choice(x.shape[0], count, replace=False)
        return np.ascontiguousarray(x[np.sort(rows)])

    @property
    def _centroids(self) -> npt.NDArray[np.float32] | None:
        """The coarse centroids (nlist, dim), unpacked from the GEMM's blocked copy (the only one kept)."""
        blk = self._centroids_blk
        if blk is None:
            return None
        return np.ascontiguousarray(blk.transpose(0, 2, 1).reshape(-1, self.dim)[: self.nlist])

    def _set_centroids(self, centroids: npt.NDArray[np.float32]) -> None:
        """Adopt coarse centroids (nlist, dim) and their derived forms."""
        self._centroids_blk = _core._ivf_pack(np.ascontiguousarray(centroids, dtype=np.float32))
        if self.metric == "l2":
            self._half_norms = (0.5 * (centroids.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)
        else:  # the largest inner product: argmin of 0 - <x, c>
            self._half_norms = np.zeros(self.nlist, np.float32)

    def _set_tables(self) -> None:
        """The per-cell table of L2 by residual: T2[c][s][j] = |r_sj|^2 + 2 <c_s, r_sj> (float64, rounded once), and
        its per-subspace minimum and maximum (the scans' table biases)."""
        self._cell_tables = self._cell_lo = self._cell_hi = None
        if self.metric != "l2" or not self.by_residual:
            return
        cb = self.pq._require_trained().astype(np.float64)          # (m, ksub, dsub)
        cen = self._require_trained().astype(np.float64).reshape(self.nlist, self.m, self.pq.dsub)
        norms = (cb**2).sum(axis=2)                                   # (m, ksub)
        tables = norms[None] + 2.0 * np.einsum("csd,sjd->csj", cen, cb)
        self._cell_tables = np.ascontiguousarray(tables.astype(np.float32))
        self._cell_lo = np.ascontiguousarray(self._cell_tables.min(axis=2))
        self._cell_hi = np.ascontiguousarray(self._cell_tables.max(axis=2))

    def _assign(self, x: npt.NDArray[np.float32], core_threads: int) -> npt.NDArray[np.int32]:
        """Nearest cell of each row (rotated space): smallest L2 / largest inner product, lowest cell on ties."""
        assert self._centroids_blk is not None and self._half_norms is not None  # trained
        return _core._ivf_assign(x, self._centroids_blk, self._half_norms, self.metric == "l2", core_threads)

    def _ct(self) -> npt.NDArray[np.float32]:
        """The trained PQ's codebooks in the kernels' layout (m, dsub, ksub)."""
        assert self.pq._ct is not None  # trained
        return self.pq._ct

    @staticmethod
    def _residuals(x: npt.NDArray[np.float32], cells: npt.NDArray[np.int32],
                   centroids: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.ascontiguousarray(x - centroids[cells])

    # -- adding and removing -----------------------------------------------------------------------------------
    def add(self, x: npt.NDArray[np.float32], ids: npt.ArrayLike | None = None, *, threads: int | None = None,
            progress: bool = False) -> npt.NDArray[np.int64]:
        """Assign each row of ``x`` (float32 ``(n, dim)``) to its nearest cell, encode its residual and append it
        to that cell's list under ``ids`` (int64, unique, none already in the index; default: continuing from
        ``id_bound``). Returns the ids. All of ``x`` is encoded before the lists change: an interrupted or
        failing add leaves the index as it was."""
        centroids = self._require_trained()
        x = float32_rows(x, self.dim, "x")
        check_norms(x, "x")
        n = x.shape[0]
        core_threads = threads_arg(threads)
        with self._write_lock:
            if ids is None:
                ids_arr = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            else:
                ids_arr = id_vector(np.atleast_1d(np.asarray(ids)), "ids")
                if ids_arr.shape[0] != n:
                    raise ValueError(f"ids must have one entry per row of x ({n}), got {ids_arr.shape[0]}")
                sorted_ids = np.sort(ids_arr)
                if n and (np.diff(sorted_ids) == 0).any():
                    dup = sorted_ids[np.flatnonzero(np.diff(sorted_ids) == 0)[0]]
                    raise ValueError(f"ids contain duplicates (id {int(dup)} appears more than once)")
                present = self._lists.contains(sorted_ids)
                if present.any():
                    raise ValueError(f"id {int(sorted_ids[np.flatnonzero(present)[0]])} is already in the index")
            if not n:
                return ids_arr
            report = progress_reporter(n, "vec", "IVFPQIndex.add") if progress else None
            cells = np.empty(n, np.int32)
            codes = np.empty((n, self.m), np.uint8)
            for start in range(0, n, _ADD_CHUNK):
                part = x[start:start + _ADD_CHUNK]
                if self.opq is not None:
                    part = self.opq._rotate_checked(part)
                cells[start:start + len(part)] = self._assign(part, core_threads)
                if self.by_residual:
                    part = self._residuals(part, cells[start:start + len(part)], centroids)
                codes[start:start + len(part)] = _core._pq_encode(part, self._ct(), core_threads)
                if report:
                    report(start + len(part))
            self._lists.add(cells, codes, ids_arr, x if self.keep_vectors else None)
            self._next_id = max(self._next_id, int(ids_arr.max()) + 1)
        return ids_arr

    def remove(self, ids: npt.ArrayLike) -> None:
        """Take ``ids`` out of the index (all must be present and distinct; nothing is removed otherwise). The
        cells that held them are rewritten; ``id_bound`` does not change."""
        ids_arr = np.sort(id_vector(np.atleast_1d(np.asarray(ids)), "ids"))
        if (np.diff(ids_arr) == 0).any():
            raise ValueError("ids contain duplicates")
        with self._write_lock:
            present = self._lists.contains(ids_arr)
            if not present.all():
                raise ValueError(f"id {int(ids_arr[np.flatnonzero(~present)[0]])} is not in the index")
            self._lists.remove(ids_arr)

    def ids(self) -> npt.NDArray[np.int64]:
        """The ids of the index, cell by cell."""
        return self._lists.export()[3]

    # -- search ------------------------------------------------------------------------------------------------
    def search(self, queries: npt.NDArray[np.float32], k: int = 10, *, nprobe: int | None = None,
               filter: npt.ArrayLike | None = None, rerank: int | None = None, threads: int | None = None,
               out: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None = None
               ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The ``k`` best ids per query among the ``nprobe`` cells nearest it (default ``self.nprobe``):
        ``(scores float32 (nq, k), ids int64 (nq, k))``, best first; missing slots are (+inf / -inf, -1).

        ``filter``: a boolean mask of exactly ``id_bound`` entries or an array of allowed ids, applied inside the
        scan. ``rerank=r`` (``keep_vectors=True``): the best ``r * k`` by ADC re-scored with the stored vectors
        (exact L2 / inner product, float64 sums rounded once). ``threads`` over queries, and over a query's cells
        when there are fewer queries than threads."""
        mapped = self._mapped
        if mapped is not None:
            mapped.check()
        result = self._search(queries, k, nprobe, filter, rerank, threads)
        if mapped is not None:
            mapped.check()
        return pair_into_out(result, out_pair(out, result[0].shape))

    def _search(self, queries: npt.NDArray[np.float32], k: int, nprobe: int | None, filter: npt.ArrayLike | None,
                rerank: int | None, threads: int | None) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        self._check_trained()
        k = positive_int(k, "k")
        nprobe = self._nprobe if nprobe is None else self._nprobe_arg(nprobe)
        core_threads = threads_arg(threads)
        if rerank is not None:
            rerank = positive_int(rerank, "rerank")
            if not self.keep_vectors:
                raise ValueError("rerank needs the original vectors: build the index with keep_vectors=True")
        queries = float32_rows(queries, self.dim, "queries")
        check_norms(queries, "queries")
        mask, allowed = filter_arg(filter, self._next_id)
        if allowed is not None:
            allowed = np.unique(allowed)
        rotated = queries if self.opq is None else self.opq._rotate_checked(queries)
        l2 = self.metric == "l2"
        assert self._centroids_blk is not None and self._half_norms is not None  # trained (checked above)
        probes, bases = _core._ivf_coarse(rotated, self._centroids_blk, self._half_norms, l2, nprobe, core_threads)
        if not self.by_residual:
            bases[:] = 0.0
        # The query tables (computed in the search, per block of queries): inner products with residuals (times -2
        # for L2: the -2 <q_s, r_sj> term), the metric's tables without.
        table_l2 = l2 and not self.by_residual
        table_mult = -2.0 if l2 and self.by_residual else 1.0
        width = k * rerank if rerank else k
        width = min(width, max(k, len(self)))
        return self._lists.search(rotated, self._ct(), table_l2, table_mult, self._cell_tables, self._cell_lo,
                                  self._cell_hi, probes, bases, k,
                                  width, l2, mask, allowed, queries if rerank else None, core_threads)

    # -- persistence -------------------------------------------------------------------------------------------
    def _meta(self, n: int) -> dict[str, Any]:
        return {"dim": self.dim, "nlist": self.nlist, "m": self.m, "nbits": self.nbits, "metric": self.metric,
                "by_residual": self.by_residual, "keep_vectors": self.keep_vectors, "opq": self.opq is not None,
                "n": n, "id_bound": self._next_id, "nprobe": self._nprobe}

    @contextlib.contextmanager
    def _save_plan(self) -> Iterator[tuple[dict[str, Any], list[_container.SectionSpec]]]:
        """Meta and sections of the index now (a copy of the lists, taken under their lock). Must be trained."""
        centroids = self._require_trained()
        sizes, blocks, tails, ids, vectors = self._lists.export()
        sections = [_container.SectionSpec.of("centroids", np.ascontiguousarray(centroids)),
                    _container.SectionSpec.of("codebooks", self.pq._require_trained())]
        if self.opq is not None:
            sections.append(_container.SectionSpec.of("rotation", self.opq.rotation))
        sections += [_container.SectionSpec.of("sizes", sizes), _container.SectionSpec.of("blocks", blocks),
                     _container.SectionSpec.of("tails", tails), _container.SectionSpec.of("ids", ids)]
        if vectors is not None:  # keep_vectors
            sections.append(_container.SectionSpec.of("vectors", vectors))
        yield self._meta(int(ids.shape[0])), sections

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index (format in the module docstring) atomically: a temporary file beside ``path``, renamed
        over it (a failed save leaves the previous file). The index must be trained."""
        def write(f: IO[bytes]) -> None:
            with self._save_plan() as (meta, sections):
                _container.write(f, _KIND, _VERSION, meta, sections)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False) -> IVFPQIndex:
        """Read an index written by ``save``; a truncated, corrupted or foreign file raises ValueError.
        ``mmap=True``: the lists and vectors stay in the file, mapped read-only (pages read as searches touch
        them); a search on a file changed on disk since raises ValueError."""
        with _container.Reader(path, _KIND, (_VERSION,), mapped=mmap) as r:
            views: dict[str, npt.NDArray[Any]] | None = None
            if mmap:
                views = {k: r.view(k) for k in ("blocks", "tails", "ids", "vectors") if k in r.sections}
            index: IVFPQIndex = _container.restore(r, cls._restore_steps(r.meta, r.layout, r.where, views))
            index._mapped = r.mapped_file
        return index

    @classmethod
    def _restore_steps(cls, meta: dict[str, Any], layout: _container.Layout, where: str,
                       views: dict[str, npt.NDArray[Any]] | None = None) -> _container.RestoreSteps:
        try:
            dim, nlist, m, nbits, n, id_bound, nprobe = (
                int(meta[k]) for k in ("dim", "nlist", "m", "nbits", "n", "id_bound", "nprobe"))
            keep, opq = bool(meta["keep_vectors"]), bool(meta["opq"])
            index = cls(dim, nlist, m, nbits, meta["metric"], by_residual=bool(meta["by_residual"]), opq=opq,
                        keep_vectors=keep)
            index.nprobe = nprobe
            if not 0 <= n <= id_bound:
                raise ValueError("n and id_bound disagree")
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: corrupted header ({e})") from None
        ksub, group = 1 << nbits, 64 if nbits == 8 else 32
        code_bytes = index.pq.code_size
        want: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {
            "centroids": ((nlist, dim), np.dtype(np.float32)),
            "codebooks": ((m, ksub, dim // m), np.dtype(np.float32)), "sizes": ((nlist,), np.dtype(np.int64)),
            "ids": ((n,), np.dtype(np.int64))}
        if opq:
            want["rotation"] = ((dim, dim), np.dtype(np.float32))
        if keep:
            want["vectors"] = ((n, dim), np.dtype(np.float32))
        names = set(want) | {"blocks", "tails"}
        if set(layout) != names or any(layout[k][1] != shape or layout[k][0] != dtype
                                       for k, (shape, dtype) in want.items()):
            raise ValueError(f"{where}: corrupted file (sections do not match the header)")
        centroids = yield from _container.collect("centroids", layout)
        codebooks = yield from _container.collect("codebooks", layout)
        rotation = (yield from _container.collect("rotation", layout)) if opq else None
        for name, arr in (("centroids", centroids), ("codebooks", codebooks), ("rotation", rotation)):
            if arr is not None and not np.isfinite(arr).all():
                raise ValueError(f"{where}: {name} contain NaN or inf")
        sizes = yield from _container.collect("sizes", layout)
        if (sizes < 0).any() or int(sizes.sum()) != n:
            raise ValueError(f"{where}: corrupted file (cell sizes do not add up to n = {n})")
        n_blocks = int((sizes // group).sum())
        tail_bytes = (n - n_blocks * group) * code_bytes
        for name, shape in (("blocks", (n_blocks, code_bytes, group)), ("tails", (tail_bytes,))):
            if layout[name][1] != shape or layout[name][0] != np.dtype(np.uint8):
                raise ValueError(f"{where}: corrupted file ({name} do not match the cell sizes)")
        arrays: dict[str, npt.NDArray[Any]] = {}
        for name in ("blocks", "tails", "ids") + (("vectors",) if keep else ()):
            arrays[name] = views[name] if views is not None else (yield from _container.collect(name, layout))
        ids = arrays["ids"]
        if n and (int(ids.min()) < 0 or int(ids.max()) >= id_bound or np.unique(ids).size != n):
            raise ValueError(f"{where}: corrupted file (ids must be distinct and in 0..id_bound-1)")
        if opq:
            index.opq.rotation = rotation  # type: ignore[union-attr]  # opq=True
        index.pq._set_codebooks(codebooks)
        index._set_centroids(centroids)
        index._set_tables()
        index._lists.import_(sizes, arrays["blocks"], arrays["tails"], ids, arrays.get("vectors"), False,
                             tuple(arrays.values()))
        index._borrowed = tuple(arrays.values())
        index._next_id = id_bound
        return index

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        """Pickling streams the container's sections (_pickling.py); an untrained index, and protocols 0 and 1: the
        dict state."""
        if int(protocol) < 2 or not self.is_trained:
            return super().__reduce_ex__(protocol)
        return _pickling.reduce(self, _KIND, _VERSION, self._save_plan())

    def __getstate__(self) -> dict[str, Any]:
        if not self.is_trained:
            meta = self._meta(0)
            return {"meta": meta, "file": None}
        import io

        buf = io.BytesIO()
        with self._save_plan() as (meta, sections):
            _container.write(buf, _KIND, _VERSION, meta, sections)
        return {"meta": meta, "file": buf.getvalue()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = state_dict(state, ("meta", "file"), _KIND)
        if state["file"] is None:
            meta = state["meta"]
            try:
                self.__init__(meta["dim"], meta["nlist"], meta["m"], meta["nbits"], meta["metric"],  # type: ignore[misc]
                              by_residual=meta["by_residual"], opq=meta["opq"], keep_vectors=meta["keep_vectors"])
                self.nprobe = meta["nprobe"]
            except (KeyError, TypeError) as e:
                raise ValueError(f"corrupt IVFPQIndex state ({e})") from None
            return
        import io

        with _container.Reader(io.BytesIO(state["file"]), _KIND, (_VERSION,)) as r:
            other = _container.restore(r, self._restore_steps(r.meta, r.layout, r.where))
        self.__dict__.update(other.__dict__)

    def __copy__(self) -> IVFPQIndex:
        """An independent copy (in memory, whatever this index maps)."""
        other = IVFPQIndex.__new__(IVFPQIndex)
        other.__setstate__(self.__getstate__())
        return other

    def __deepcopy__(self, memo: dict[int, Any]) -> IVFPQIndex:
        return self.__copy__()


_pickling.register(_KIND, IVFPQIndex._restore_steps, (_VERSION,))
