"""hnswlib 0.8.0's Python API over simkern.HNSWIndex: ``import simkern.compat.hnswlib as hnswlib``.

``Index`` and ``BFIndex`` with hnswlib's methods, arguments, defaults, attributes, exception types and messages
(each probed against hnswlib 0.8.0 from PyPI; tests/test_compat_hnswlib.py runs the same calls on both):
``Index(space, dim)`` (space ``"l2"``: squared L2; ``"ip"``: 1 - inner product; ``"cosine"``: 1 - cosine, vectors
stored normalised), ``Index(index)`` (a copy), ``Index(params)`` (hnswlib's pickled state,
``hnswlib.Index.__getstate__()[0]``, or a real ``hnswlib.Index`` itself: converted, graph and all);
``init_index(max_elements, M=16, ef_construction=200, random_seed=100, allow_replace_deleted=False)``;
``add_items(data, ids=None, num_threads=-1, replace_deleted=False)`` (data 1-D or 2-D, any numeric dtype, converted
to float32; ids None - the running count of rows added so far -, an int or a 1-D array; an id that is present is
updated, a marked-deleted one revived, and with ``replace_deleted=True`` a deleted element's slot goes to the new
id); ``knn_query(data, k=1, num_threads=-1, filter=None)`` -> ``(labels uint64, distances float32)``, nearest first;
``mark_deleted``, ``unmark_deleted``, ``resize_index``, ``get_items(ids, return_type="numpy" | "list")``,
``get_ids_list`` (deleted labels included), ``set_ef``, ``set_num_threads``, ``get_max_elements``,
``get_current_count``, ``index_file_size``, ``save_index``, ``load_index(path, max_elements=0,
allow_replace_deleted=False)``, pickling, and the attributes ``space``, ``dim``, ``M``, ``ef_construction``,
``max_elements``, ``element_count``, ``ef``, ``num_threads``. ``element_count`` counts live and marked-deleted
elements, as hnswlib does; adding past ``max_elements`` adds the rows that fit, in order, then raises RuntimeError,
as hnswlib does.

Files: ``save_index(path)`` writes hnswlib's own binary format (real hnswlib loads it), ``save_index(path,
format="simkern")`` simkern's checksummed container (mappable with ``HNSWIndex.load(path, mmap=True)``);
``load_index`` reads both (``_hnswlib_file.py`` has the layout), validating every field: a corrupt or truncated
file raises ``IndexFileError``, which is both a ValueError and the RuntimeError hnswlib raises. Saves are atomic.

Differences from hnswlib 0.8.0, each deliberate:

- Where hnswlib crashes or misreads, the shim raises: calls before ``init_index`` (hnswlib segfaults) raise
  RuntimeError; queries of the wrong dimension (hnswlib reads past the row) and files of another dim raise
  RuntimeError / IndexFileError; ``BFIndex.knn_query`` with fewer than k matching elements raises RuntimeError
  (hnswlib returns uninitialised labels); NaN or infinite vectors (and norms past 2**62, simkern's limit everywhere)
  raise ValueError (hnswlib stores them, and its graph then misroutes); with ``space="cosine"`` an all-zero vector or
  query raises ValueError (hnswlib stores zeros, whose distance to everything is 1); ``M`` outside 2..1024 raises
  ValueError at ``init_index`` (hnswlib accepts 0 and 1 and fails later, and caps at 10000); a missing file raises
  ``IndexFileError`` (a RuntimeError with hnswlib's message "Cannot open file", and a ValueError).
- Labels are at most 2**63 - 2 (simkern ids are int64; hnswlib takes any uint64): a larger one raises ValueError.
- The graph is simkern's (same M, 2M links at level 0, same level distribution), built and searched by simkern:
  labels of approximate searches differ from hnswlib's where the graphs differ (recall is compared in the tests).
- An update, a revived label and a reused deleted slot leave a tombstone in simkern's graph; when tombstones
  outnumber live elements the graph is compacted (rebuilt from the live and marked-deleted vectors), so memory
  stays within about twice hnswlib's. ``replace_deleted=True`` takes the new label's own deleted slot if it has
  one, else the earliest deleted element (hnswlib: an arbitrary one).
- ``filter`` callables are called once per live label per call, before the search (the search then applies the
  mask natively); hnswlib calls them on the elements its search visits. Either way only labels the filter
  accepts are returned.
- ``get_ids_list`` lists live labels in insertion order, then deleted ones (hnswlib: hash order).
- ``BFIndex.load_index`` rebuilds the label table, so ``delete_vector`` and updates work on a loaded index
  (hnswlib 0.8.0 loses the table on load); BFIndex can be pickled (hnswlib's cannot).
- ``BFIndex("cosine", dim)`` normalises the vectors it stores but not the queries, and returns 1 - <q, x>,
  exactly as hnswlib 0.8.0's brute-force index does (normalise queries yourself for a true cosine distance; the
  ranking is the cosine ranking either way).
- ``replace_deleted=True`` with a label that is present elsewhere: hnswlib gives the label to the reused slot and
  keeps the old element, counted and still returned by searches under that label (two results with one label);
  here the label's vector is updated, and the old element is only counted (``element_count`` as hnswlib's) -
  not written by ``save_index``. hnswlib files in which several elements carry one label load with the last of
  them, the one hnswlib's lookup returns; the others become tombstones.
"""

