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

import hashlib
import json
import numbers
import os
import shutil
import tempfile

import numpy as np

from ._validate import BFLOAT16, int64_vector, positive_int, threads_arg
from .fde import FDE
from .hnsw import HNSWIndex, _progress
from .maxsim import maxsim_topk
from .pq_index import PQIndex
from .ragged import Ragged, as_ragged

__all__ = ["MultiVectorIndex"]

_ANNS = ("hnsw", "pq", "flat", "tokens")
_STORAGES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16)}
if BFLOAT16 is not None:
    _STORAGES["bfloat16"] = BFLOAT16
_FORMAT = "simkern.MultiVectorIndex"
_VERSION = 1
_ENCODE_BATCH = 2048  # docs per FDE batch during add


def _default_fde(dim: int) -> FDE:
    """The paper's 10240-d configuration: R = 20, k = 5, AMS projection to 16, empty partitions filled."""
    return FDE(dim, num_repetitions=20, num_simhash_projections=5, projection="ams_sketch", projection_dimension=16,
               fill_empty_partitions=True)


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
    """

    def __init__(self, dim: int, *, fde: FDE | None = None, ann: str = "hnsw", candidates: int = 100,
                 storage: str = "float32", threads: int | None = None, **ann_options):
        self._dim = positive_int(dim, "dim")
        if ann not in _ANNS:
            raise ValueError(f"ann must be one of {', '.join(map(repr, _ANNS))}, got {ann!r}")
        if storage not in _STORAGES:
            raise ValueError(f"storage must be one of {', '.join(map(repr, _STORAGES))}, got {storage!r}")
        if fde is not None and not isinstance(fde, FDE):
            raise TypeError(f"fde must be a simkern.FDE, got {type(fde).__name__}")
        if fde is not None and fde.dim != self._dim:
            raise ValueError(f"fde.dim must equal dim ({self._dim}), got {fde.dim}")
        self._ann_kind = ann
        self._fde = None if ann == "tokens" else (fde if fde is not None else _default_fde(self._dim))
        self.candidates = positive_int(candidates, "candidates")
        self._storage = storage
        self._threads = threads_arg(threads)
        self._options = dict(ann_options)
        self._ann = self._make_ann(self._options)
        # doc store: tokens in slots (insertion order), capacity-doubling buffers, tombstones for removed docs
        self._tokens = np.zeros((0, self._dim), _STORAGES[storage])
        self._n_tokens = 0
        self._offsets = np.zeros(1, np.int64)
        self._n_docs = 0
        self._ids = np.zeros(0, np.int64)       # slot -> external id
        self._alive = np.zeros(0, np.bool_)     # slot -> not removed
        self._fdes = None                       # flat: (slots, output_dim) float32
        self._lookup = None                     # (sorted external ids, their slots), rebuilt lazily

    # -- construction helpers -------------------------------------------------------------------------------
    def _make_ann(self, options: dict):
        o = dict(options)
        if self._ann_kind in ("hnsw", "tokens"):
            ef = o.pop("ef", None)
            token_k = o.pop("token_k", None)
            if token_k is not None:
                if self._ann_kind != "tokens":
                    raise TypeError("token_k is an option of ann='tokens' only")
                positive_int(token_k, "token_k")
            dim = self._dim if self._ann_kind == "tokens" else self._fde.output_dim
            index = HNSWIndex(dim, metric="ip", **o)
            if ef is not None:
                index.ef = ef
            return index
        if self._ann_kind == "pq":
            m = o.pop("m", None) or max(d for d in range(1, 257) if self._fde.output_dim % d == 0)
            nbits = o.pop("nbits", 8)
            self._pq_train = {"seed": o.pop("seed", 0), "iters": o.pop("iters", 25),
                              "max_train_points": o.pop("max_train_points", None)}
            if o:
                raise TypeError(f"unknown options for ann='pq': {', '.join(sorted(o))}")
            if self._fde.output_dim % m:
                raise ValueError(f"m must divide the FDE dimension {self._fde.output_dim}, got {m}")
            return PQIndex(self._fde.output_dim, m, nbits, "ip")
        if o:
            raise TypeError(f"ann='flat' takes no options, got {', '.join(sorted(o))}")
        return None

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

    def __len__(self) -> int:
        return int(self._alive.sum())

    def __repr__(self) -> str:
        return (f"MultiVectorIndex(dim={self._dim}, ann={self._ann_kind!r}, docs={len(self)}, "
                f"candidates={self.candidates}, storage={self._storage!r}, "
                f"fde_dim={None if self._fde is None else self._fde.output_dim})")

    def __contains__(self, id) -> bool:
        if isinstance(id, (bool, np.bool_)) or not isinstance(id, numbers.Integral):
            return False
        slot = self._slots_of(np.array([id], np.int64), strict=False)[0]
        return slot >= 0

    def ids(self) -> np.ndarray:
        """External ids of the live docs, in insertion order."""
        return self._ids[self._alive].copy()

    def docs(self) -> Ragged:
        """All kept doc tokens by slot (removed docs included), in the storage dtype; a zero-copy view."""
        return Ragged._trusted(self._tokens[:self._n_tokens], self._offsets[:self._n_docs + 1])

    # -- add / remove ---------------------------------------------------------------------------------------
    def add(self, docs, ids=None, *, threads: int | None = None, progress: bool = False) -> np.ndarray:
        """Add documents (a Ragged, a list of ``(L_i, dim)`` arrays or a 3-D array; float32 for the FDE, any of
        float32/float16/bfloat16 for storage - tokens are converted to ``storage``). ``ids``: int64 external ids
        (default: continuing after the largest id so far); an id already present raises ValueError. Empty docs
        raise ValueError. Returns the ids."""
        d = as_ragged(docs, "docs")
        if d.dim != self._dim:
            raise ValueError(f"docs must have dim {self._dim}, got dim {d.dim}")
        if d.dtype not in (np.float32, np.float16) and d.dtype != BFLOAT16:
            raise TypeError(f"docs must be float32, float16 or bfloat16, got {d.dtype}")
        n = len(d)
        if n == 0:
            return np.zeros(0, np.int64)
        lengths = d.lengths
        if (lengths == 0).any():
            raise ValueError(f"docs[{int(np.argmin(lengths))}] is empty: every document needs at least one token")
        finite_rows = np.isfinite(d.tokens.astype(np.float32, copy=False)).all(axis=1)
        if not finite_rows.all():
            row = int(np.argmin(finite_rows))
            doc = int(np.searchsorted(d.offsets, row, side="right") - 1)
            raise ValueError(f"docs[{doc}] contains NaN or inf (token {row - int(d.offsets[doc])})")
        threads = self._threads if threads is None else threads_arg(threads)
        new_ids = self._new_ids(ids, n)
        first_slot = self._n_docs
        slots = np.arange(first_slot, first_slot + n, dtype=np.int64)
        f32 = d if d.dtype == np.float32 else Ragged._trusted(d.tokens.astype(np.float32), d.offsets)
        report = _progress(n, "doc", "MultiVectorIndex.add") if progress else (lambda done: None)
        if self._ann_kind == "tokens":
            token_ids = self._n_tokens + np.arange(f32.total_tokens, dtype=np.int64)
            self._ann.add(f32.tokens, token_ids, threads=threads or None)
            report(n)
        else:
            for b0 in range(0, n, _ENCODE_BATCH):
                b1 = min(n, b0 + _ENCODE_BATCH)
                part = Ragged._trusted(f32.tokens[f32.offsets[b0]:f32.offsets[b1]], f32.offsets[b0:b1 + 1] - f32.offsets[b0])
                enc = self._fde.encode_documents(part, threads=threads or None)
                self._add_fdes(enc, slots[b0:b1], threads)
                report(b1)
        self._append_tokens(d, new_ids)
        return new_ids

    def _add_fdes(self, enc: np.ndarray, slots: np.ndarray, threads: int) -> None:
        if self._ann_kind == "hnsw":
            self._ann.add(enc, slots, threads=threads or None)
        elif self._ann_kind == "pq":
            if not self._ann.is_trained:
                if len(enc) < 2 ** self._ann.pq.nbits:
                    raise ValueError(f"ann='pq' trains its codebooks on the first add: it needs at least "
                                     f"{2 ** self._ann.pq.nbits} docs, got {len(enc)}")
                self._ann.train(enc, threads=threads or None, **self._pq_train)
            self._ann.add(enc, threads=threads or None)
        else:
            self._fdes = enc if self._fdes is None else np.concatenate([self._fdes, enc])

    def _new_ids(self, ids, n: int) -> np.ndarray:
        if ids is None:
            start = int(self._ids.max()) + 1 if self._ids.size else 0
            return np.arange(start, start + n, dtype=np.int64)
        ids = int64_vector(ids, "ids")
        if ids.shape[0] != n:
            raise ValueError(f"ids must have one id per doc ({n}), got {ids.shape[0]}")
        if np.unique(ids).shape[0] != n:
            raise ValueError("ids must be distinct")
        present = self._slots_of(ids, strict=False)
        if (present >= 0).any():
            raise ValueError(f"id {int(ids[np.argmax(present >= 0)])} is already in the index")
        return ids

    def _append_tokens(self, d: Ragged, new_ids: np.ndarray) -> None:
        n, total = len(d), d.total_tokens
        need = self._n_tokens + total
        if need > self._tokens.shape[0]:
            grown = np.zeros((max(need, 2 * self._tokens.shape[0]), self._dim), self._tokens.dtype)
            grown[:self._n_tokens] = self._tokens[:self._n_tokens]
            self._tokens = grown
        self._tokens[self._n_tokens:need] = d.tokens.astype(self._tokens.dtype, copy=False)
        if self._n_docs + n + 1 > self._offsets.shape[0]:
            grown = np.zeros(max(self._n_docs + n + 1, 2 * self._offsets.shape[0]), np.int64)
            grown[:self._n_docs + 1] = self._offsets[:self._n_docs + 1]
            self._offsets = grown
        self._offsets[self._n_docs + 1:self._n_docs + n + 1] = self._n_tokens + d.offsets[1:]
        self._n_tokens, self._n_docs = need, self._n_docs + n
        self._ids = np.concatenate([self._ids, new_ids])
        self._alive = np.concatenate([self._alive, np.ones(n, np.bool_)])
        self._lookup = None

    def _slots_of(self, ids: np.ndarray, strict: bool = True) -> np.ndarray:
        """Slots of live docs with these external ids (-1 where absent; ValueError when strict)."""
        if self._lookup is None:
            live = np.flatnonzero(self._alive)
            order = np.argsort(self._ids[live], kind="stable")
            self._lookup = (self._ids[live][order], live[order])
        keys, slots = self._lookup
        pos = np.searchsorted(keys, ids)
        pos_c = np.minimum(pos, max(len(keys) - 1, 0))
        found = (pos < len(keys)) & (keys[pos_c] == ids) if len(keys) else np.zeros(len(ids), np.bool_)
        if strict and not found.all():
            raise ValueError(f"id {int(ids[np.argmin(found)])} is not in the index")
        return np.where(found, slots[pos_c] if len(keys) else -1, -1)

    def remove(self, ids) -> None:
        """Remove docs by external id (ValueError for an id not in the index). Their tokens stay in memory (slots
        are not reused); they are never returned again."""
        ids = int64_vector(np.atleast_1d(ids), "ids")
        slots = self._slots_of(ids)
        if self._ann_kind == "hnsw":
            self._ann.remove(slots)
        elif self._ann_kind == "tokens":
            chosen = np.zeros(self._n_docs, np.bool_)
            chosen[slots] = True
            self._ann.remove(self._token_rows(chosen))
        self._alive[slots] = False
        self._lookup = None

    # -- search ---------------------------------------------------------------------------------------------
    def search(self, queries, k: int = 10, *, candidates: int | None = None, token_k: int | None = None,
               threads: int | None = None):
        """The ``k`` best docs per query by exact MaxSim among the ANN's ``candidates``: ``(scores float32 (nq, k),
        ids int64 (nq, k))``, best first; fewer than k: ids -1, scores -inf. ``queries``: float32 Ragged / list /
        2-D (one query) / 3-D array. ``token_k`` (ann="tokens" only): tokens retrieved per query token for this
        call (default: the index's option, else max(32, candidates // 2))."""
        q = as_ragged(queries, "queries")
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
        live = int(self._alive.sum())
        if live == 0:
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        cand = self._candidates(q, min(c, live), threads, token_k)
        scores, slots = maxsim_topk(q, self.docs(), k, candidates=cand, threads=threads or None)
        ids = np.where(slots >= 0, self._ids[np.maximum(slots, 0)], -1)
        return scores, ids

    def _candidates(self, q: Ragged, c: int, threads: int, token_k: int | None = None) -> np.ndarray:
        """(nq, c) candidate slots, -1 padded."""
        if self._ann_kind == "tokens":
            return self._token_candidates(q, c, threads, token_k)
        enc = self._fde.encode_queries(q, threads=threads or None)
        if self._ann_kind == "hnsw":
            _, slots = self._ann.search(enc, c, ef=max(c, self._ann.ef), threads=threads or None)
            return slots
        if self._ann_kind == "pq":
            _, slots = self._ann.search(enc, c, filter=self._alive, threads=threads or None)
            return slots
        scores = enc @ self._fdes.T
        scores[:, ~self._alive] = -np.inf
        if c >= scores.shape[1]:
            order = np.argsort(-scores, axis=1, kind="stable")
        else:
            order = np.argpartition(-scores, c - 1, axis=1)[:, :c]
        return np.where(np.take_along_axis(scores, order, 1) > -np.inf, order, -1).astype(np.int64)

    def _token_candidates(self, q: Ragged, c: int, threads: int, token_k: int | None = None) -> np.ndarray:
        if token_k is None:
            token_k = self._options.get("token_k")
        token_k = min(max(32, c // 2) if token_k is None else int(token_k), len(self._ann))
        sims, tok = self._ann.search(q.tokens, token_k, ef=max(token_k, self._ann.ef), threads=threads or None)
        offsets = self._offsets[:self._n_docs + 1]
        out = np.full((len(q), c), -1, np.int64)
        for i in range(len(q)):
            rows = slice(int(q.offsets[i]), int(q.offsets[i + 1]))
            t, s = tok[rows], sims[rows]
            valid = t >= 0
            doc = np.searchsorted(offsets, t[valid], side="right") - 1
            qtok = np.nonzero(valid)[0]
            # approximate MaxSim from the retrieved tokens: per (query token, doc) the best retrieved similarity,
            # summed over the query tokens that retrieved something of the doc
            width = rows.stop - rows.start
            pair, inv = np.unique(doc * width + qtok, return_inverse=True)
            if pair.size == 0:
                continue
            best = np.full(pair.size, -np.inf)
            np.maximum.at(best, inv, s[valid].astype(np.float64))
            uniq, inv2 = np.unique(pair // width, return_inverse=True)
            approx = np.zeros(uniq.size)
            np.add.at(approx, inv2, best)
            top = uniq[np.argsort(-approx, kind="stable")[:c]]
            out[i, :len(top)] = top
        return out

    def _token_rows(self, docs_mask: np.ndarray) -> np.ndarray:
        """Token rows (the token ANN's ids) of the slots selected by a per-slot mask, increasing."""
        return np.flatnonzero(np.repeat(docs_mask, np.diff(self._offsets[:self._n_docs + 1])))

    # -- persistence ----------------------------------------------------------------------------------------
    def _arrays(self) -> dict:
        arrays = {"tokens": self._tokens[:self._n_tokens].view(np.uint16) if self._tokens.dtype != np.float32
                  else self._tokens[:self._n_tokens],
                  "offsets": self._offsets[:self._n_docs + 1], "ids": self._ids, "alive": self._alive}
        if self._ann_kind == "flat":
            arrays["fdes"] = self._fdes if self._fdes is not None else np.zeros((0, self._fde.output_dim), np.float32)
        return arrays

    def _manifest(self) -> dict:
        return {"format": _FORMAT, "version": _VERSION, "dim": self._dim, "ann": self._ann_kind,
                "candidates": self.candidates, "storage": self._storage, "options": self._options,
                "fde": None if self._fde is None else self._fde.config, "docs": self._n_docs,
                "tokens": self._n_tokens}

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to the folder ``path`` (created or replaced atomically): ``manifest.json`` (format,
        version, configuration, sizes, SHA-256 of every file), the token store as .npy files and the ANN's own
        file. ``load`` verifies all of it."""
        path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(path))
        tmp = tempfile.mkdtemp(prefix=".mvindex-", dir=parent)
        try:
            files = {}
            for name, arr in self._arrays().items():
                np.save(os.path.join(tmp, f"{name}.npy"), np.ascontiguousarray(arr), allow_pickle=False)
                files[f"{name}.npy"] = None
            if self._ann_kind in ("hnsw", "tokens", "pq"):
                self._ann.save(os.path.join(tmp, "ann.bin"))
                files["ann.bin"] = None
            for name in files:
                files[name] = _sha256(os.path.join(tmp, name))
            manifest = self._manifest() | {"files": files}
            with open(os.path.join(tmp, "manifest.json"), "w") as f:
                json.dump(manifest, f, indent=1)
            if os.path.isdir(path):
                old = tempfile.mkdtemp(prefix=".mvindex-old-", dir=parent)
                os.rename(path, os.path.join(old, "x"))
                os.rename(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> MultiVectorIndex:
        """Read a folder written by :meth:`save`; ValueError for anything missing, corrupt or inconsistent."""
        path = os.fspath(path)
        try:
            with open(os.path.join(path, "manifest.json")) as f:
                manifest = json.load(f)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path!r} is not a MultiVectorIndex folder (manifest.json: {e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
            raise ValueError(f"{path!r}: manifest.json is not a {_FORMAT} manifest")
        if manifest.get("version") != _VERSION:
            raise ValueError(f"{path!r}: unsupported version {manifest.get('version')!r} (this simkern reads {_VERSION})")
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise ValueError(f"{path!r}: manifest.json has no file list")
        for name, digest in files.items():
            full = os.path.join(path, os.path.basename(str(name)))
            if not os.path.isfile(full) or _sha256(full) != digest:
                raise ValueError(f"{path!r}: {name} is missing or corrupt (SHA-256 mismatch)")
        try:
            fde_cfg = manifest["fde"]
            fde = None if fde_cfg is None else FDE(**fde_cfg)
            index = cls(manifest["dim"], fde=fde, ann=manifest["ann"], candidates=manifest["candidates"],
                        storage=manifest["storage"], **manifest["options"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path!r}: bad configuration in manifest.json ({e})") from None
        arrays = {}
        for name in ("tokens", "offsets", "ids", "alive") + (("fdes",) if index._ann_kind == "flat" else ()):
            if f"{name}.npy" not in files:
                raise ValueError(f"{path!r}: {name}.npy is not listed in the manifest")
            try:
                arrays[name] = np.load(os.path.join(path, f"{name}.npy"), allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ValueError(f"{path!r}: {name}.npy is unreadable ({e})") from None
        index._restore(arrays, manifest, path)
        if index._ann_kind in ("hnsw", "tokens", "pq"):
            if "ann.bin" not in files:
                raise ValueError(f"{path!r}: ann.bin is not listed in the manifest")
            loader = HNSWIndex if index._ann_kind != "pq" else PQIndex
            index._ann = loader.load(os.path.join(path, "ann.bin"))
            index._check_ann(path)
        return index

    def _restore(self, arrays: dict, manifest: dict, where: str) -> None:
        n, total = manifest.get("docs"), manifest.get("tokens")
        tokens, offsets, ids, alive = arrays["tokens"], arrays["offsets"], arrays["ids"], arrays["alive"]
        want = _STORAGES[self._storage]
        raw = np.uint16 if want != np.float32 else np.float32
        ok = (isinstance(n, int) and isinstance(total, int) and tokens.dtype == raw and tokens.shape == (total, self._dim)
              and offsets.dtype == np.int64 and offsets.shape == (n + 1,) and ids.dtype == np.int64
              and ids.shape == (n,) and alive.dtype == np.bool_ and alive.shape == (n,))
        if ok:
            ok = (offsets[0] == 0 and offsets[-1] == total and bool(np.all(np.diff(offsets) > 0))
                  and np.unique(ids).shape[0] == n)
        if ok and self._ann_kind == "flat":
            f = arrays["fdes"]
            ok = f.dtype == np.float32 and f.shape == (n, self._fde.output_dim) and bool(np.isfinite(f).all())
            self._fdes = f if n else None
        if not ok:
            raise ValueError(f"{where!r}: the token store is inconsistent with the manifest")
        self._tokens = tokens.view(want) if want != np.float32 else tokens
        self._n_tokens, self._n_docs = total, n
        self._offsets, self._ids, self._alive = offsets, ids, alive
        self._lookup = None

    def _check_ann(self, where: str) -> None:
        if self._ann_kind == "pq":
            ok = len(self._ann) == self._n_docs and self._ann.dim == self._fde.output_dim
        elif self._ann_kind == "hnsw":
            ann_ids = np.sort(self._ann.ids())
            ok = np.array_equal(ann_ids, np.flatnonzero(self._alive))
        else:
            ok = np.array_equal(np.sort(self._ann.ids()), self._token_rows(self._alive))
        if not ok:
            raise ValueError(f"{where!r}: the ANN index does not match the token store")

    def __getstate__(self):
        return {"manifest": self._manifest(), "arrays": {k: np.array(v) for k, v in self._arrays().items()},
                "ann": self._ann}

    def __setstate__(self, state):
        m = state["manifest"]
        fde = None if m["fde"] is None else FDE(**m["fde"])
        self.__init__(m["dim"], fde=fde, ann=m["ann"], candidates=m["candidates"], storage=m["storage"], **m["options"])
        self._restore(state["arrays"], m, "pickle")
        if state["ann"] is not None:
            self._ann = state["ann"]


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
