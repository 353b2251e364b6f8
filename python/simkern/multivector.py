"""Multi-vector retrieval at single-vector cost: FDE -> ANN candidates -> exact MaxSim rerank.

    index = simkern.MultiVectorIndex(128)                  # FDE (R=20, k=5, AMS 16, fill) + HNSW over the FDEs
    index.add(docs)                                         # Ragged / list of (L_i, 128) arrays / 3-D array
    scores, ids = index.search(queries, k=10)               # exact MaxSim scores of the best k docs

``ann``: ``"hnsw"`` (HNSWIndex over document FDEs, inner product), ``"pq"`` (PQIndex over the FDEs, 8-bit codes;
by default 256 subspaces, 40 coordinates each for the 10240-d FDE, the most our quantised scan sums in uint16 -
the paper's 8-coordinate subspaces give 1280 of them and a float scan 2-5x slower at about the same recall after
rerank; trained on the first ``add``), ``"flat"`` (exact inner product over the FDEs) or ``"tokens"`` (the paper's
baseline: every doc token in an HNSWIndex; each query token retrieves its ``token_k`` nearest tokens (default
max(32, candidates // 2)), their docs are ranked by the MaxSim of the retrieved tokens, the best ``candidates`` are
reranked). Whatever the ANN, the returned scores are exact MaxSim scores of the returned ids (``maxsim_topk`` over
the kept tokens).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
import threading
import tokenize
from collections.abc import Callable, Iterator
from typing import Any, SupportsIndex

import numpy as np
import numpy.typing as npt

from . import _container, _core, _pickling
from ._enums import MULTIVECTOR_ANNS, choice
from ._mv_ann import BACKENDS
from ._progress import progress_reporter
from ._validate import (
    BFLOAT16_MAX,
    MAX_ID,
    NORM_LIMIT,
    bfloat16_dtype,
    check_norms,
    file_sha256,
    fsync_dir,
    id_vector,
    is_bfloat16,
    is_valid_id,
    out_pair,
    pair_into_out,
    positive_int,
    row_norms64,
    threads_arg,
)
from .fde import FDE
from .hnsw import HNSWIndex
from .maxsim import _topk_checked
from .pq_index import PQIndex
from .ragged import Ragged, RaggedLike, aligned_tokens, as_ragged

__all__ = ["MultiVectorIndex"]

_STORAGES = ("float32", "float16", "bfloat16")  # the dtypes of kept doc tokens: _storage_dtype(name)
_STORAGE_MAX = {"float16": float(np.finfo(np.float16).max), "bfloat16": BFLOAT16_MAX}  # largest finite values


def _storage_dtype(name: str) -> np.dtype[Any]:
    return bfloat16_dtype() if name == "bfloat16" else np.dtype(name)

_KIND = "MultiVectorIndex"  # the container kind (version 2): one file, index.skc, in the saved folder
_CONTAINER_VERSION = 2
_FILE = "index.skc"
_ANN = "ann/"  # the ANN's sections, embedded under this prefix
_MAPPABLE = {"tokens", "fdes"} | {_ANN + name for b in BACKENDS.values() for name in b.mapped_sections}
_FORMAT = "simkern.MultiVectorIndex"  # version 1: manifest.json + .npy files + the ANN's file (still read)
_VERSION = 1
_ENCODE_BATCH = 2048  # docs per FDE batch during add
# A MaxSim score is at most sum_i |q_i| * (largest doc token norm): searches whose bound passes this are refused
# (float32 overflows at ~2**128).
_SCORE_LIMIT = 2.0**127
_SAVE_TRIES = 100  # save: attempts to swap the new folder in while other savers keep replacing the same path
# The ANN of a state: an HNSWIndex over FDEs ("hnsw") or tokens ("tokens"), a PQIndex ("pq"), None ("flat"). Typed
# Any: which one it is follows from the backend (_mv_ann.py), which mypy cannot track through the uses.
_Ann = Any


def _default_fde(dim: int) -> FDE:
    """The paper's 10240-d configuration: R = 20, k = 5, AMS projection to 16, empty partitions filled."""
    return FDE(dim, num_repetitions=20, num_simhash_projections=5, projection="ams_sketch", projection_dimension=16,
               fill_empty_partitions=True)