from __future__ import annotations

import operator
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _container
from .._validate import MAX_ID, atomic_write, check_norms, threads_arg
from ..hnsw import _CONTAINER_VERSION, HNSWIndex
from ..runtime import get_num_threads
from . import _hnswlib_file

__all__ = ["BFIndex", "Index", "IndexFileError"]

_SPACES = ("l2", "ip", "cosine")
_NOT_INITIALISED = "the index is not initialised: call init_index or load_index first"
_RESULTS = "Cannot return the results in a contiguous 2D array. Probably ef or M is too small"


class IndexFileError(ValueError, RuntimeError):
    """A file that cannot be read as an index: missing, truncated, corrupt, foreign, or of another dim. A
    ValueError (simkern's rule) and a RuntimeError (what hnswlib raises)."""


def _space(space: object) -> str:
    if space not in _SPACES:
        raise RuntimeError("Space name must be one of l2, ip, or cosine.")
    return str(space)


def _size_t(value: object, name: str) -> int:
    """pybind11's size_t argument: an int (or __index__) >= 0, else TypeError."""
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be a non-negative int, got {type(value).__name__}") from None
    if v < 0:
        raise TypeError(f"{name} must be a non-negative int, got {v}")
    return v


def _labels(ids: object, rows: int, cur_l: int) -> npt.NDArray[np.int64]:
    """hnswlib's ids argument: None (cur_l, cur_l + 1, ...), an int for one row, or a 1-D array of rows ids."""
    if ids is None:
        arr = np.arange(cur_l, cur_l + rows, dtype=np.uint64)
    else:
        arr = np.asarray(ids)
        if arr.dtype.kind not in "uifb":
            raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
        # as pybind11's forcecast: Python ints convert checked (a negative one raises OverflowError), arrays cast
        arr = arr.astype(np.uint64) if isinstance(ids, np.ndarray) else np.array(ids, dtype=np.uint64)
        if not ((arr.ndim == 1 and arr.shape[0] == rows) or (arr.ndim == 0 and rows == 1)):
            raise RuntimeError(f"The input label shape {arr.ndim} does not match the input data vector shape "
                               f"{rows}")
        arr = arr.reshape(-1)
    if (arr > MAX_ID).any():
        raise ValueError(f"ids must be at most 2**63 - 2 (simkern ids are int64), got {int(arr.max())}")
    return arr.astype(np.int64)


def _threads(num_threads: int, default: int) -> int | None:
    n = default if num_threads <= 0 else num_threads
    return None if n <= 0 else int(n)


