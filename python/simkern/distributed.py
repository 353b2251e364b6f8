"""simkern.distributed: simkern's encoders on Ray, for work past one machine (optional extra ``simkern[ray]``).

Imported on first use (``simkern.distributed``); the core package never imports Ray. Ray itself is imported when a
function here first runs, so this module loads without it and its calls raise ImportError naming the extra.

Batch encoding on Ray Data (the pattern of most embedding pipelines): ``encode_fde`` and ``encode_pq`` add a column
to a ``ray.data.Dataset`` with ``Dataset.map_batches`` and a callable class, so each worker unpickles the encoder
once (its constructor) and encodes every batch it is given with it. Batches are numpy (``batch_format="numpy"``).

- Threads: each worker reserves ``num_cpus`` CPUs from Ray and runs simkern's pool with exactly that many threads
  (``threads=`` passed to every call), so Ray's CPU accounting and simkern's threads agree (no oversubscription).
- Ragged token sets (FDE documents / queries) travel as Ray Data's variable-shaped tensor column: each row holds
  one ``(n_tokens, dim)`` float32 array, stored by Arrow as one flat list array plus the shapes. That is Ray's own
  representation of per-row arrays (``ray.data.from_items``, ``from_numpy`` of a list of arrays and the Parquet
  readers produce it, and the numpy batch format hands it back as an object array of 2-D arrays), so a pipeline
  needs no conversion step and no custom schema; a batch becomes one ``Ragged`` with one copy of its tokens.
  Columns whose rows all have the same shape arrive as one 3-D array and are used as they are.
- Results are bit-identical to the one-process encoders (the encoders are deterministic and every row is encoded
  by the same kernels whatever the batch or the worker).

Sharded indexes: ``build_shards(dataset, template, num_shards, path)`` splits a dataset of (id, vector) rows into
``num_shards`` parts, and a Ray task per part adds its rows to a copy of ``template`` - an empty ``HNSWIndex``, or a
trained, empty ``PQIndex`` / ``IVFPQIndex`` (one quantizer shared by every shard, so scores are comparable across
shards) - and saves it in the project's container format, with ``manifest.json`` (shard files, row counts, id
ranges, SHA-256 of every file). ``ShardedIndex.open(path)`` starts one Ray actor per shard (and replica), each
checking its file's checksum and loading it (mmap by default); ``search`` sends the queries to every shard that can
hold an allowed id and merges the per-shard top-k exactly: by score, then id, so the merge does not depend on the
order replies arrive in. Actors restart on a lost worker (``max_restarts``) and calls are retried
(``max_task_retries``): a restarted actor reloads its shard from ``path``. PQIndex shards keep their global ids in a
sidecar ``.npy`` (PQIndex ids are positions); HNSW and IVF-PQ shards store them. MultiVectorIndex shards are not
supported yet.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pickle
from typing import Any

import numpy as np
import numpy.typing as npt

from ._validate import atomic_write, file_sha256, filter_arg, int_arg, positive_int
from .fde import FDE
from .pq import ProductQuantizer
from .ragged import Ragged

__all__ = ["ShardedIndex", "build_shards", "encode_fde", "encode_pq"]


def _ray_data() -> Any:
    """The ``ray.data`` module, or ImportError naming the extra."""
    try:
        return importlib.import_module("ray.data")
    except ImportError as e:
        raise ImportError("simkern.distributed needs Ray Data: pip install 'simkern[ray]'") from e


def _cpus_arg(num_cpus: object, zero_ok: bool) -> float:
    """``num_cpus`` of a Ray task or actor: a number > 0 (>= 0 where ``zero_ok``), else ValueError."""
    if (not isinstance(num_cpus, (int, float)) or isinstance(num_cpus, bool) or num_cpus != num_cpus
            or num_cpus < 0 or (num_cpus == 0 and not zero_ok)):
        raise ValueError(f"num_cpus must be a number {'>=' if zero_ok else '>'} 0, got {num_cpus!r}")
    return float(num_cpus)


def _worker_threads(num_cpus: float, threads: int | None) -> int:
    """simkern threads per worker: ``threads`` if given, else the CPUs the worker reserved from Ray (at least 1)."""
    if threads is not None:
        return int_arg(threads, "threads", 1)
    return max(1, int(math.floor(num_cpus)))


def _map_kwargs(num_cpus: float, concurrency: int | tuple[int, int] | None, batch_size: int) -> dict[str, Any]:
    """The map_batches arguments shared by the encoders: numpy batches, an actor pool of ``concurrency`` workers
    (an int, or (min, max) to autoscale; default: as many as the cluster's CPUs allow at ``num_cpus`` each)."""
    rd = _ray_data()
    num_cpus = _cpus_arg(num_cpus, zero_ok=False)
    batch_size = int_arg(batch_size, "batch_size", 1)
    if concurrency is None:
        ray = importlib.import_module("ray")
        cpus = float(ray.cluster_resources().get("CPU", 1.0)) if ray.is_initialized() else 1.0
        concurrency = (1, max(1, int(cpus // num_cpus)))
    if isinstance(concurrency, tuple):
        lo, hi = (int_arg(v, "concurrency", 1) for v in concurrency)
        if lo > hi:
            raise ValueError(f"concurrency (min, max) needs min <= max, got {concurrency!r}")
        compute = rd.ActorPoolStrategy(min_size=lo, max_size=hi)
    else:
        compute = rd.ActorPoolStrategy(size=int_arg(concurrency, "concurrency", 1))
    return {"batch_format": "numpy", "batch_size": batch_size, "num_cpus": num_cpus, "compute": compute}


def _as_ragged(column: npt.NDArray[Any], name: str) -> Ragged:
    """One batch of a token-set column as a Ragged: an object array of (n_i, dim) arrays (variable-shaped tensor
    column) or one (batch, n, dim) array (every row the same shape)."""
    if column.dtype == object:
        return Ragged.from_list([np.asarray(row, dtype=np.float32) for row in column])
    if column.ndim == 3:
        return Ragged.from_list(list(np.asarray(column, dtype=np.float32)))
    raise ValueError(f"column {name!r} must hold one (n_tokens, dim) array per row, got a batch of shape "
                     f"{column.shape}")


class _FDEBatchEncoder:
    """Ray Data callable class: the FDE is unpickled once per worker; each batch is encoded with it."""

    def __init__(self, fde: FDE, column: str, output_column: str, kind: str, threads: int) -> None:
        self.fde, self.column, self.output_column, self.kind, self.threads = fde, column, output_column, kind, threads

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        sets = _as_ragged(batch[self.column], self.column)
        if self.kind == "documents":
            batch[self.output_column] = self.fde.encode_documents(sets, threads=self.threads)
        else:
            batch[self.output_column] = self.fde.encode_queries(sets, threads=self.threads)
        return batch


class _PQBatchEncoder:
    """Ray Data callable class: the quantizer is unpickled once per worker; each batch is encoded with it."""

    def __init__(self, pq: ProductQuantizer, column: str, output_column: str, threads: int) -> None:
        self.pq, self.column, self.output_column, self.threads = pq, column, output_column, threads

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        x = np.ascontiguousarray(batch[self.column], dtype=np.float32)
        batch[self.output_column] = self.pq.encode(x, threads=self.threads)
        return batch


def encode_fde(dataset: Any, fde: FDE, *, column: str = "tokens", output_column: str = "fde",
               kind: str = "documents", batch_size: int = 256, num_cpus: float = 1,
               concurrency: int | tuple[int, int] | None = None, threads: int | None = None) -> Any:
    """A ``ray.data.Dataset`` with ``output_column`` = the FDE of each row's token set in ``column`` (float32
    ``(fde.output_dim,)`` per row): ``fde.encode_documents`` (``kind="documents"``) or ``encode_queries``.

    ``num_cpus`` CPUs per worker (simkern runs that many threads unless ``threads`` says otherwise),
    ``concurrency`` workers (an int, or (min, max); default up to the cluster's CPUs / num_cpus), ``batch_size``
    rows per call. Lazy, like every Dataset transform: nothing runs until the dataset is consumed."""
    if not isinstance(fde, FDE):
        raise TypeError(f"fde must be a simkern.FDE, got {type(fde).__name__}")
    if kind not in ("documents", "queries"):
        raise ValueError(f"kind must be 'documents' or 'queries', got {kind!r}")
    kwargs = _map_kwargs(num_cpus, concurrency, batch_size)
    return dataset.map_batches(
        _FDEBatchEncoder, fn_constructor_kwargs={"fde": fde, "column": column, "output_column": output_column,
                                                 "kind": kind, "threads": _worker_threads(num_cpus, threads)},
        **kwargs)


def encode_pq(dataset: Any, pq: ProductQuantizer, *, column: str = "vector", output_column: str = "pq_codes",
              batch_size: int = 4096, num_cpus: float = 1, concurrency: int | tuple[int, int] | None = None,
              threads: int | None = None) -> Any:
    """A ``ray.data.Dataset`` with ``output_column`` = the PQ code of each row's vector in ``column`` (uint8
    ``(pq.code_size,)`` per row, ``ProductQuantizer.encode``'s format). The quantizer must be trained. Other
    arguments as ``encode_fde``."""
    if not isinstance(pq, ProductQuantizer):
        raise TypeError(f"pq must be a simkern.ProductQuantizer, got {type(pq).__name__}")
    pq._require_trained()
    kwargs = _map_kwargs(num_cpus, concurrency, batch_size)
    return dataset.map_batches(
        _PQBatchEncoder, fn_constructor_kwargs={"pq": pq, "column": column, "output_column": output_column,
                                                "threads": _worker_threads(num_cpus, threads)},
        **kwargs)


# -- sharded indexes ----------------------------------------------------------------------------------------------
_MANIFEST = "manifest.json"
_SHARD_KINDS = ("HNSWIndex", "PQIndex", "IVFPQIndex")


def _template_kind(template: object) -> str:
    from .hnsw import HNSWIndex
    from .ivfpq_index import IVFPQIndex
    from .pq_index import PQIndex

    if isinstance(template, HNSWIndex):
        kind = "HNSWIndex"
    elif isinstance(template, (PQIndex, IVFPQIndex)):
        kind = type(template).__name__
        if not template.is_trained:
            raise ValueError(f"a {kind} template must be trained (the shards share its quantizer)")
    else:
        raise TypeError("template must be an empty HNSWIndex, or a trained empty PQIndex / IVFPQIndex, got "
                        f"{type(template).__name__}")
    if len(template):
        raise ValueError("the template must be empty: each shard adds its own rows")
    return kind


def _metric_of(template: Any) -> str:
    return str(template.metric)


def _build_shard(part: Any, template_bytes: bytes, kind: str, path: str, shard: int, vector_column: str,
                 id_column: str, threads: int) -> dict[str, Any]:
    """One shard: the rows of ``part`` added to a copy of the template, saved under ``path``."""
    vectors, ids = [], []
    for batch in part.iter_batches(batch_format="numpy", batch_size=4096):
        vectors.append(np.asarray(batch[vector_column], dtype=np.float32))
        ids.append(np.asarray(batch[id_column], dtype=np.int64))
    index = pickle.loads(template_bytes)
    x = np.ascontiguousarray(np.concatenate(vectors)) if vectors else np.zeros((0, index.dim), np.float32)
    gids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    info: dict[str, Any] = {"shard": shard, "file": f"shard-{shard:05d}.simk", "count": int(len(gids))}
    if kind == "PQIndex":
        index.add(x, threads=threads)
        info["ids_file"] = f"shard-{shard:05d}.ids.npy"
        ids_path = os.path.join(path, info["ids_file"])
        atomic_write(ids_path, lambda f: np.save(f, gids))
        info["ids_sha256"] = file_sha256(ids_path)
    elif len(gids):
        index.add(x, gids, threads=threads)
    file_path = os.path.join(path, info["file"])
    index.save(file_path)
    info["sha256"] = file_sha256(file_path)
    info["id_min"] = int(gids.min()) if len(gids) else None
    info["id_max"] = int(gids.max()) if len(gids) else None
    return info


def build_shards(dataset: Any, template: Any, num_shards: int, path: str | os.PathLike[str], *,
                 vector_column: str = "vector", id_column: str = "id", num_cpus: float = 1) -> dict[str, Any]:
    """Split ``dataset`` (rows with an int64 ``id_column`` and a float32 vector ``vector_column``) into
    ``num_shards`` parts, build one index per part on a Ray task (``num_cpus`` CPUs, as many simkern threads) from a
    copy of ``template`` and save it in the folder ``path``, with ``manifest.json``. Returns the manifest."""
    _ray_data()  # ImportError naming the extra when Ray is missing
    ray: Any = importlib.import_module("ray")
    kind = _template_kind(template)
    num_shards = positive_int(num_shards, "num_shards")
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    template_bytes = pickle.dumps(template, protocol=5)
    threads = _worker_threads(num_cpus, None)
    parts = dataset.split(num_shards)
    task = ray.remote(num_cpus=num_cpus)(_build_shard)
    infos = ray.get([task.remote(part, template_bytes, kind, path, i, vector_column, id_column, threads)
                     for i, part in enumerate(parts)])
    manifest = {"format": "simkern-shards", "version": 1, "kind": kind, "metric": _metric_of(template),
                "shards": sorted(infos, key=lambda info: int(info["shard"]))}
    text = json.dumps(manifest, indent=1).encode()
    atomic_write(os.path.join(path, _MANIFEST), lambda f: f.write(text))
    return manifest


class _ShardServer:
    """A shard in a Ray actor: checks the file's checksum, loads the index (mmap where asked), answers searches in
    global ids."""

    def __init__(self, path: str, info: dict[str, Any], kind: str, mmap: bool, threads: int) -> None:
        from .hnsw import HNSWIndex
        from .ivfpq_index import IVFPQIndex
        from .pq_index import PQIndex

        file_path = os.path.join(path, info["file"])
        if file_sha256(file_path) != info["sha256"]:
            raise ValueError(f"{file_path}: checksum mismatch with {_MANIFEST} (the shard file is corrupted)")
        self.threads = threads
        cls: Any = {"HNSWIndex": HNSWIndex, "PQIndex": PQIndex, "IVFPQIndex": IVFPQIndex}[kind]
        self.index: Any = cls.load(file_path, mmap=mmap)
        self.gids: npt.NDArray[np.int64] | None = None
        if "ids_file" in info:
            ids_path = os.path.join(path, info["ids_file"])
            if file_sha256(ids_path) != info["ids_sha256"]:
                raise ValueError(f"{ids_path}: checksum mismatch with {_MANIFEST} (the shard file is corrupted)")
            self.gids = np.load(ids_path)
            if self.gids.shape != (len(self.index),):
                raise ValueError(f"{ids_path}: {self.gids.shape[0]} ids for {len(self.index)} vectors")
            self.order = np.argsort(self.gids, kind="stable")
            self.sorted_gids = self.gids[self.order]

    def ready(self) -> bool:
        return True

    def search(self, queries: npt.NDArray[np.float32], k: int, allowed: npt.NDArray[np.int64] | None,
               kwargs: dict[str, Any]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        filt: Any = None
        if allowed is not None:
            if self.gids is None:
                filt = allowed
            elif not len(self.order):
                filt = np.zeros(0, np.int64)
            else:  # global ids -> positions
                pos = np.minimum(np.searchsorted(self.sorted_gids, allowed), len(self.order) - 1)
                filt = self.order[pos[self.sorted_gids[pos] == allowed]]
        kwargs = {"threads": self.threads, **kwargs}
        scores, ids = self.index.search(queries, k, filter=filt, **kwargs)
        if self.gids is not None:
            ids = np.where(ids >= 0, self.gids[np.maximum(ids, 0)], -1)
        return scores, ids


class ShardedIndex:
    """Search over the shards of ``build_shards``, one Ray actor per shard and replica (see the module docstring).
    Results equal one index over all the rows wherever each shard's search is exact (PQIndex's exact ADC, HNSW with
    ef >= its shard's size, IVF-PQ with nprobe = nlist)."""

    def __init__(self, path: str, manifest: dict[str, Any], actors: list[list[Any]]) -> None:
        self.path, self.manifest, self._actors = path, manifest, actors
        self._turn = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, num_replicas: int = 1, mmap: bool = True, num_cpus: float = 0,
             threads: int | None = None, max_restarts: int = 3, max_task_retries: int = 3,
             timeout: float = 300.0) -> ShardedIndex:
        """Start the shard actors (``num_replicas`` per shard) and wait until every one has checked and loaded its
        file: a missing, corrupted or foreign shard raises ValueError here. ``num_cpus``: CPUs each actor reserves
        (default 0: Ray places shards wherever there is memory, as its actors' default); each actor's searches run
        ``threads`` simkern threads (default: its reserved CPUs, at least 1). Actors that cannot be placed within
        ``timeout`` seconds raise RuntimeError."""
        _ray_data()  # ImportError naming the extra when Ray is missing
        ray: Any = importlib.import_module("ray")
        path = os.fspath(path)
        try:
            with open(os.path.join(path, _MANIFEST), "rb") as f:
                manifest = json.loads(f.read())
            kind, shards = manifest["kind"], manifest["shards"]
            if manifest.get("format") != "simkern-shards" or kind not in _SHARD_KINDS or not shards:
                raise ValueError("not a simkern shard manifest")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: cannot read {_MANIFEST} ({e})") from None
        num_replicas = positive_int(num_replicas, "num_replicas")
        server = ray.remote(_ShardServer)
        per_actor = _worker_threads(_cpus_arg(num_cpus, zero_ok=True), threads)
        actors = [[server.options(num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=max_task_retries)
                   .remote(path, info, kind, mmap, per_actor) for _ in range(num_replicas)] for info in shards]
        try:
            ray.get([a.ready.remote() for group in actors for a in group], timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            for group in actors:
                for a in group:
                    ray.kill(a)
            raise RuntimeError(f"{path}: the shard actors did not start within {timeout} s (not enough cluster "
                               f"resources for {len(shards) * num_replicas} actors of {num_cpus} CPUs?)") from None
        except Exception as e:  # noqa: BLE001 - a shard that failed to load: the cause, as ValueError
            for group in actors:
                for a in group:
                    ray.kill(a)
            cause = getattr(e, "cause", None) or e
            raise ValueError(f"{path}: a shard failed to load: {cause}") from None
        return cls(path, manifest, actors)

    def close(self) -> None:
        """Stop the shard actors."""
        ray = importlib.import_module("ray")
        for group in self._actors:
            for a in group:
                ray.kill(a)
        self._actors = []

    def __len__(self) -> int:
        return sum(int(info["count"]) for info in self.manifest["shards"])

    def search(self, queries: npt.NDArray[np.float32], k: int = 10, *, filter: npt.ArrayLike | None = None,
               **search_kwargs: Any) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The ``k`` best ``(scores, ids)`` over every shard, merged by score then id. ``filter``: an array of
        allowed ids (sent only to the shards whose id range holds some); ``search_kwargs`` go to each shard's
        ``search`` (``ef=``, ``nprobe=``, ``rerank=``, ``threads=``)."""
        ray = importlib.import_module("ray")
        k = positive_int(k, "k")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2:
            raise ValueError(f"queries must be 2-D (n, dim), got shape {queries.shape}")
        allowed: npt.NDArray[np.int64] | None = None
        if filter is not None:
            mask, ids = filter_arg(filter, 0 if not len(self) else 1 + max(
                int(info["id_max"]) for info in self.manifest["shards"] if info["id_max"] is not None))
            if ids is not None:
                allowed = np.unique(ids)
            else:
                assert mask is not None  # filter_arg: a mask or ids for any filter that is not None
                allowed = np.flatnonzero(mask).astype(np.int64)
        self._turn += 1
        refs = []
        for info, group in zip(self.manifest["shards"], self._actors):
            shard_allowed = None
            if allowed is not None:
                if info["id_min"] is None:
                    continue
                shard_allowed = allowed[(allowed >= info["id_min"]) & (allowed <= info["id_max"])]
                if not len(shard_allowed):
                    continue  # no allowed id in this shard's range: not asked
            actor = group[self._turn % len(group)]
            refs.append(actor.search.remote(queries, k, shard_allowed, search_kwargs))
        smaller = self.manifest["metric"] == "l2"
        pad = np.inf if smaller else -np.inf
        if not refs:
            return np.full((len(queries), k), pad, np.float32), np.full((len(queries), k), -1, np.int64)
        parts = ray.get(refs)
        scores = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        # Exact merge: padding last, then by score (ascending for l2), then id; independent of reply order.
        key = np.where(ids < 0, np.inf, scores if smaller else -scores.astype(np.float64))
        order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), key), axis=1)[:, :k]
        return (np.take_along_axis(scores, order, 1).astype(np.float32, copy=False),
                np.take_along_axis(ids, order, 1))