class _Store:
    """One published state of the index (what a search works on). Never modified once published, except rows of
    ``tokens`` past ``n_tokens`` and of ``offsets`` past ``n_docs + 1`` (spare capacity that the next add fills
    before it publishes a new state) and the lazily built ``lookup``. ``ann`` is shared between states for
    "hnsw" / "tokens" (searches drop its entries past the state) and copied on write for "pq"."""

    __slots__ = ("tokens", "n_tokens", "offsets", "n_docs", "ids", "alive", "fdes", "ann", "max_norm", "live",
                 "live_tokens", "lookup")
    _FIELDS = ("tokens", "n_tokens", "offsets", "n_docs", "ids", "alive", "fdes", "ann", "max_norm")
    tokens: npt.NDArray[Any]  # the storage dtype
    n_tokens: int
    offsets: npt.NDArray[np.int64]
    n_docs: int
    ids: npt.NDArray[np.int64]
    alive: npt.NDArray[np.bool_]
    fdes: npt.NDArray[np.float32] | None
    ann: _Ann
    max_norm: float
    live: int
    live_tokens: int
    lookup: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None

    def __init__(self, tokens: npt.NDArray[Any], n_tokens: int, offsets: npt.NDArray[np.int64], n_docs: int,
                 ids: npt.NDArray[np.int64], alive: npt.NDArray[np.bool_], fdes: npt.NDArray[np.float32] | None,
                 ann: _Ann, max_norm: float) -> None:
        self.tokens, self.n_tokens, self.offsets, self.n_docs = tokens, n_tokens, offsets, n_docs
        self.ids, self.alive, self.fdes, self.ann, self.max_norm = ids, alive, fdes, ann, max_norm
        self.live = int(alive.sum())
        self.live_tokens = int(np.diff(offsets[:n_docs + 1])[alive].sum())
        self.lookup = None  # (sorted external ids of the live docs, their slots)

    def replace(self, **changes: Any) -> _Store:
        return _Store(**({name: getattr(self, name) for name in self._FIELDS} | changes))

    def docs(self) -> Ragged:
        return Ragged._trusted(self.tokens[:self.n_tokens], self.offsets[:self.n_docs + 1])


