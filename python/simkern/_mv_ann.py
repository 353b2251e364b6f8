"""The ANN backends of MultiVectorIndex: one small object per ``ann`` ("hnsw", "tokens", "pq", "flat") behind one
interface, so the index itself never switches on its backend.

A backend holds the parsed ``ann_options`` and the index's FDE and dims; the ANN object itself lives in each
published state (``_Store.ann``: an HNSWIndex, a PQIndex or None), so that searches keep the one of the state they
started on. The interface (each method takes the state it works on):

- ``make()``: a fresh, empty ANN.
- ``add(st, f32, slots, threads, report)``: the ANN side of an add of the float32 docs ``f32`` at ``slots``. It
  returns ``(ann, fdes, undo)``: the new state's ANN and flat FDE matrix, and a callable that takes the ANN entries
  out again when the store update fails. If ``add`` itself raises, it has already rolled back.
- ``removed_labels(st, slots)``: the ANN ids of removed docs (None when the ANN keeps no per-doc entries).
- ``candidates(q, c, threads, token_k, st)``: ``(nq, c)`` candidate slots, -1 padded.
- ``arrays(st)`` / ``restored_fdes(arrays, n, where)``: extra arrays a save keeps (the flat FDEs).
- ``loader``: the class that loads the ANN file, or None; ``ann_version``: the kind version its sections are in.
- ``ann_steps(meta, layout, where, mapped, views)``: the ANN's restore steps over its (embedded) sections; ``views``:
  those left in a mapped file.
- ``check(st)``, ``drop_stale(st)``: consistency of the ANN with a store; cleanup of entries past it.
- ``writable(st)``: the state an add starts from (a mapped HNSW is copied into memory first).

Every array handed in was checked at the index's boundary: the backends use the internal ``_*_checked`` paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._container import Layout, RestoreSteps
from ._validate import NORM_LIMIT, positive_int, row_norms64
from .hnsw import _CONTAINER_VERSION as HNSW_VERSION
from .hnsw import HNSWIndex
from .pq_index import _VERSION as PQ_VERSION
from .pq_index import PQIndex
from .ragged import Ragged

if TYPE_CHECKING:
    from .fde import FDE
    from .multivector import _Store

Undo = Callable[[], None]
Report = Callable[[int], None]


def _no_undo() -> None:
    pass


class Backend:
    kind = ""
    loader: type[HNSWIndex] | type[PQIndex] | None = None
    ann_version = 0
    mapped_sections: tuple[str, ...] = ()  # the ANN sections a mapped load leaves in the file

    def __init__(self, dim: int, fde: FDE, options: dict[str, Any], batch: Callable[[], int]) -> None:
        self.dim, self.fde, self.batch = dim, fde, batch

    def make(self) -> Any:
        return None

    def add(self, st: _Store, f32: Ragged, slots: npt.NDArray[np.int64], threads: int,
            report: Report) -> tuple[Any, npt.NDArray[np.float32] | None, Undo]:
        raise NotImplementedError

    def removed_labels(self, st: _Store, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64] | None:
        return None

    def candidates(self, q: Ragged, c: int, threads: int, token_k: int | None, st: _Store) -> npt.NDArray[np.int64]:
        raise NotImplementedError

    def arrays(self, st: _Store) -> dict[str, npt.NDArray[Any]]:
        return {}

    def restored_fdes(self, arrays: dict[str, npt.NDArray[Any]], n: int) -> tuple[bool, npt.NDArray[np.float32] | None]:
        return True, None

    def ann_steps(self, meta: dict[str, Any], layout: Layout, where: str, mapped: _core._MappedFile | None,
                  views: dict[str, npt.NDArray[Any]]) -> RestoreSteps:
        raise NotImplementedError  # only backends with a loader are asked

    def check(self, st: _Store) -> bool:
        return True

    def writable(self, st: _Store) -> _Store:
        """``st``, or a copy of it whose ANN an add may write (one loaded with mmap=True is read-only)."""
        return st

    def drop_stale(self, st: _Store) -> None:
        pass

    # -- shared by the FDE backends ----------------------------------------------------------------------------
    def _encode_batches(self, f32: Ragged, threads: int, report: Report,
                        consume: Callable[[npt.NDArray[np.float32], int, int], None]) -> None:
        """Encode the docs ``batch()`` at a time and hand each batch's FDEs (norms checked) to ``consume``."""
        n, step = len(f32), self.batch()
        for b0 in range(0, n, step):
            b1 = min(n, b0 + step)
            part = Ragged._trusted(f32.tokens[f32.offsets[b0]:f32.offsets[b1]],
                                   f32.offsets[b0:b1 + 1] - f32.offsets[b0])
            enc = self.fde._encode_checked(part, True, threads)
            _check_fde_norms(enc, b0)
            consume(enc, b0, b1)
            report(b1)

    def _query_fdes(self, q: Ragged, threads: int) -> npt.NDArray[np.float32]:
        enc = self.fde._encode_checked(q, False, threads)
        norms = row_norms64(enc)
        big = norms > NORM_LIMIT
        if big.any():  # scaling a query's FDE by a power of 2 keeps its ranking and keeps the ANN arithmetic finite
            enc[big] *= np.exp2(-np.ceil(np.log2(norms[big] / NORM_LIMIT)))[:, None].astype(np.float32)
        return enc