def _rows(data: object, dim: int, cosine: bool = False) -> npt.NDArray[np.float32]:
    """hnswlib's input rows (add_items, knn_query): anything array-like (converted to float32), 1-D (one row) or
    2-D, C-contiguous; finite, norms within simkern's 2**62 (ValueError), and with ``cosine`` no all-zero row.
    The checks cost one dot product for valid input (the per-call cost of single queries)."""
    x = np.asarray(data, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    elif x.ndim != 2:
        raise RuntimeError(f"Input vector data wrong shape. Number of dimensions {x.ndim}. Data must be a 1D or "
                           "2D array.")
    if x.shape[1] != dim:
        raise RuntimeError("Wrong dimensionality of the vectors")
    if not (x.flags.c_contiguous and x.flags.aligned):
        x = np.ascontiguousarray(x).copy()
    if x.size:
        # One dot product checks everything for valid input: the sum of all squares is finite and at most 2**124
        # (every row's norm within simkern's 2**62) exactly when no value is NaN / inf and no norm too large; only
        # otherwise are the rows looked at one by one (which raises, or passes rows that only overflowed the sum).
        flat = x.reshape(-1)
        total = float(np.dot(flat, flat))
        if not total <= 2.0**124:
            if not np.isfinite(x).all():
                raise ValueError("data must be finite (NaN or inf found)")
            check_norms(x, "data")
        if cosine and (total == 0 or (x.shape[0] > 1 and not x.any(axis=1).all())):
            raise ValueError("a query of all zeros: cosine is undefined")
    return x


def _filtered_search(index: HNSWIndex, q: npt.NDArray[np.float32], k: int, ef: int,
                     filter: Callable[[int], object], threads: int | None
                     ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Search with a Python filter, calling it on as few labels as it can: the k' = 4k, 16k, 64k nearest are
    searched without a filter and the filter asked about those labels only (each label once per call); rows
    that find k accepted labels among them are done (their k nearest accepted, as a filtered walk would return
    them); the rest are searched natively with the mask of every live label the filter accepts."""
    if not callable(filter):
        raise TypeError("filter must be a callable taking a label and returning a bool")
    verdict: dict[int, bool] = {}
    n_q, live = q.shape[0], len(index)
    scores = np.empty((n_q, k), np.float32)
    labels = np.full((n_q, k), -1, np.int64)
    todo = np.arange(n_q)
    wide = 4 * k
    while todo.size and wide <= 64 * k and wide < live:
        s, ids = index._search_masked(q[todo], wide, max(ef, wide), None, threads)
        for v in np.unique(ids[ids >= 0]).tolist():
            if v not in verdict:
                verdict[v] = bool(filter(v))
        ok = np.isin(ids, np.fromiter((v for v, yes in verdict.items() if yes), np.int64))  # -1: never
        enough = ok.sum(axis=1) >= k
        for r in np.flatnonzero(enough):
            pick = np.flatnonzero(ok[r])[:k]
            scores[todo[r]], labels[todo[r]] = s[r, pick], ids[r, pick]
        todo = todo[~enough]
        wide *= 4
    if todo.size:
        all_ids = index.ids()
        accept = np.fromiter((verdict[v] if v in verdict else bool(filter(v)) for v in all_ids.tolist()), bool,
                             all_ids.size)
        allowed = all_ids[accept]
        if allowed.size < k:
            raise RuntimeError(_RESULTS)
        s, ids = index.search(q[todo], k=k, ef=ef, filter=allowed, threads=threads)
        scores[todo], labels[todo] = s, ids
    return scores, labels


class _Threads:
    """``num_threads`` / ``set_num_threads`` of both hnswlib classes (the default of their calls'
    ``num_threads=-1``)."""

    _num_threads: int

    @property
    def num_threads(self) -> int:
        return self._num_threads

    @num_threads.setter
    def num_threads(self, value: int) -> None:
        self.set_num_threads(value)

    def set_num_threads(self, num_threads: int) -> None:
        self._num_threads = operator.index(num_threads)


class Index(_Threads):
    """hnswlib.Index (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) + len(kwargs) == 1:  # Index(index) / Index(params), as hnswlib's other two constructors
            other = args[0] if args else kwargs.get("index", kwargs.get("params"))
            if isinstance(other, Index):
                self.__setstate__(other.__getstate__(copy=True))
            elif isinstance(other, dict) and "ser_version" in other:
                self._from_hnswlib_params(other)
            elif isinstance(other, dict):
                self.__setstate__(other)
            elif other is not None and type(other).__module__ == "hnswlib" and type(other).__name__ == "Index":
                self._from_hnswlib_params(other.__getstate__()[0])  # a real hnswlib.Index: converted
            else:
                raise TypeError("Index(space, dim), Index(index) or Index(params): hnswlib's __getstate__()[0] dict")
            return
        space, dim = _bind_space_dim(args, kwargs)
        self._space, self._dim = _space(space), int(dim)
        self._index: HNSWIndex | None = None
        self._max_elements = 0
        self._cur_l = 0  # hnswlib's default-id counter: rows passed to add_items so far
        self._deleted: dict[int, None] = {}  # labels marked deleted (ordered: the earliest is reused first)
        self._allow_replace = False
        self._ef = 10
        self._num_threads = get_num_threads()
        self._seed = 100
        self._dead = 0  # tombstones of updated / revived / reused elements (compacted when they outnumber the rest)
        self._ghosts = 0  # hnswlib's elements left by replace_deleted with a present label (counted, never found)

    # -- attributes --------------------------------------------------------------------------------------------
    space = property(lambda self: self._space)
    dim = property(lambda self: self._dim)
    M = property(lambda self: self._index.M if self._index is not None else 0)
    ef_construction = property(lambda self: self._index.ef_construction if self._index is not None else 0)
    max_elements = property(lambda self: self._max_elements)
    element_count = property(lambda self: self.get_current_count() if self._index is not None else 0)

    @property
    def ef(self) -> int:
        return self._ef

    @ef.setter
    def ef(self, value: int) -> None:
        self.set_ef(value)

    @property
    def simkern(self) -> HNSWIndex:
        """The underlying simkern.HNSWIndex."""
        return self._require()

    def __repr__(self) -> str:
        return f"<hnswlib.Index(space='{self._space}', dim={self._dim})>"

    def _require(self) -> HNSWIndex:
        if self._index is None:
            raise RuntimeError(_NOT_INITIALISED)
        return self._index

    # -- construction ----------------------------------------------------------------------------------------
    def init_index(self, max_elements: int, M: int = 16, ef_construction: int = 200, random_seed: int = 100,
                   allow_replace_deleted: bool = False) -> None:
        if self._index is not None:
            raise RuntimeError("The index is already initiated.")
        max_elements = _size_t(max_elements, "max_elements")
        M, efc = _size_t(M, "M"), _size_t(ef_construction, "ef_construction")
        seed = _size_t(random_seed, "random_seed")
        if not 2 <= M <= 1024:
            raise ValueError(f"M must be in 2..1024, got {M}")
        index = HNSWIndex(self._dim, metric=self._space, M=M, ef_construction=max(efc, M), seed=seed % 2**63)
        self._adopt(index, [], max_elements, allow_replace_deleted, cur_l=0, seed=seed, ef=self._ef)

    def set_ef(self, ef: int) -> None:
        self._ef = _size_t(ef, "ef")
        if self._index is not None:
            self._index.ef = max(1, self._ef)

    def get_max_elements(self) -> int:
        self._require()
        return self._max_elements

    def get_current_count(self) -> int:
        return len(self._require()) + len(self._deleted) + self._ghosts

    def resize_index(self, new_size: int) -> None:
        new_size = _size_t(new_size, "new_size")
        if new_size < self.get_current_count():
            raise RuntimeError("Cannot resize, max element is less than the current number of elements")
        self._max_elements = new_size

    # -- data --------------------------------------------------------------------------------------------------
    def add_items(self, data: npt.ArrayLike, ids: npt.ArrayLike | None = None, num_threads: int = -1,
                  replace_deleted: bool = False) -> None:
        index = self._require()
        x = _rows(data, self._dim, self._space == "cosine")
        rows = x.shape[0]
        labels = _labels(ids, rows, self._cur_l)
        threads = _threads(operator.index(num_threads), self._num_threads)
        if replace_deleted and not self._allow_replace:
            raise RuntimeError("Replacement of deleted elements is disabled in constructor")
        if rows == 0:
            return
        live = index.contains(labels)
        fresh = not live.any() and np.unique(labels).size == rows and not (
            self._deleted and np.isin(labels, np.fromiter(self._deleted, np.int64)).any())
        if fresh and not (replace_deleted and self._deleted) and self.get_current_count() + rows <= self._max_elements:
            index._add_checked(x, labels, threads_arg(threads))  # rows and labels checked above, all new
            self._cur_l += rows
            return
        self._add_in_order(x, labels, live, bool(replace_deleted), threads)
        self._cur_l += rows

    def _add_in_order(self, x: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], live: npt.NDArray[np.bool_],
                      replace_deleted: bool, threads: int | None) -> None:
        """hnswlib's add, row by row: update a present label, revive a deleted one, reuse a deleted slot
        (replace_deleted), else add; the rows before a failing one are applied, then the error is raised."""
        state0 = {int(v): True for v in labels[live]}  # label -> live (True) / marked deleted (False)
        state0.update(dict.fromkeys(self._deleted, False))
        state, deleted = dict(state0), dict(self._deleted)
        count = self.get_current_count()
        final: dict[int, int] = {}  # label -> row of its final vector
        victims: set[int] = set()
        ghosts = 0
        error: RuntimeError | None = None
        for row, label in enumerate(labels.tolist()):
            s = state.get(label)
            if replace_deleted and deleted:
                victim = label if s is False else next(iter(deleted))
                del deleted[victim]
                state.pop(victim)
                victims.add(victim)
                if victim != label and s is True:  # the label lives elsewhere too: hnswlib keeps that element,
                    ghosts += 1  # counted but no longer found by its label; here it is updated in place
            elif s is None:
                if count >= self._max_elements:
                    error = RuntimeError("The number of elements exceeds the specified limit")
                    break
                count += 1
            elif s is False:
                if self._allow_replace:
                    error = RuntimeError("Can't use addPoint to update deleted elements if replacement of deleted "
                                         "elements is enabled.")
                    break
                del deleted[label]
            state[label] = True
            final[label] = row
        # simkern nodes left behind as tombstones: those of every touched label that had one before this call
        dead = sum(1 for label in victims.union(final) if label in state0)
        if final:
            keep = np.fromiter(final.values(), np.int64, len(final))
            # checked rows, distinct labels; a present label's node becomes a tombstone (add's replace=True)
            self._require()._add_checked(x[keep], labels[keep], threads_arg(threads))
        self._deleted = deleted
        self._dead += dead
        self._ghosts += ghosts
        if self._dead > max(1024, count):
            self._compact(threads)
        if error is not None:
            raise error

    def _compact(self, threads: int | None) -> None:
        """Rebuild the graph without the tombstones of replaced slots (marked-deleted labels are kept: they are
        revived, compacted with the rest and deleted again)."""
        index = self._require()
        marked = np.fromiter(self._deleted, np.int64, len(self._deleted))
        if marked.size:
            index.unremove(marked)
        index.compact(threads=threads)
        if marked.size:
            index.remove(marked)
        self._dead = 0

    def knn_query(self, data: npt.ArrayLike, k: int = 1, num_threads: int = -1,
                  filter: Callable[[int], object] | None = None
                  ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        index = self._require()
        k = k if type(k) is int and k >= 0 else _size_t(k, "k")
        q = _rows(data, self._dim, self._space == "cosine")
        threads = _threads(operator.index(num_threads), self._num_threads)
        if k == 0 or q.shape[0] == 0:
            return np.zeros((q.shape[0], k), np.uint64), np.zeros((q.shape[0], k), np.float32)
        ef = max(self._ef, k)
        if filter is None:  # HNSWIndex's internal path: q is checked above (the public search checks it again)
            scores, labels = index._search_masked(q, k, ef, None, threads)
        else:
            scores, labels = _filtered_search(index, q, k, ef, filter, threads)
        # fewer than k found (fewer live labels, or accepted by the filter): padding (-1) ends the row
        if (labels[0, -1] < 0) if labels.shape[0] == 1 else (labels[:, -1] < 0).any():
            raise RuntimeError(_RESULTS)
        dist = scores if self._space == "l2" else np.float32(1.0) - scores
        return labels.view(np.uint64), dist

    def mark_deleted(self, label: int) -> None:
        index = self._require()
        label = _size_t(label, "label")
        if label in self._deleted:
            raise RuntimeError("The requested to delete element is already deleted")
        if label > MAX_ID or label not in index:
            raise RuntimeError("Label not found")
        index.remove([label])
        self._deleted[label] = None

    def unmark_deleted(self, label: int) -> None:
        index = self._require()
        label = _size_t(label, "label")
        if label not in self._deleted:
            if label <= MAX_ID and label in index:
                raise RuntimeError("The requested to undelete element is not deleted")
            raise RuntimeError("Label not found")
        index.unremove([label])
        del self._deleted[label]

    def get_items(self, ids: npt.ArrayLike | None = None,
                  return_type: str = "numpy") -> npt.NDArray[np.float32] | list[list[float]]:
        index = self._require()
        if return_type not in ("numpy", "list"):
            raise ValueError('return_type should be "numpy" or "list"')
        if ids is None:
            labels = np.zeros(0, np.uint64)
        else:
            labels = np.asarray(ids, dtype=np.uint64)
            if labels.ndim == 0:
                raise ValueError("get_items accepts a list of indices and returns a list of vectors")
            labels = labels.reshape(-1)
        if labels.size == 0:
            return np.zeros(0, np.float32) if return_type == "numpy" else []
        if (labels > MAX_ID).any() or not index.contains(labels.astype(np.int64)).all():
            raise RuntimeError("Label not found")
        vectors = index.get_vectors(labels.astype(np.int64))
        return vectors if return_type == "numpy" else vectors.tolist()

    def get_ids_list(self) -> list[int]:
        return [int(v) for v in self._require().ids()] + list(self._deleted)

    # -- persistence -------------------------------------------------------------------------------------------
    def save_index(self, path_to_index: str | os.PathLike[str], *, format: str = "hnswlib") -> None:
        """hnswlib's binary format (default; real hnswlib loads it) or ``format="simkern"`` (simkern's
        checksummed container, which keeps the shim's state too). The write is atomic."""
        index = self._require()
        if format == "hnswlib":
            atomic_write(path_to_index, lambda f: _hnswlib_file.write(f, index, self._max_elements, self._deleted))
        elif format == "simkern":
            def write(f: Any) -> None:
                with index._save_plan() as (meta, sections):
                    meta["hnswlib"] = self._shim_state()
                    _container.write(f, "HNSW", _CONTAINER_VERSION, meta, sections)
            atomic_write(path_to_index, write)
        else:
            raise ValueError(f"format must be 'hnswlib' or 'simkern', got {format!r}")

    def _shim_state(self) -> dict[str, Any]:
        """What the shim keeps beside the HNSWIndex (M, ef_construction, space and dim are the index's own)."""
        return {"max_elements": self._max_elements, "cur_l": self._cur_l, "deleted": list(self._deleted),
                "allow_replace_deleted": self._allow_replace, "ef": self._ef, "seed": self._seed, "dead": self._dead,
                "ghosts": self._ghosts}

    def load_index(self, path_to_index: str | os.PathLike[str], max_elements: int = 0,
                   allow_replace_deleted: bool = False) -> None:
        max_elements = _size_t(max_elements, "max_elements")
        path = os.fspath(path_to_index)
        if not os.path.isfile(path):
            raise IndexFileError(f"Cannot open file {path}")
        try:
            if _container.is_container(path):  # simkern's format (save_index(path, format="simkern"))
                with _container.Reader(path, "HNSW", (_CONTAINER_VERSION,)) as r:
                    shim = dict(r.meta.get("hnswlib") or {})
                    index = HNSWIndex._from_container(r)
                if index.dim != self._dim or index.metric != self._space:
                    raise IndexFileError(f"{path}: the file holds a {index.metric} index of dim {index.dim}, not "
                                         f"{self._space} of dim {self._dim}")
                deleted = [int(v) for v in shim.get("deleted", index.removed_ids().tolist())]
                ghosts = int(shim.get("ghosts", 0))
                count = len(index) + len(deleted) + ghosts
                file_max, cur_l = int(shim.get("max_elements", 0)), int(shim.get("cur_l", count))
                extra = {"seed": int(shim.get("seed", index._seed)), "dead": int(shim.get("dead", 0)),
                         "ghosts": ghosts}
            else:
                loaded = _hnswlib_file.read(path, self._dim, self._space, self._seed % 2**63)
                index, file_max, count = loaded.hnsw, loaded.max_elements, loaded.elements
                deleted, cur_l, extra = [int(v) for v in loaded.deleted], count, {}
        except IndexFileError:
            raise
        except ValueError as e:
            raise IndexFileError(str(e)) from None
        # hnswlib's rule: the max_elements argument unless it is below the count, then the file's
        self._adopt(index, deleted, max_elements if max_elements >= count else max(file_max, count),
                    allow_replace_deleted, cur_l=cur_l, **extra)

    def _adopt(self, index: HNSWIndex, deleted: list[int], max_elements: int, allow_replace_deleted: bool, *,
               cur_l: int, seed: int | None = None, dead: int = 0, ghosts: int = 0, ef: int = 10) -> None:
        """Take ``index`` and hnswlib's bookkeeping beside it (every way an index arrives: init_index, the two
        load formats, hnswlib's pickled state, unpickling); ``ef`` 10 as after hnswlib's load."""
        self._index = index
        self._deleted = dict.fromkeys(int(v) for v in deleted)
        self._max_elements, self._allow_replace = int(max_elements), bool(allow_replace_deleted)
        self._cur_l, self._dead, self._ghosts = int(cur_l), int(dead), int(ghosts)
        if seed is not None:
            self._seed = int(seed)
        self.set_ef(ef)

    def _from_hnswlib_params(self, params: dict[str, Any]) -> None:
        """An index from hnswlib's pickled state (``hnswlib.Index.__getstate__()[0]``, serialisation version 1): its
        arrays are the file's level-0 block and upper link lists, so they are read as a file would be."""
        try:
            if int(params["ser_version"]) != 1:
                raise ValueError(f"unsupported hnswlib serialisation version {params['ser_version']}")
            self.__init__(params["space"], int(params["dim"]))  # type: ignore[misc]
            self._num_threads = int(params.get("num_threads", self._num_threads))
            if not params["index_inited"]:
                return
            count = int(params["cur_element_count"])
            levels = np.asarray(params["element_levels"], np.int64)[:count]  # sized max_elements in hnswlib
            per_element = levels * int(params["size_links_per_element"])
            links = np.asarray(params["link_lists"], np.uint8)
            if len(levels) != count or int(per_element.sum()) != links.size or links.size % 4:
                raise ValueError("the element levels do not match the link lists")
            # the file's tail: per element its byte size (u32), then its link lists (whole u32 words)
            words = per_element // 4
            at = np.zeros(count, np.int64)
            np.cumsum(1 + words[:-1], out=at[1:])
            tail = np.zeros(count + links.size // 4, np.uint32)
            tail[at] = per_element
            is_link = np.ones(tail.size, bool)
            is_link[at] = False
            tail[is_link] = links.view(np.uint32)
            head = _hnswlib_file.HEADER.pack(
                int(params["offset_level0"]), int(params["max_elements"]), int(params["cur_element_count"]),
                int(params["size_data_per_element"]), int(params["label_offset"]), int(params["offset_data"]),
                int(params["max_level"]), int(params["enterpoint_node"]), int(params["max_M"]), int(params["max_M0"]),
                int(params["M"]), float(params["mult"]), int(params["ef_construction"]))
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "index.bin")
                with open(path, "wb") as f:
                    f.write(head)
                    f.write(np.asarray(params["data_level0"], np.uint8).data)
                    f.write(tail.data)
                loaded = _hnswlib_file.read(path, self._dim, self._space, int(params.get("seed", 100)) % 2**63)
        except (KeyError, TypeError, ValueError) as e:
            raise IndexFileError(f"not a valid hnswlib pickled state: {e}") from None
        self._adopt(loaded.hnsw, [int(v) for v in loaded.deleted], max(int(params["max_elements"]), loaded.elements),
                    bool(params.get("allow_replace_deleted", False)), cur_l=loaded.elements,
                    seed=int(params.get("seed", 100)), ef=int(params.get("ef", 10)))

    def index_file_size(self) -> int:
        return _hnswlib_file.file_size(self._require(), self._deleted)

    # -- pickling ------------------------------------------------------------------------------------------------
    def __getstate__(self, copy: bool = False) -> dict[str, Any]:
        state = {"space": self._space, "dim": self._dim, "num_threads": self._num_threads, "ef": self._ef,
                 "index": None}
        if self._index is not None:
            state.update(self._shim_state())
            state["index"] = self._index.__copy__() if copy else self._index
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["space"], state["dim"])  # type: ignore[misc]
        self._num_threads, self._ef = int(state["num_threads"]), int(state["ef"])
        if state["index"] is not None:
            self._adopt(state["index"], state["deleted"], state["max_elements"], state["allow_replace_deleted"],
                        cur_l=state["cur_l"], seed=state["seed"], dead=state["dead"], ghosts=state["ghosts"],
                        ef=state["ef"])


def _bind_space_dim(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[object, int]:
    names = ("space", "dim")
    values = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in names or key in values:
            raise TypeError(f"__init__() got an unexpected or repeated argument {key!r}")
        values[key] = value
    if len(values) != 2 or len(args) > 2:
        raise TypeError("Index(space, dim) or Index(index)")
    dim = operator.index(values["dim"])
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    return values["space"], dim


def _smallest(a: npt.NDArray[np.float32], wide: int) -> npt.NDArray[np.int64]:
    """Column indices of the ``wide`` smallest values of each row of ``a`` (any order). A per-row threshold from a
    strided sample of max(256, 32 wide) columns keeps a few times ``wide`` candidates, which are then partitioned
    (rows whose threshold kept too few fall back to a full argpartition): a full argpartition of every row costs
    more than the matrix product that made ``a``."""
    n_rows, n = a.shape
    if wide >= n:
        return np.broadcast_to(np.arange(n), a.shape)
    out = np.empty((n_rows, wide), np.int64)
    if n <= 16 * wide + 256:
        out[:] = np.argpartition(a, wide - 1, axis=1)[:, :wide]
        return out
    sample = a[:, :: max(1, n // max(256, 32 * wide))]
    rank = min(sample.shape[1] - 1, 4 * wide * sample.shape[1] // n + 8)
    tau = np.partition(sample, rank, axis=1)[:, rank]
    keep = a <= tau[:, None]
    counts = keep.sum(axis=1)
    for r in range(n_rows):
        if counts[r] >= wide:
            cols = np.flatnonzero(keep[r])
            out[r] = cols[np.argpartition(a[r, cols], wide - 1)[:wide]]
        else:
            out[r] = np.argpartition(a[r], wide - 1)[:wide]
    return out


class BFIndex(_Threads):
    """hnswlib.BFIndex: exact (brute-force) search over at most ``max_elements`` vectors (module docstring)."""

    def __init__(self, space: str, dim: int) -> None:
        self._space, self._dim = _space(space), operator.index(dim)
        if self._dim < 1:
            raise ValueError(f"dim must be positive, got {self._dim}")
        self._max: int | None = None
        self._vectors = np.zeros((0, self._dim), np.float32)
        self._labels = np.zeros(0, np.uint64)
        self._slot: dict[int, int] = {}
        self._n = 0
        self._cur_l = 0
        self._norms: npt.NDArray[np.float32] | None = None  # |x|^2 of the stored rows (l2 search), None: stale
        self._num_threads = get_num_threads()

    space = property(lambda self: self._space)
    dim = property(lambda self: self._dim)

    def __repr__(self) -> str:
        return f"<hnswlib.BFIndex(space='{self._space}', dim={self._dim})>"

    def _require(self) -> int:
        if self._max is None:
            raise RuntimeError(_NOT_INITIALISED)
        return self._max

    def init_index(self, max_elements: int) -> None:
        self._max = _size_t(max_elements, "max_elements")
        self._vectors = np.zeros((min(self._max, 1024), self._dim), np.float32)
        self._labels = np.zeros(len(self._vectors), np.uint64)
        self._slot, self._n, self._cur_l, self._norms = {}, 0, 0, None

    def get_max_elements(self) -> int:
        return self._require()

    def get_current_count(self) -> int:
        self._require()
        return self._n

    def _grow(self, n: int) -> None:
        if n > len(self._vectors):
            cap = min(self._require(), max(n, 2 * len(self._vectors)))
            vectors = np.zeros((cap, self._dim), np.float32)
            labels = np.zeros(cap, np.uint64)
            vectors[:self._n], labels[:self._n] = self._vectors[:self._n], self._labels[:self._n]
            self._vectors, self._labels = vectors, labels

    def add_items(self, data: npt.ArrayLike, ids: npt.ArrayLike | None = None) -> None:
        limit = self._require()
        x = _rows(data, self._dim)
        labels = _labels(ids, x.shape[0], self._cur_l)
        if self._space == "cosine":  # hnswlib's normalize_vector: x / (|x| + 1e-30), in float32
            norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32)) + np.float32(1e-30)
            x = x * (np.float32(1.0) / norms)[:, None]
        error = None
        new = labels.tolist()
        n, rows = self._n, len(new)
        if n + rows <= limit and len(set(new)) == rows and not any(v in self._slot for v in new):
            new = []  # every label new and all fit: one block copy (the loop below is hnswlib's row-by-row rule)
            self._grow(n + rows)
            self._vectors[n:n + rows], self._labels[n:n + rows] = x, labels
            self._slot.update(zip(labels.tolist(), range(n, n + rows)))
            self._n = n + rows
        for row, label in enumerate(new):
            slot = self._slot.get(label)
            if slot is None:
                if self._n >= limit:
                    error = RuntimeError("The number of elements exceeds the specified limit")
                    break
                self._grow(self._n + 1)
                slot = self._slot[label] = self._n
                self._labels[slot] = label
                self._n += 1
            self._vectors[slot] = x[row]
        self._norms = None
        if error is not None:
            raise error
        self._cur_l += x.shape[0]

    def delete_vector(self, label: int) -> None:
        self._require()
        slot = self._slot.pop(_size_t(label, "label"), None)
        if slot is None:
            return
        self._norms = None
        last = self._n - 1
        if slot != last:
            self._vectors[slot], self._labels[slot] = self._vectors[last], self._labels[last]
            self._slot[int(self._labels[slot])] = slot
        self._n = last

    def knn_query(self, data: npt.ArrayLike, k: int = 1, num_threads: int = -1,
                  filter: Callable[[int], object] | None = None
                  ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        self._require()
        k = _size_t(k, "k")
        operator.index(num_threads)
        q = _rows(data, self._dim)
        labels = self._labels[:self._n]
        rows = np.arange(self._n)
        if filter is not None:
            if not callable(filter):
                raise TypeError("filter must be a callable taking a label and returning a bool")
            rows = rows[np.fromiter((bool(filter(int(v))) for v in labels), bool, self._n)]
        if k > rows.size and q.shape[0]:
            raise RuntimeError(f"fewer than k={k} elements to return ({rows.size} match)")
        out_labels = np.zeros((q.shape[0], k), np.uint64)
        out_dist = np.zeros((q.shape[0], k), np.float32)
        if k == 0 or q.shape[0] == 0:
            return out_labels, out_dist
        vectors = self._vectors[:self._n] if rows.size == self._n else self._vectors[rows]
        l2 = self._space == "l2"
        if l2:
            if self._norms is None or len(self._norms) != self._n:
                self._norms = np.einsum("ij,ij->i", self._vectors[:self._n], self._vectors[:self._n])
            norms = self._norms if rows.size == self._n else self._norms[rows]
        # Candidates by one matrix product per block of queries (|x|^2 - 2<q, x> for l2: the ranking of the
        # squared distances, to float32 rounding), k + 16 of them re-scored exactly, then sorted (ties: the
        # earlier slot first).
        wide = min(rows.size, k + 16)
        block = max(1, (1 << 25) // max(1, rows.size))
        for b in range(0, q.shape[0], block):
            qb = q[b:b + block]
            approx = qb @ vectors.T
            approx *= np.float32(-2.0 if l2 else -1.0)
            if l2:
                approx += norms
            cand = _smallest(approx, wide)
            picked = vectors[cand]  # (queries, wide, dim)
            if l2:
                diff = picked - qb[:, None, :]
                d = np.einsum("qkd,qkd->qk", diff, diff)
            else:
                d = np.float32(1.0) - np.einsum("qkd,qd->qk", picked, qb)
            order = np.lexsort((cand, d), axis=1)[:, :k]
            top = np.take_along_axis(cand, order, axis=1)
            out_labels[b:b + block] = labels[rows[top]]
            out_dist[b:b + block] = np.take_along_axis(d, order, axis=1)
        return out_labels, out_dist

    def save_index(self, path_to_index: str | os.PathLike[str]) -> None:
        limit = self._require()
        atomic_write(path_to_index, lambda f: _hnswlib_file.write_bf(f, limit, self._vectors[:self._n],
                                                                     self._labels[:self._n]))

    def load_index(self, path_to_index: str | os.PathLike[str], max_elements: int = 0) -> None:
        _size_t(max_elements, "max_elements")  # hnswlib 0.8.0 ignores it: the file's max_elements holds
        path = os.fspath(path_to_index)
        if not os.path.isfile(path):
            raise IndexFileError(f"Cannot open file {path}")
        try:
            limit, vectors, labels = _hnswlib_file.read_bf(path, self._dim)
        except ValueError as e:
            raise IndexFileError(str(e)) from None
        if (labels > MAX_ID).any():
            raise IndexFileError(f"{path}: a label above 2**63 - 2 (simkern ids are int64)")
        self._max, self._vectors, self._labels, self._n = limit, vectors, labels, len(labels)
        self._norms = None
        self._slot = {int(v): i for i, v in enumerate(labels.tolist())}
        self._cur_l = self._n

    def __getstate__(self) -> dict[str, Any]:
        return {"space": self._space, "dim": self._dim, "max": self._max, "vectors": self._vectors[:self._n].copy(),
                "labels": self._labels[:self._n].copy(), "cur_l": self._cur_l, "num_threads": self._num_threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["space"], state["dim"])  # type: ignore[misc]
        self._max, self._vectors, self._labels = state["max"], state["vectors"], state["labels"]
        self._n, self._cur_l, self._num_threads = len(self._labels), state["cur_l"], state["num_threads"]
        self._slot = {int(v): i for i, v in enumerate(self._labels.tolist())}
