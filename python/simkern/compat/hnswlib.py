"""hnswlib's Python API over simkern.HNSWIndex: ``import simkern.compat.hnswlib as hnswlib``.

Follows hnswlib 0.8's documented behaviour: ``Index(space, dim)`` with space ``"l2"`` (squared L2), ``"ip"``
(distance 1 - inner product) or ``"cosine"`` (1 - cosine); ``init_index`` fixes ``max_elements`` (exceeding it
raises RuntimeError, ``resize_index`` raises it); ``add_items`` converts to float32, defaults ids to the running
count, and updates the vector of an id that is already present; ``knn_query`` returns ``(labels uint64,
distances float32)`` nearest first and raises RuntimeError when fewer than k live elements can be returned;
``mark_deleted`` / ``unmark_deleted`` raise RuntimeError for unknown labels; ``get_items`` returns the stored
vectors (normalised for cosine).

Differences (documented, deliberate): ``save_index`` writes simkern's versioned, checksummed format (not hnswlib's
raw dump), and ``load_index`` reads only that; ``filter`` callables are evaluated once per live label per call
(in Python, before the search; the search then applies the mask natively); an update is a tombstone plus a new
node (``compact()``-able through ``index.simkern``), so memory grows with updates until then; ``unmark_deleted``
scans the index (O(n)); ``allow_replace_deleted``/``replace_deleted`` are accepted, and deleted slots are not
reused (the index grows by itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import HNSWIndex

__all__ = ["Index"]


def _threads(num_threads: int | None) -> int | None:
    return None if num_threads is None or num_threads <= 0 else int(num_threads)


class Index:
    def __init__(self, space: str, dim: int) -> None:
        if space not in ("l2", "ip", "cosine"):
            raise ValueError(f"space must be 'l2', 'ip' or 'cosine', got {space!r}")
        self.space, self.dim = space, int(dim)
        self._index: HNSWIndex | None = None
        self.max_elements = 0
        self.num_threads = -1
        self._ef = 10
        self._M, self._efc = 16, 200
        self._deleted: set[int] = set()
        self._count = 0  # hnswlib's element count: live + marked deleted

    # -- construction ----------------------------------------------------------------------------------------
    def init_index(self, max_elements: int, M: int = 16, ef_construction: int = 200, random_seed: int = 100,
                   allow_replace_deleted: bool = False) -> None:
        self._index = HNSWIndex(self.dim, metric=self.space, M=M, ef_construction=ef_construction,
                                seed=int(random_seed))
        self.max_elements, self._M, self._efc = int(max_elements), int(M), int(ef_construction)
        self._deleted, self._count = set(), 0

    def _require(self) -> HNSWIndex:
        if self._index is None:
            raise RuntimeError("the index is not initialised: call init_index or load_index first")
        return self._index

    @property
    def simkern(self) -> HNSWIndex:
        """The underlying simkern.HNSWIndex."""
        return self._require()

    M = property(lambda self: self._M)
    ef_construction = property(lambda self: self._efc)
    element_count = property(lambda self: self._count)

    @property
    def ef(self) -> int:
        return self._ef

    @ef.setter
    def ef(self, value: int) -> None:
        self.set_ef(value)

    def set_ef(self, ef: int) -> None:
        self._ef = int(ef)
        if self._index is not None:
            self._index.ef = max(1, self._ef)

    def set_num_threads(self, num_threads: int) -> None:
        self.num_threads = int(num_threads)

    def get_max_elements(self) -> int:
        return self.max_elements

    def get_current_count(self) -> int:
        return self._count

    def get_deleted_count(self) -> int:
        return len(self._deleted)

    def resize_index(self, new_size: int) -> None:
        if new_size < self._count:
            raise RuntimeError("Cannot resize, max element is less than the current number of elements")
        self.max_elements = int(new_size)

    # -- data --------------------------------------------------------------------------------------------------
    def _rows(self, data: npt.ArrayLike) -> npt.NDArray[np.float32]:
        x = np.asarray(data, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise RuntimeError(f"Wrong dimensionality of the vectors: expected {self.dim}, got shape {x.shape}")
        return np.ascontiguousarray(x)

    def add_items(self, data: npt.ArrayLike, ids: npt.ArrayLike | None = None, num_threads: int = -1,
                  replace_deleted: bool = False) -> None:
        index = self._require()
        x = self._rows(data)
        n = x.shape[0]
        if ids is None:
            labels = np.arange(self._count, self._count + n, dtype=np.int64)
        else:
            labels = np.atleast_1d(np.asarray(ids)).astype(np.int64)
            if labels.shape[0] != n:
                raise RuntimeError("wrong number of ids: one per vector expected")
        # Last occurrence wins within a batch (hnswlib updates in order).
        _, last = np.unique(labels[::-1], return_index=True)
        keep = np.sort(n - 1 - last)
        x, labels = x[keep], labels[keep]
        present = index.contains(labels)
        revived = np.array([int(v) in self._deleted for v in labels[~present]], bool) if (~present).any() else \
            np.zeros(0, bool)
        new_count = int((~present).sum() - revived.sum())
        if self._count + new_count > self.max_elements:
            raise RuntimeError("The number of elements exceeds the specified limit")
        back = labels[~present][revived]
        if back.size:  # re-adding a deleted label: hnswlib revives and updates it
            index.unremove(back)
            self._deleted.difference_update(int(v) for v in back)
        index.add(x, labels, replace=True, threads=_threads(num_threads if num_threads != -1 else self.num_threads))
        self._count += new_count

    def knn_query(
        self, data: npt.ArrayLike, k: int = 1, num_threads: int = -1, filter: Callable[[int], object] | None = None
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        index = self._require()
        q = self._rows(data)
        mask = None
        if filter is not None:
            ids = index.ids()
            allowed = ids[np.fromiter((bool(filter(int(i))) for i in ids), bool, ids.size)]
            mask = allowed
        scores, labels = index.search(q, k=int(k), ef=max(self._ef, int(k)), filter=mask,
                                      threads=_threads(num_threads if num_threads != -1 else self.num_threads))
        if (labels < 0).any():
            raise RuntimeError("Cannot return the results in a contiguous 2D array. Probably ef or M is too small")
        dist = scores if self.space == "l2" else (1.0 - scores).astype(np.float32)
        return labels.astype(np.uint64), np.ascontiguousarray(dist, dtype=np.float32)

    def mark_deleted(self, label: int) -> None:
        index = self._require()
        if int(label) not in index:
            raise RuntimeError("Label not found")
        index.remove([int(label)])
        self._deleted.add(int(label))

    def unmark_deleted(self, label: int) -> None:
        index = self._require()
        if int(label) not in self._deleted:
            raise RuntimeError("Label not found")
        try:
            index.unremove([int(label)])
        except ValueError:
            raise RuntimeError("Label not found") from None
        self._deleted.discard(int(label))

    def get_items(self, ids: npt.ArrayLike | None = None,
                  return_type: str = "numpy") -> npt.NDArray[np.float32] | list[Any]:
        index = self._require()
        ids = index.ids() if ids is None else np.atleast_1d(np.asarray(ids)).astype(np.int64)
        try:
            vectors = index.get_vectors(ids)
        except ValueError as e:
            raise RuntimeError("Label not found") from e
        return vectors if return_type == "numpy" else vectors.tolist()

    def get_ids_list(self) -> list[int]:
        return [int(i) for i in self._require().ids()] + sorted(self._deleted)

    # -- persistence -------------------------------------------------------------------------------------------
    def save_index(self, path: str) -> None:
        self._require().save(path)

    def load_index(self, path: str, max_elements: int = 0, allow_replace_deleted: bool = False) -> None:
        index = HNSWIndex.load(path)
        if index.dim != self.dim or index.metric != self.space:
            raise RuntimeError(f"the file holds a {index.metric} index of dim {index.dim}, "
                               f"not {self.space} of dim {self.dim}")
        self._deleted = set(index.removed_ids().tolist())
        self._index, self._M, self._efc = index, index.M, index.ef_construction
        self._count = len(index) + len(self._deleted)
        self.max_elements = max(int(max_elements), self._count)
        self._index.ef = max(1, self._ef)

    def index_file_size(self) -> int:
        return len(self._require()._to_bytes())

    def __repr__(self) -> str:
        return (f"<simkern.compat.hnswlib.Index(space='{self.space}', dim={self.dim}) "
                f"{self._count}/{self.max_elements} elements>")