class _HNSWOptions:
    """``ef`` (search beam) and, for "tokens", ``token_k``; the rest are HNSWIndex arguments."""

    def __init__(self, options: dict[str, Any], tokens: bool) -> None:
        o = dict(options)
        self.ef = o.pop("ef", None)
        self.token_k = o.pop("token_k", None)
        if self.token_k is not None:
            if not tokens:
                raise TypeError("token_k is an option of ann='tokens' only")
            positive_int(self.token_k, "token_k")
        self.hnsw = o

    def make(self, dim: int) -> HNSWIndex:
        index = HNSWIndex(dim, metric="ip", **self.hnsw)
        if self.ef is not None:
            index.ef = self.ef
        return index


class _GraphBackend(Backend):
    """An HNSWIndex (inner product) shared between states: searches drop its entries past their state. Over the
    doc FDEs labelled by slot ("hnsw"), or over the doc tokens labelled by token row ("tokens")."""

    loader = HNSWIndex
    ann_version = HNSW_VERSION
    mapped_sections = ("vectors",)
    over_tokens = False

    def ann_steps(self, meta: dict[str, Any], layout: Layout, where: str, mapped: _core._MappedFile | None,
                  views: dict[str, npt.NDArray[Any]]) -> RestoreSteps:
        return HNSWIndex._restore_steps(meta, layout, where, mapped, views.get("vectors"))

    def __init__(self, dim: int, fde: FDE, options: dict[str, Any], batch: Callable[[], int]) -> None:
        super().__init__(dim, fde, options, batch)
        self.options = _HNSWOptions(options, tokens=self.over_tokens)

    def make(self) -> HNSWIndex:
        return self.options.make(self.dim if self.over_tokens else self.fde.output_dim)

    def writable(self, st: _Store) -> _Store:
        # the mapped graph stays with the states searches may still be using; the new state gets a copy in memory
        return st.replace(ann=st.ann.__copy__()) if st.ann.mmapped else st

    def drop_stale(self, st: _Store) -> None:
        end = st.n_tokens if self.over_tokens else st.n_docs  # labels at or past it are not in the state
        if len(st.ann) != (st.live_tokens if self.over_tokens else st.live):
            labels = st.ann.ids()
            _drop_entries(st.ann, labels[labels >= end])