class MultiVectorIndex:
    """Multi-vector (ColBERT-style) retrieval: FDE candidates from an ANN index, exact MaxSim rerank.

    Parameters: ``dim`` token dimension; ``fde`` an :class:`FDE` of that dim (default: R=20, k=5, AMS d_proj=16,
    fill on: 10240-d); ``ann`` ``"hnsw"`` | ``"pq"`` | ``"flat"`` | ``"tokens"``; ``candidates`` docs reranked per
    query (default 100); ``storage`` dtype of the kept doc tokens (``"float32"``, ``"float16"``, ``"bfloat16"``;
    tokens are converted on add); ``threads`` default threads. ``ann_options``: for ``"hnsw"`` / ``"tokens"`` the
    HNSWIndex options (``M``, ``ef_construction``, ``seed``, and ``ef`` for search; ``"tokens"`` also ``token_k``,
    tokens retrieved per query token, default max(32, candidates // 2)); for ``"pq"`` ``m`` (subspaces, default the
    largest divisor of output_dim <= 256), ``nbits`` (8 or 4), ``seed``, ``iters``, ``max_train_points`` (k-means
    sample, default all of the first add).

    Ids: user ids in 0..2**63-2 (-1 pads results). Values: doc and query tokens are finite with Euclidean norms of
    at most 2**62 (and within the storage dtype's range), so that no FDE, ANN or MaxSim sum can overflow float32.

    Transactions: ``add`` and ``remove`` either complete or leave the index exactly as it was (any exception,
    KeyboardInterrupt included). ``save`` writes a new folder beside ``path`` and swaps it in; it replaces only an
    empty folder or one written by ``save``.

    Threads: any number of ``search`` calls (and ``len``, ``in``, ``ids``, ``docs``) may run concurrently with
    each other and with one writer (``add``, ``remove``, ``save``, pickling; writers are serialised by a lock). A
    search works on the state published before it started: it sees each ``add`` / ``remove`` entirely or not at
    all, never a part of one.
    """

    def __init__(self, dim: int, *, fde: FDE | None = None, ann: str = "hnsw", candidates: int = 100,
                 storage: str = "float32", threads: int | None = None, **ann_options: Any) -> None:
        self._dim = positive_int(dim, "dim")
        ann = choice(ann, "ann", MULTIVECTOR_ANNS)
        storage = choice(storage, "storage", _STORAGES)
        if fde is not None and not isinstance(fde, FDE):
            raise TypeError(f"fde must be a simkern.FDE, got {type(fde).__name__}")
        if fde is not None and fde.dim != self._dim:
            raise ValueError(f"fde.dim must equal dim ({self._dim}), got {fde.dim}")
        self._ann_kind = ann
        # None only for ann="tokens", whose code paths never read it (the public fde property says FDE | None)
        self._fde: FDE = None if ann == "tokens" else (fde if fde is not None else _default_fde(self._dim))  # type: ignore[assignment]
        self.candidates = positive_int(candidates, "candidates")
        self._storage = storage
        self._threads = threads_arg(threads)
        self._options = dict(ann_options)
        self._lock = threading.RLock()  # writers: add, remove, save, pickling
        # the ANN behind one interface (_mv_ann.py); the ANN object itself is in each published state
        self._backend = BACKENDS[ann](self._dim, self._fde, self._options, lambda: _ENCODE_BATCH)
        # doc store: tokens in slots (insertion order), capacity-doubling buffers, tombstones for removed docs
        self._st = _Store(np.zeros((0, self._dim), _storage_dtype(storage)), 0, np.zeros(1, np.int64), 0,
                          np.zeros(0, np.int64), np.zeros(0, np.bool_), None, self._backend.make(), 0.0)
        self._mapped: _core._MappedFile | None = None  # load(mmap=True): the file the token store lies in

    # -- properties -----------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def ann(self) -> str:
        return self._ann_kind

    @property
    def storage(self) -> str:
        return self._storage

    @property
    def fde(self) -> FDE | None:
        return self._fde

    @property
    def _ann(self) -> _Ann:
        """The ANN index of the published state (None for "flat")."""
        return self._st.ann

    def __len__(self) -> int:
        return self._st.live

    def __repr__(self) -> str:
        return (f"MultiVectorIndex(dim={self._dim}, ann={self._ann_kind!r}, docs={len(self)}, "
                f"candidates={self.candidates}, storage={self._storage!r}, "
                f"fde_dim={None if self._fde is None else self._fde.output_dim})")

    def __contains__(self, id: object) -> bool:
        if not is_valid_id(id):
            return False
        return bool(self._slots_of(np.array([int(id)], np.int64), self._st, strict=False)[0] >= 0)

    def ids(self) -> npt.NDArray[np.int64]:
        """External ids of the live docs, in insertion order."""
        st = self._st
        return st.ids[st.alive]

    def docs(self) -> Ragged:
        """All kept doc tokens by slot (removed docs included), in the storage dtype; a zero-copy view."""
        return self._st.docs()

    # -- add / remove ---------------------------------------------------------------------------------------
    def add(self, docs: RaggedLike, ids: npt.ArrayLike | None = None, *, threads: int | None = None,
            progress: bool = False) -> npt.NDArray[np.int64]:
        """Add documents (a Ragged, a list of ``(L_i, dim)`` arrays or a 3-D array; float32 for the FDE, any of
        float32/float16/bfloat16 for storage - tokens are converted to ``storage``). ``ids``: external ids in
        0..2**63-2 (default: continuing after the largest id so far); an id already present raises ValueError.
        Empty docs, NaN/inf, values beyond the storage dtype's range and tokens of norm > 2**62 raise ValueError.
        All or nothing: if it raises (KeyboardInterrupt included) the index is as before. Returns the ids."""
        d = as_ragged(docs, "docs")
        if d.dim != self._dim:
            raise ValueError(f"docs must have dim {self._dim}, got dim {d.dim}")
        if d.dtype not in (np.float32, np.float16) and not is_bfloat16(d.dtype):
            raise TypeError(f"docs must be float32, float16 or bfloat16, got {d.dtype}")
        n = len(d)
        if n == 0:
            return np.zeros(0, np.int64)
        lengths = d.lengths
        if (lengths == 0).any():
            raise ValueError(f"docs[{int(np.argmin(lengths))}] is empty: every document needs at least one token")
        # Checked once here; the FDE, the ANN and the store take these arrays as they are (their internal paths).
        f32 = aligned_tokens(d if d.dtype == np.float32 else Ragged._trusted(d.tokens.astype(np.float32), d.offsets))
        finite_rows = np.isfinite(f32.tokens).all(axis=1)
        if not finite_rows.all():
            row = int(np.argmin(finite_rows))
            doc = _owner(d.offsets, row)
            raise ValueError(f"docs[{doc}] contains NaN or inf (token {row - int(d.offsets[doc])})")
        limit = _STORAGE_MAX.get(self._storage)
        if limit is not None:
            over = np.abs(f32.tokens).max(axis=1) > limit
            if over.any():
                row = int(np.argmax(over))
                doc = _owner(d.offsets, row)
                raise ValueError(f"docs[{doc}] token {row - int(d.offsets[doc])} holds "
                                 f"{float(np.abs(f32.tokens[row]).max()):.6g}, beyond the largest finite "
                                 f"{self._storage} ({limit:.6g}) of storage={self._storage!r}")
        max_norm = float(_token_norms(f32, "docs").max())
        threads = self._threads if threads is None else threads_arg(threads)
        report = progress_reporter(n, "doc", "MultiVectorIndex.add") if progress else (lambda done: None)
        with self._lock:
            st = self._backend.writable(self._st)  # a mapped ANN is copied into memory first (load(mmap=True))
            new_ids = self._new_ids(ids, n, st)
            self._st = self._added(st, d, f32, new_ids, max_norm, threads, report)  # the commit
        return new_ids

    def _added(self, st: _Store, d: Ragged, f32: Ragged, new_ids: npt.NDArray[np.int64], max_norm: float, threads: int,
               report: Callable[[int], None]) -> _Store:
        """The state with ``d`` added. The ANN entries go in first (the backend rolls them back if that fails);
        if the store update fails after them, they are taken out again."""
        slots = np.arange(st.n_docs, st.n_docs + len(d), dtype=np.int64)
        ann, fdes, undo = self._backend.add(st, f32, slots, threads, report)
        try:
            return self._grow_store(st, d, new_ids, ann, fdes, max(st.max_norm, max_norm))
        except BaseException:
            undo()
            raise

    def _grow_store(self, st: _Store, d: Ragged, new_ids: npt.NDArray[np.int64], ann: _Ann,
                    fdes: npt.NDArray[np.float32] | None, max_norm: float) -> _Store:
        """A new state with ``d`` appended: written past the published rows of the buffers, or into new ones."""
        n, total = len(d), d.total_tokens
        need = st.n_tokens + total
        tokens = st.tokens
        if need > tokens.shape[0]:
            tokens = np.zeros((max(need, 2 * tokens.shape[0]), self._dim), tokens.dtype)
            tokens[:st.n_tokens] = st.tokens[:st.n_tokens]
        tokens[st.n_tokens:need] = d.tokens.astype(tokens.dtype, copy=False)
        offsets = st.offsets
        if st.n_docs + n + 1 > offsets.shape[0]:
            offsets = np.zeros(max(st.n_docs + n + 1, 2 * offsets.shape[0]), np.int64)
            offsets[:st.n_docs + 1] = st.offsets[:st.n_docs + 1]
        offsets[st.n_docs + 1:st.n_docs + n + 1] = st.n_tokens + d.offsets[1:]
        return _Store(tokens, need, offsets, st.n_docs + n, np.concatenate([st.ids, new_ids]),
                      np.concatenate([st.alive, np.ones(n, np.bool_)]), fdes, ann, max_norm)

    def _new_ids(self, ids: npt.ArrayLike | None, n: int, st: _Store) -> npt.NDArray[np.int64]:
        if ids is None:
            start = int(st.ids.max()) + 1 if st.ids.size else 0
            if start + n - 1 > MAX_ID:
                raise ValueError(f"ids: the default ids continue after the largest id so far ({start - 1}) and "
                                 f"would pass 2**63-2; pass ids explicitly")
            return np.arange(start, start + n, dtype=np.int64)
        ids = id_vector(ids, "ids")
        if ids.shape[0] != n:
            raise ValueError(f"ids must have one id per doc ({n}), got {ids.shape[0]}")
        if np.unique(ids).shape[0] != n:
            raise ValueError("ids must be distinct")
        present = self._slots_of(ids, st, strict=False)
        if (present >= 0).any():
            raise ValueError(f"id {int(ids[np.argmax(present >= 0)])} is already in the index")
        return ids

    @staticmethod
    def _slots_of(ids: npt.NDArray[np.int64], st: _Store, strict: bool = True) -> npt.NDArray[np.int64]:
        """Slots of live docs with these external ids (-1 where absent; ValueError when strict)."""
        lookup = st.lookup
        if lookup is None:
            live = np.flatnonzero(st.alive)
            order = np.argsort(st.ids[live], kind="stable")
            lookup = st.lookup = (st.ids[live][order], live[order])
        keys, slots = lookup
        pos = np.searchsorted(keys, ids)
        pos_c = np.minimum(pos, max(len(keys) - 1, 0))
        found = (pos < len(keys)) & (keys[pos_c] == ids) if len(keys) else np.zeros(len(ids), np.bool_)
        if strict and not found.all():
            raise ValueError(f"id {int(ids[np.argmin(found)])} is not in the index")
        return np.where(found, slots[pos_c] if len(keys) else -1, -1)

    def remove(self, ids: npt.ArrayLike) -> None:
        """Remove docs by external id (ValueError for an id not in the index or listed twice; nothing is removed
        then). Their tokens stay in memory (slots are not reused); they are never returned again."""
        ids = id_vector(np.atleast_1d(ids), "ids")
        with self._lock:
            st = self._st
            slots = self._slots_of(ids, st)
            if np.unique(slots).shape[0] != slots.shape[0]:
                raise ValueError("ids contain duplicates")
            alive = st.alive.copy()
            alive[slots] = False
            labels = self._backend.removed_labels(st, slots)
            try:
                if labels is not None and labels.size:
                    st.ann.remove(labels)
                self._st = st.replace(alive=alive)  # the commit
            except BaseException:
                if labels is not None:  # put back what the ANN removed
                    gone = labels[~st.ann.contains(labels)]
                    if gone.size:
                        st.ann.unremove(gone)
                raise

    # -- search ---------------------------------------------------------------------------------------------
    def search(self, queries: RaggedLike, k: int = 10, *, candidates: int | None = None, token_k: int | None = None,
               threads: int | None = None, out: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None = None
               ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The ``k`` best docs per query by exact MaxSim among the ANN's ``candidates``: ``(scores float32 (nq, k),
        ids int64 (nq, k))``, best first; fewer than k: ids -1, scores -inf. ``queries``: float32 Ragged / list /
        2-D (one query) / 3-D array, finite, token norms <= 2**62. ``token_k`` (ann="tokens" only): tokens
        retrieved per query token for this call (default: the index's option, else max(32, candidates // 2)).
        Safe during a concurrent add/remove: it sees the index as it was when the search started. ``out``: an
        optional ``(scores float32, ids int64)`` pair of arrays to write the results into (docs/API.md)."""
        mapped = self._mapped
        if mapped is not None:
            mapped.check()  # a file changed under the mapping raises ValueError (before and after the search)
        result = self._search(queries, k, candidates, token_k, threads)
        if mapped is not None:
            mapped.check()
        return pair_into_out(result, out_pair(out, result[0].shape))

    @property
    def mmapped(self) -> bool:
        """True when the token store is read from a memory-mapped file (``load(..., mmap=True)``)."""
        return self._mapped is not None

    def _search(self, queries: RaggedLike, k: int, candidates: int | None, token_k: int | None,
                threads: int | None) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        st = self._st  # the published state this search works on
        q = aligned_tokens(as_ragged(queries, "queries"))  # validated here once (the public boundary)
        if q.dtype != np.float32:
            raise TypeError(f"queries must be float32, got {q.dtype}; convert with .astype(numpy.float32)")
        if q.dim != self._dim:
            raise ValueError(f"queries must have dim {self._dim}, got dim {q.dim}")
        k = positive_int(k, "k")
        c = self.candidates if candidates is None else positive_int(candidates, "candidates")
        if c < k:
            raise ValueError(f"candidates ({c}) must be >= k ({k})")
        if token_k is not None:
            if self._ann_kind != "tokens":
                raise TypeError("token_k applies to ann='tokens' only")
            token_k = positive_int(token_k, "token_k")
        threads = self._threads if threads is None else threads_arg(threads)
        nq = len(q)
        if nq == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        if q.total_tokens and not np.isfinite(q.tokens).all():
            raise ValueError("queries contain NaN or inf")
        norms = _token_norms(q, "queries")
        bound = np.bincount(np.repeat(np.arange(nq), q.lengths), weights=norms, minlength=nq) * st.max_norm
        if (bound > _SCORE_LIMIT).any():
            i = int(np.argmax(bound > _SCORE_LIMIT))
            raise ValueError(f"queries[{i}] could overflow float32 MaxSim scores: its token norms sum to "
                             f"{bound[i] / st.max_norm:.3g} and the largest doc token norm is {st.max_norm:.3g} "
                             f"(product beyond 2**127); scale the tokens down")
        if st.live == 0:
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        cand = self._candidates(q, min(c, st.live), threads, token_k, st)
        scores, slots = _topk_checked(q, st.docs(), k, cand, threads)
        ids = np.where(slots >= 0, st.ids[np.maximum(slots, 0)], -1)
        return scores, ids

    def _candidates(self, q: Ragged, c: int, threads: int, token_k: int | None = None,
                    st: _Store | None = None) -> npt.NDArray[np.int64]:
        """(nq, c) candidate slots of the state ``st`` (default: the published one), -1 padded."""
        return self._backend.candidates(q, c, threads, token_k, self._st if st is None else st)

    # -- persistence ----------------------------------------------------------------------------------------
    def _arrays(self, st: _Store) -> dict[str, npt.NDArray[Any]]:
        tokens = st.tokens[:st.n_tokens]
        arrays = {"tokens": tokens.view(np.uint16) if tokens.dtype != np.float32 else tokens,
                  "offsets": st.offsets[:st.n_docs + 1], "ids": st.ids, "alive": st.alive}
        return arrays | self._backend.arrays(st)  # "flat": its FDE matrix

    def _config(self, st: _Store) -> dict[str, Any]:
        """The configuration and sizes of the state ``st`` (the container's meta; read back by ``_configured``)."""
        if self._fde is not None and self._fde._explicit:
            raise ValueError("this MultiVectorIndex cannot be saved, pickled or copied: its FDE was built by "
                             "FDE.from_matrices, and the saved configuration holds an FDE's seed, not its matrices; "
                             "use an FDE(dim, ..., seed=...) encoder to save the index")
        return {"dim": self._dim, "ann": self._ann_kind,
                "candidates": self.candidates, "storage": self._storage, "options": self._options,
                "fde": None if self._fde is None else self._fde.config, "docs": st.n_docs,
                "tokens": st.n_tokens}

    @contextlib.contextmanager
    def _save_plan(self) -> Iterator[tuple[dict[str, Any], list[_container.SectionSpec]]]:
        """The meta and sections of the published state (the container of ``save``, the parts of a pickle): the
        configuration, the token store (tokens in their storage dtype's bits, offsets, ids, alive; "flat": the FDE
        matrix), then the ANN's own sections under ``ann/`` (its meta under ``ann_meta``). The writer lock (and the
        ANN's) is held until the block ends."""
        with self._lock, contextlib.ExitStack() as plan:
            st = self._st
            self._drop_stale(st)
            meta = self._config(st) | {"ann_meta": None}
            sections = [_container.SectionSpec.of(name, arr) for name, arr in self._arrays(st).items()]
            if st.n_docs and st.ann is not None:  # an empty index has no ANN sections (pq: never trained)
                ann_meta, ann_sections = plan.enter_context(st.ann._save_plan())
                meta["ann_meta"] = ann_meta
                meta["ann_version"] = self._backend.ann_version
                sections += _container.renamed(_ANN, ann_sections)
            yield meta, sections

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the folder ``path`` as one container file, ``index.skc`` (kind ``MultiVectorIndex``
        version 2: the configuration, the token store and the ANN's sections, each with its checksum; see
        docs/ARCHITECTURE.md, "Persistence"). The folder is written beside ``path`` under a unique temporary name,
        then renamed into place: an existing ``path`` must be an empty folder or one written by ``save`` (anything
        else, the current directory, one of its parents and ``/`` raise ValueError); if ``save`` fails, the
        previous folder is left as it was."""
        shown, full = _save_target(path)
        with self._save_plan() as (meta, sections):
            tmp = tempfile.mkdtemp(prefix=".mvindex-", dir=os.path.dirname(full))
            try:
                with open(os.path.join(tmp, _FILE), "wb") as f:
                    _container.write(f, _KIND, _CONTAINER_VERSION, meta, sections)
                    f.flush()
                    os.fsync(f.fileno())
                fsync_dir(tmp)  # its entry, then the rename into place
                _swap_in(tmp, full, shown)
                fsync_dir(os.path.dirname(full))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False) -> MultiVectorIndex:
        """Read a folder written by :meth:`save`; ValueError for anything missing, corrupt or inconsistent.
        ``mmap=True``: the doc tokens (and "flat"'s FDE matrix, the ANN's vectors / codes) stay in the file, mapped
        read-only and private; ``add`` copies the store into memory as it grows it; a search on a file changed
        meanwhile raises ValueError. Folders of version 1 (``manifest.json`` and ``.npy`` files) still load
        (without mmap)."""
        path = os.fspath(path)
        file = os.path.join(path, _FILE)
        if not os.path.isfile(file):
            if mmap:
                if os.path.isfile(os.path.join(path, "manifest.json")):
                    raise ValueError(f"{path!r} is a MultiVectorIndex folder of version 1, which cannot be mapped: "
                                     f"load it without mmap and save it again")
                raise ValueError(f"{path!r} is not a MultiVectorIndex folder (no {_FILE})")
            return cls._load_v1(path)
        with _container.Reader(file, _KIND, (_CONTAINER_VERSION,), mapped=mmap, where=file) as r:
            views: dict[str, npt.NDArray[Any]] = {}
            if mmap:  # the store's bulk and the ANN's (the small sections are read, as without mmap)
                views = {name: r.view(name) for name in r.sections if name in _MAPPABLE}
            index: MultiVectorIndex = _container.restore(r, cls._restore_steps(r.meta, r.layout, file,
                                                                               r.mapped_file, views))
            index._mapped = r.mapped_file
        return index

    @classmethod
    def _restore_steps(cls, meta: dict[str, Any], layout: _container.Layout, where: str,
                       mapped: _core._MappedFile | None = None,
                       views: dict[str, npt.NDArray[Any]] | None = None) -> _container.RestoreSteps:
        """The index rebuilt from a container's meta and sections (a file's or a pickle stream's; see
        _container.restore): the configuration, the token store, then the ANN through its own restore steps;
        ``views``: sections left in a mapped file."""
        views = views or {}
        index = cls._configured(meta, where)
        arrays = {}
        for name in ("tokens", "offsets", "ids", "alive", *index._backend.arrays(index._st)):
            if name not in layout:
                raise ValueError(f"{where}: corrupted file (section {name!r} missing)")
            arrays[name] = views[name] if name in views else (yield from _container.collect(name, layout))
        ann = index._st.ann
        backend = index._backend
        ann_meta = meta.get("ann_meta")
        if backend.loader is not None and ann_meta is not None:
            if meta.get("ann_version") != backend.ann_version or not isinstance(ann_meta, dict):
                raise ValueError(f"{where}: unsupported ANN version {meta.get('ann_version')!r}")
            ann_views = {name: views[_ANN + name] for name in backend.mapped_sections if _ANN + name in views}
            steps = backend.ann_steps(ann_meta, _container.sub_layout(_ANN, layout), where, mapped, ann_views)
            ann = yield from _container.prefixed(_ANN, steps)
        elif backend.loader is not None and meta.get("docs") != 0:  # an empty index keeps the fresh ANN
            raise ValueError(f"{where}: corrupted file (the ANN sections are missing)")
        index._restore(arrays, meta, ann, where)
        return index

    @classmethod
    def _configured(cls, config: dict[str, Any], where: str) -> MultiVectorIndex:
        """An empty index with a saved configuration (the constructor's checks and defaults); ValueError naming
        ``where`` if it is not one."""
        try:
            fde = None if config["fde"] is None else FDE._from_config(config["fde"])
            return cls(config["dim"], fde=fde, ann=config["ann"], candidates=config["candidates"],
                       storage=config["storage"], **config["options"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: bad configuration ({e})") from None

    @classmethod
    def _load_v1(cls, path: str) -> MultiVectorIndex:
        """A folder of version 1: manifest.json (configuration, sizes, SHA-256 of every file), .npy files and the
        ANN's own file."""
        try:
            with open(os.path.join(path, "manifest.json")) as f:
                manifest = json.load(f)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path!r} is not a MultiVectorIndex folder (manifest.json: {e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
            raise ValueError(f"{path!r}: manifest.json is not a {_FORMAT} manifest")
        if manifest.get("version") != _VERSION:
            raise ValueError(f"{path!r}: unsupported version {manifest.get('version')!r} "
                             f"(this simkern reads {_VERSION} and {_CONTAINER_VERSION})")
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise ValueError(f"{path!r}: manifest.json has no file list")
        for name, digest in files.items():
            full = os.path.join(path, os.path.basename(str(name)))
            if not os.path.isfile(full) or file_sha256(full) != digest:
                raise ValueError(f"{path!r}: {name} is missing or corrupt (SHA-256 mismatch)")
        index = cls._configured(manifest, f"{path!r}: manifest.json")
        arrays = {}
        for name in ("tokens", "offsets", "ids", "alive", *index._backend.arrays(index._st)):
            if f"{name}.npy" not in files:
                raise ValueError(f"{path!r}: {name}.npy is not listed in the manifest")
            arrays[name] = _load_npy(os.path.join(path, f"{name}.npy"), f"{path!r}: {name}.npy")
        ann = index._st.ann
        loader = index._backend.loader
        if loader is not None:
            if "ann.bin" in files:
                ann = loader.load(os.path.join(path, "ann.bin"))
            elif manifest.get("docs") != 0:  # an empty index has no ANN file: it keeps the fresh one
                raise ValueError(f"{path!r}: ann.bin is not listed in the manifest")
        index._restore(arrays, manifest, ann, path)
        return index

    def _restore(self, arrays: dict[str, npt.NDArray[Any]], manifest: dict[str, Any], ann: _Ann,
                 where: str) -> None:
        """Publish the state read from a folder or a pickle, after checking it against the manifest and the ANN."""
        n, total = manifest.get("docs"), manifest.get("tokens")
        tokens, offsets, ids, alive = arrays["tokens"], arrays["offsets"], arrays["ids"], arrays["alive"]
        want = _storage_dtype(self._storage)
        raw = np.uint16 if want != np.float32 else np.float32
        ok = (isinstance(n, int) and isinstance(total, int) and tokens.dtype == raw
              and tokens.shape == (total, self._dim)
              and offsets.dtype == np.int64 and offsets.shape == (n + 1,) and ids.dtype == np.int64
              and ids.shape == (n,) and alive.dtype == np.bool_ and alive.shape == (n,))
        if ok:
            ok = (offsets[0] == 0 and offsets[-1] == total and bool(np.all(np.diff(offsets) > 0))
                  and np.unique(ids[alive]).shape[0] == int(alive.sum())  # a removed doc's id may come back
                  and (n == 0 or 0 <= int(ids.min()) <= int(ids.max()) <= MAX_ID))
        fdes = None
        if ok:
            ok, fdes = self._backend.restored_fdes(arrays, n)  # type: ignore[arg-type]  # n is an int (checked)
        if ok:
            tokens = tokens.view(want) if want != np.float32 else tokens
            store = Ragged._trusted(tokens, offsets)
            norms = row_norms64(store.tokens)
            ok = bool(np.all(norms <= NORM_LIMIT))  # False for NaN / inf too
        if not ok:
            raise ValueError(f"{where!r}: the token store is inconsistent with the manifest")
        # total and n are ints here (checked in ok)
        st = _Store(tokens, total, offsets, n, ids, alive, fdes, ann, float(norms.max()) if total else 0.0)  # type: ignore[arg-type]
        self._check_ann(st, where)
        self._st = st

    def _drop_stale(self, st: _Store) -> None:
        """Writers only: tombstone HNSW entries past the state (left by an add interrupted during its rollback)."""
        self._backend.drop_stale(st)

    def _check_ann(self, st: _Store, where: str) -> None:
        if not self._backend.check(st):
            raise ValueError(f"{where!r}: the ANN index does not match the token store")

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        """Pickling streams the container's sections a part at a time (_pickling.py), with the writer locks held
        until the last part is written; protocols 0 and 1: the whole state (``__getstate__``)."""
        if int(protocol) < 2:
            return super().__reduce_ex__(protocol)
        return _pickling.reduce(self, _KIND, _CONTAINER_VERSION, self._save_plan())

    def __copy__(self) -> MultiVectorIndex:
        """An independent copy (in memory, whatever this index maps)."""
        copy: MultiVectorIndex = _pickling.copy_of(self)
        return copy

    def __deepcopy__(self, memo: dict[int, Any]) -> MultiVectorIndex:
        return self.__copy__()

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:  # the ANN is serialised here, with no add running
            st = self._st
            self._drop_stale(st)
            return {"manifest": self._config(st), "arrays": {k: np.array(v) for k, v in self._arrays(st).items()},
                    "ann": st.ann.__getstate__() if st.n_docs and st.ann is not None else None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        m = state["manifest"]
        # unpickling: the constructor's checks and defaults, then the saved state
        self.__dict__.update(MultiVectorIndex._configured(m, "pickle").__dict__)
        ann = state["ann"]
        if isinstance(ann, dict):
            cls: type[HNSWIndex] | type[PQIndex] = type(self._st.ann)  # not None: the state has an ANN
            ann = cls.__new__(cls)
            ann.__setstate__(state["ann"])
        self._restore(state["arrays"], m, self._st.ann if ann is None else ann, "pickle")


def _owner(offsets: npt.NDArray[np.int64], row: int) -> int:
    """The doc (query) holding token row ``row``."""
    return int(np.searchsorted(offsets, row, side="right") - 1)


def _token_norms(r: Ragged, name: str) -> npt.NDArray[np.float64]:
    """float64 norm of every token of ``r`` (finite); a token beyond 2**62 raises ValueError naming ``name[i]``."""
    norms = row_norms64(r.tokens)
    big = norms > NORM_LIMIT
    if big.any():
        i = _owner(r.offsets, int(np.argmax(big)))
        check_norms(r.tokens[r.offsets[i]:r.offsets[i + 1]], f"{name}[{i}] token")  # raises
    return norms


def _is_ours(folder: str) -> bool:
    """True for a folder written by save: an index.skc container of our kind, or (version 1) a manifest.json of
    our format."""
    if _container.kind_of(os.path.join(folder, _FILE)) == _KIND:
        return True
    try:
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == _FORMAT


def _replaceable(full: str) -> bool | None:
    """None: nothing at ``full``; True: an empty folder or a saved index; False: anything else. A folder that
    another saver moves away or replaces while it is being looked at (its inode changes) is looked at again."""
    for _ in range(_SAVE_TRIES):
        try:
            before = os.lstat(full)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(before.st_mode) or not stat.S_ISDIR(before.st_mode):
            return False
        try:
            verdict = not os.listdir(full) or _is_ours(full)
            after = os.lstat(full)
        except FileNotFoundError:
            return None
        if (after.st_ino, after.st_dev) == (before.st_ino, before.st_dev):
            return verdict
    return False


def _save_target(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(path as given, absolute path) of a folder that ``save`` may write; ValueError naming the path otherwise."""
    shown = os.fspath(path)
    full = os.path.abspath(shown)
    real = os.path.realpath(full)
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the working directory was deleted
        cwd = None
    if os.path.dirname(real) == real or (cwd is not None and (real == cwd or
                                                               cwd.startswith(real.rstrip(os.sep) + os.sep))):
        raise ValueError(f"path {shown!r} is the root, the current directory or one of its parents: save replaces "
                         f"the folder at path, so give it a folder of its own")
    if _replaceable(full) is False:
        raise ValueError(f"path {shown!r} exists and is not an empty folder or a saved MultiVectorIndex (no "
                         f"manifest.json of format {_FORMAT!r}): refusing to replace it")
    return shown, full


def _swap_in(tmp: str, full: str, shown: str) -> None:
    """Rename the finished folder ``tmp`` to ``full``; a saved index there is moved aside first and deleted after.
    Concurrent savers of the same path each succeed (the last rename wins); on an error the previous folder is
    put back."""
    parent = os.path.dirname(full)
    for _ in range(_SAVE_TRIES):
        try:
            os.rename(tmp, full)  # atomic when nothing or an empty folder is there
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
        kind = _replaceable(full)
        if kind is None:
            continue  # another saver moved it away meanwhile
        if not kind:
            raise ValueError(f"path {shown!r} exists and is not an empty folder or a saved MultiVectorIndex: "
                             f"refusing to replace it")
        old = tempfile.mkdtemp(prefix=".mvindex-old-", dir=parent)
        aside = os.path.join(old, "x")
        try:
            try:
                os.rename(full, aside)
            except FileNotFoundError:
                continue  # another saver moved it away meanwhile
            try:
                os.rename(tmp, full)
                return
            except OSError as e:  # another saver filled the path meanwhile: its folder is newer than `aside`
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        except BaseException:
            if os.path.isdir(aside) and not os.path.lexists(full):
                try:
                    os.rename(aside, full)
                except OSError:
                    pass
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    raise OSError(f"save could not replace {shown!r}: other savers kept replacing it")


def _load_npy(path: str, where: str) -> npt.NDArray[Any]:
    """A .npy file of plain data; anything malformed (bad header, a shape the file cannot hold, truncation) raises
    ValueError. The header is checked against the file size before anything is allocated."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if dtype.hasobject:
                raise ValueError("object arrays are not accepted")
            count = 1
            for width in shape:
                count *= int(width)
            if count * dtype.itemsize != os.fstat(f.fileno()).st_size - f.tell():
                raise ValueError(f"shape {shape} of {dtype} does not match the file size")
        return np.load(path, allow_pickle=False)  # type: ignore[no-any-return]  # np.load is typed Any
    except (OSError, ValueError, EOFError, SyntaxError, MemoryError, TypeError, tokenize.TokenError) as e:
        raise ValueError(f"{where} is unreadable ({type(e).__name__}: {e})") from None


_pickling.register(_KIND, MultiVectorIndex._restore_steps, (_CONTAINER_VERSION,))