class HNSWBackend(_GraphBackend):
    """HNSW over the document FDEs, labelled by slot."""

    kind = "hnsw"

    def add(self, st: _Store, f32: Ragged, slots: npt.NDArray[np.int64], threads: int,
            report: Report) -> tuple[Any, npt.NDArray[np.float32] | None, Undo]:
        ann = st.ann
        _drop_entries(ann, slots)  # left over by an add interrupted during its own rollback

        def undo() -> None:
            _drop_entries(ann, slots)

        try:
            self._encode_batches(f32, threads, report,
                                 lambda enc, b0, b1: ann._add_checked(enc, slots[b0:b1], threads))
        except BaseException:
            undo()
            raise
        return ann, None, undo

    def removed_labels(self, st: _Store, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return slots

    def candidates(self, q: Ragged, c: int, threads: int, token_k: int | None, st: _Store) -> npt.NDArray[np.int64]:
        enc = self._query_fdes(q, threads)
        # while a writer is between its ANN update and its commit, the ANN differs from the state: filter
        flt = None if len(st.ann) == st.live else st.alive
        slots: npt.NDArray[np.int64]
        _, slots = st.ann._search_masked(enc, c, max(c, st.ann.ef), flt, threads or None)
        keep = (slots >= 0) & (slots < st.n_docs)  # in case a writer started after the check above
        keep[keep] = st.alive[slots[keep]]
        return np.where(keep, slots, -1)

    def check(self, st: _Store) -> bool:
        return bool(np.array_equal(np.sort(st.ann.ids()), np.flatnonzero(st.alive)))


class TokensBackend(_GraphBackend):
    """The paper's baseline: every doc token in the HNSW (labelled by token row); candidates ranked by the MaxSim
    of the retrieved tokens."""

    kind = "tokens"
    over_tokens = True

    def add(self, st: _Store, f32: Ragged, slots: npt.NDArray[np.int64], threads: int,
            report: Report) -> tuple[Any, npt.NDArray[np.float32] | None, Undo]:
        ann = st.ann
        labels = st.n_tokens + np.arange(f32.total_tokens, dtype=np.int64)
        _drop_entries(ann, labels)  # left over by an add interrupted during its own rollback

        def undo() -> None:
            _drop_entries(ann, labels)

        try:
            ann._add_checked(f32.tokens, labels, threads)
            report(len(f32))
        except BaseException:
            undo()
            raise
        return ann, None, undo

    def removed_labels(self, st: _Store, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        chosen = np.zeros(st.n_docs, np.bool_)
        chosen[slots] = True
        return token_rows(chosen, st)

    def candidates(self, q: Ragged, c: int, threads: int, token_k: int | None, st: _Store) -> npt.NDArray[np.int64]:
        if token_k is None:
            token_k = self.options.token_k
        token_k = max(1, min(max(32, c // 2) if token_k is None else int(token_k), len(st.ann)))
        offsets = st.offsets[:st.n_docs + 1]
        flt = None if len(st.ann) == st.live_tokens else np.repeat(st.alive, np.diff(offsets))  # as for "hnsw"
        sims, tok = st.ann._search_masked(q.tokens, token_k, max(token_k, st.ann.ef), flt, threads or None)
        out = np.full((len(q), c), -1, np.int64)
        for i in range(len(q)):
            rows = slice(int(q.offsets[i]), int(q.offsets[i + 1]))
            t, s = tok[rows], sims[rows]
            valid = (t >= 0) & (t < st.n_tokens)  # tokens of a concurrent add are not in this state
            doc = np.searchsorted(offsets, t[valid], side="right") - 1
            live = st.alive[doc]
            doc, qtok = doc[live], np.nonzero(valid)[0][live]
            # approximate MaxSim from the retrieved tokens: per (query token, doc) the best retrieved similarity,
            # summed over the query tokens that retrieved something of the doc
            width = rows.stop - rows.start
            pair, inv = np.unique(doc * width + qtok, return_inverse=True)
            if pair.size == 0:
                continue
            best = np.full(pair.size, -np.inf)
            np.maximum.at(best, inv, s[valid][live].astype(np.float64))
            uniq, inv2 = np.unique(pair // width, return_inverse=True)
            approx = np.zeros(uniq.size)
            np.add.at(approx, inv2, best)
            top = uniq[np.argsort(-approx, kind="stable")[:c]]
            out[i, :len(top)] = top
        return out

    def check(self, st: _Store) -> bool:
        return bool(np.array_equal(np.sort(st.ann.ids()), token_rows(st.alive, st)))


class PQBackend(Backend):
    """A PQIndex over the document FDEs (inner product, ids = slots), trained on the first add and copied on write
    (searches keep the published one)."""

    kind = "pq"
    loader = PQIndex
    ann_version = PQ_VERSION
    mapped_sections = ("codes", "vectors")

    def ann_steps(self, meta: dict[str, Any], layout: Layout, where: str, mapped: _core._MappedFile | None,
                  views: dict[str, npt.NDArray[Any]]) -> RestoreSteps:
        return PQIndex._restore_steps(meta, layout, where, views if mapped is not None else None)

    def __init__(self, dim: int, fde: FDE, options: dict[str, Any], batch: Callable[[], int]) -> None:
        super().__init__(dim, fde, options, batch)
        o = dict(options)
        out_dim = fde.output_dim
        self.m = o.pop("m", None) or max(d for d in range(1, 257) if out_dim % d == 0)
        self.nbits = o.pop("nbits", 8)
        self.train = {"seed": o.pop("seed", 0), "iters": o.pop("iters", 25),
                      "max_train_points": o.pop("max_train_points", None)}
        if o:
            raise TypeError(f"unknown options for ann='pq': {', '.join(sorted(o))}")
        if out_dim % self.m:
            raise ValueError(f"m must divide the FDE dimension {out_dim}, got {self.m}")

    def make(self) -> PQIndex:
        return PQIndex(self.fde.output_dim, self.m, self.nbits, "ip")

    def add(self, st: _Store, f32: Ragged, slots: npt.NDArray[np.int64], threads: int,
            report: Report) -> tuple[Any, npt.NDArray[np.float32] | None, Undo]:
        ann = _pq_copy(st.ann) if st.ann.is_trained else self.make()

        def consume(enc: npt.NDArray[np.float32], b0: int, b1: int) -> None:
            if not ann.is_trained:
                if len(enc) < 2 ** ann.pq.nbits:
                    raise ValueError(f"ann='pq' trains its codebooks on the first add: it needs at least "
                                     f"{2 ** ann.pq.nbits} docs, got {len(enc)}")
                ann.train(enc, threads=threads or None, **self.train)
            ann._add_checked(enc, threads)

        self._encode_batches(f32, threads, report, consume)  # the published PQIndex is untouched: nothing to undo
        return ann, None, _no_undo

    def candidates(self, q: Ragged, c: int, threads: int, token_k: int | None, st: _Store) -> npt.NDArray[np.int64]:
        enc = self._query_fdes(q, threads)
        slots: npt.NDArray[np.int64]
        _, slots = st.ann._search(enc, c, st.alive, None, threads or None, checked=True)
        return slots

    def check(self, st: _Store) -> bool:
        return len(st.ann) == st.n_docs and st.ann.dim == self.fde.output_dim


class FlatBackend(Backend):
    """Exact inner products over the document FDEs, kept as a matrix in the state (saved with the store)."""

    kind = "flat"

    def __init__(self, dim: int, fde: FDE, options: dict[str, Any], batch: Callable[[], int]) -> None:
        super().__init__(dim, fde, options, batch)
        if options:
            raise TypeError(f"ann='flat' takes no options, got {', '.join(sorted(options))}")

    def add(self, st: _Store, f32: Ragged, slots: npt.NDArray[np.int64], threads: int,
            report: Report) -> tuple[Any, npt.NDArray[np.float32] | None, Undo]:
        encoded: list[npt.NDArray[np.float32]] = [] if st.fdes is None else [st.fdes]
        self._encode_batches(f32, threads, report, lambda enc, b0, b1: encoded.append(enc))
        return None, np.concatenate(encoded), _no_undo

    def candidates(self, q: Ragged, c: int, threads: int, token_k: int | None, st: _Store) -> npt.NDArray[np.int64]:
        enc = self._query_fdes(q, threads)
        scores = enc @ st.fdes[:st.n_docs].T  # type: ignore[index]  # with live docs, fdes is an array
        scores[:, ~st.alive] = -np.inf
        if c >= scores.shape[1]:
            order = np.argsort(-scores, axis=1, kind="stable")
        else:
            order = np.argpartition(-scores, c - 1, axis=1)[:, :c]
        return np.where(np.take_along_axis(scores, order, 1) > -np.inf, order, -1).astype(np.int64)

    def arrays(self, st: _Store) -> dict[str, npt.NDArray[Any]]:
        return {"fdes": st.fdes if st.fdes is not None else np.zeros((0, self.fde.output_dim), np.float32)}

    def restored_fdes(self, arrays: dict[str, npt.NDArray[Any]], n: int) -> tuple[bool, npt.NDArray[np.float32] | None]:
        f = arrays["fdes"]
        ok = f.dtype == np.float32 and f.shape == (n, self.fde.output_dim) and bool(np.isfinite(f).all())
        return ok, (f if n else None)


BACKENDS: dict[str, type[Backend]] = {"hnsw": HNSWBackend, "tokens": TokensBackend, "pq": PQBackend,
                                      "flat": FlatBackend}


def token_rows(docs_mask: npt.NDArray[np.bool_], st: _Store) -> npt.NDArray[np.int64]:
    """Token rows (the token ANN's ids) of the slots selected by a per-slot mask, increasing."""
    return np.flatnonzero(np.repeat(docs_mask, np.diff(st.offsets[:st.n_docs + 1])))


def _check_fde_norms(enc: npt.NDArray[np.float32], first_doc: int) -> None:
    """Doc FDEs go into an ANN index: their norms must stay within 2**62 too (an FDE averages projected tokens,
    which can make it ~25x longer than the tokens)."""
    norms = row_norms64(enc)
    big = ~(norms <= NORM_LIMIT)
    if big.any():
        row = int(np.argmax(big))
        raise ValueError(f"docs[{first_doc + row}]: its FDE has norm {norms[row]:.3g}, beyond the supported 2**62 "
                         f"(~4.6e18): the token values are too large")


def _drop_entries(ann: HNSWIndex, labels: npt.NDArray[np.int64]) -> None:
    """Tombstone whichever of ``labels`` the HNSW index holds (rollback of an interrupted add)."""
    if labels.size:
        present = labels[ann.contains(labels)]
        if present.size:
            ann.remove(present)


def _pq_copy(ann: PQIndex) -> PQIndex:
    """A PQIndex sharing ``ann``'s quantizer and codes; its ``add`` replaces the arrays (never writes into them)."""
    new = PQIndex.__new__(PQIndex)
    new.__dict__.update(ann.__dict__)
    return new
