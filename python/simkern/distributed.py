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

Sharded indexes: ``build_shards(dataset, template, num_shards, path)`` splits a dataset of (id, vector) rows - or
(id, token set) rows for a MultiVectorIndex - into ``num_shards`` parts, and a Ray task per part adds its rows to a
copy of ``template`` and saves it in the project's container format, with ``manifest.json`` (shard files, row
counts, id ranges, SHA-256 of every file). The template is an empty ``HNSWIndex`` or ``MultiVectorIndex`` (its
configuration), or an empty ``PQIndex`` / ``IVFPQIndex``: trained (one quantizer shared by every shard, so scores are
comparable across shards) or untrained (each shard trains its own on its rows). ``path`` is a local or shared folder,
or an fsspec URL (files staged locally and uploaded; actors read verified downloads from a local cache).
``ShardedIndex.open(path)`` starts one Ray actor per shard (and replica), each checking its files' checksums and
loading its shard (mmap by default); ``search`` sends the queries to every shard that can hold an allowed id and
merges the per-shard top-k exactly: by score, then id, so the merge does not depend on the order replies arrive in.
Actors restart on a lost worker (``max_restarts``) and calls are retried (``max_task_retries``): a restarted actor
reloads its shard from ``path``. PQIndex shards keep their global ids in a sidecar ``.npy`` (PQIndex ids are
positions); the other kinds store them.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import pickle
import secrets
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ._validate import atomic_write, file_sha256, filter_arg, int_arg, positive_int
from .fde import FDE
from .hnsw import HNSWIndex
from .ivfpq_index import IVFPQIndex
from .multivector import MultiVectorIndex
from .pq import ProductQuantizer
from .pq_index import PQIndex
from .ragged import Ragged, as_ragged

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


_BATCH_BYTES = 32 << 20  # encode_fde's default batch: about this many bytes of encodings


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


def _token_rows(column: npt.NDArray[Any], name: str) -> list[npt.NDArray[np.float32]]:
    """One batch of a token-set column as float32 ``(n_i, dim)`` arrays: an object array of 2-D arrays (a
    variable-shaped tensor column) or one (batch, n, dim) array (every row the same shape)."""
    if column.dtype == object:
        return [np.asarray(row, dtype=np.float32) for row in column]
    if column.ndim == 3:
        return list(np.asarray(column, dtype=np.float32))
    raise ValueError(f"column {name!r} must hold one (n_tokens, dim) array per row, got a batch of shape "
                     f"{column.shape}")


class _BatchEncoder:
    """Ray Data callable class: the encoder is unpickled once per worker (its constructor); each batch's ``column``
    (token sets concatenated into one Ragged, or float32 rows) goes through ``encoder.<method>`` into
    ``output_column``."""

    def __init__(self, encoder: FDE | ProductQuantizer, method: str, tokens: bool, column: str, output_column: str,
                 threads: int, keep_input: bool) -> None:
        self.encode = getattr(encoder, method)
        self.tokens, self.column, self.output_column = tokens, column, output_column
        self.threads, self.keep_input = threads, keep_input

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        values = batch[self.column]
        x = (Ragged.from_list(_token_rows(values, self.column)) if self.tokens
             else np.ascontiguousarray(values, dtype=np.float32))
        batch[self.output_column] = self.encode(x, threads=self.threads)
        if not self.keep_input and self.column != self.output_column:
            del batch[self.column]
        return batch


def _encode(dataset: Any, encoder: FDE | ProductQuantizer, method: str, tokens: bool, column: str,
            output_column: str, batch_size: int, num_cpus: float, concurrency: int | tuple[int, int] | None,
            threads: int | None, keep_input: bool) -> Any:
    """``dataset.map_batches`` with a ``_BatchEncoder`` pool (the arguments of ``_map_kwargs``)."""
    kwargs = _map_kwargs(num_cpus, concurrency, batch_size)
    return dataset.map_batches(
        _BatchEncoder, fn_constructor_kwargs={
            "encoder": encoder, "method": method, "tokens": tokens, "column": column, "output_column": output_column,
            "threads": _worker_threads(kwargs["num_cpus"], threads), "keep_input": bool(keep_input)},
        **kwargs)


def encode_fde(dataset: Any, fde: FDE, *, column: str = "tokens", output_column: str = "fde",
               kind: str = "documents", batch_size: int | None = None, num_cpus: float = 1,
               concurrency: int | tuple[int, int] | None = None, threads: int | None = None,
               keep_input: bool = True) -> Any:
    """A ``ray.data.Dataset`` with ``output_column`` = the FDE of each row's token set in ``column`` (float32
    ``(fde.output_dim,)`` per row): ``fde.encode_documents`` (``kind="documents"``) or ``encode_queries``.

    ``num_cpus`` CPUs per worker (simkern runs that many threads unless ``threads`` says otherwise),
    ``concurrency`` workers (an int, or (min, max); default up to the cluster's CPUs / num_cpus), ``batch_size``
    rows per call (default: about 32 MiB of encodings, 819 rows at 10240-d: large batches amortise Ray's per-batch
    cost, and stay well under Ray Data's 128 MiB target block size); ``keep_input=False`` drops ``column`` from
    the output (the tokens are not carried on, which saves their serialisation when only the encodings are kept).
    Lazy, like every Dataset transform: nothing runs until the dataset is consumed."""
    if not isinstance(fde, FDE):
        raise TypeError(f"fde must be a simkern.FDE, got {type(fde).__name__}")
    if kind not in ("documents", "queries"):
        raise ValueError(f"kind must be 'documents' or 'queries', got {kind!r}")
    if batch_size is None:
        batch_size = max(1, _BATCH_BYTES // (4 * fde.output_dim))
    return _encode(dataset, fde, f"encode_{kind}", True, column, output_column, batch_size, num_cpus, concurrency,
                   threads, keep_input)


def encode_pq(dataset: Any, pq: ProductQuantizer, *, column: str = "vector", output_column: str = "pq_codes",
              batch_size: int = 4096, num_cpus: float = 1, concurrency: int | tuple[int, int] | None = None,
              threads: int | None = None, keep_input: bool = True) -> Any:
    """A ``ray.data.Dataset`` with ``output_column`` = the PQ code of each row's vector in ``column`` (uint8
    ``(pq.code_size,)`` per row, ``ProductQuantizer.encode``'s format). The quantizer must be trained. Other
    arguments as ``encode_fde``."""
    if not isinstance(pq, ProductQuantizer):
        raise TypeError(f"pq must be a simkern.ProductQuantizer, got {type(pq).__name__}")
    pq._require_trained()
    return _encode(dataset, pq, "encode", False, column, output_column, batch_size, num_cpus, concurrency, threads,
                   keep_input)


# -- sharded indexes ----------------------------------------------------------------------------------------------
_MANIFEST = "manifest.json"
_SHARD_CLASSES: dict[str, Any] = {cls.__name__: cls for cls in (HNSWIndex, PQIndex, IVFPQIndex, MultiVectorIndex)}


def _relative(name: object, where: str) -> str:
    """A file name from a manifest: relative, inside the folder (no '..', no absolute path), else ValueError."""
    if (not isinstance(name, str) or not name or name.startswith(("/", "\\")) or "://" in name
            or any(part in ("", ".", "..") for part in name.split("/"))):
        raise ValueError(f"{where}: {_MANIFEST} names a file outside the folder: {name!r}")
    return name


class _Folder:
    """Where the shards live: a local (or shared, mounted) folder, or an fsspec URL (``s3://``, ``gs://``,
    ``file://``...; needs ``fsspec`` and the store's package). For a URL, shard files are written in a local staging
    folder and uploaded, and read through a local cache of verified downloads (named by their SHA-256, so replicas on
    one node share them and a restarted actor reuses them). Picklable: Ray sends it to the tasks and actors."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.url = os.fspath(path)
        self.remote = "://" in self.url
        if not self.remote:  # Ray's workers do not share the driver's working directory
            self.url = os.path.abspath(self.url)

    def _fs(self) -> tuple[Any, str]:
        try:
            fsspec = importlib.import_module("fsspec")
        except ImportError as e:
            raise ImportError(f"{self.url}: a URL needs fsspec (pip install fsspec and the store's package)") from e
        fs, root = fsspec.core.url_to_fs(self.url)
        return fs, str(root).rstrip("/")

    def local(self, rel: str) -> str:
        """The local path of ``rel`` (a local folder only)."""
        return os.path.join(self.url, *rel.split("/"))

    def makedirs(self) -> None:
        if self.remote:
            fs, root = self._fs()
            fs.makedirs(root, exist_ok=True)
        else:
            os.makedirs(self.url, exist_ok=True)

    def read_manifest(self) -> bytes:
        if self.remote:
            fs, root = self._fs()
            return bytes(fs.cat_file(f"{root}/{_MANIFEST}"))
        with open(self.local(_MANIFEST), "rb") as f:
            return f.read()

    def write_manifest(self, data: bytes) -> None:
        """Atomic for a local folder (readers see the old manifest or the new one); a store's own semantics for a
        URL (object stores replace an object whole)."""
        if self.remote:
            fs, root = self._fs()
            fs.pipe_file(f"{root}/{_MANIFEST}", data)
        else:
            atomic_write(self.local(_MANIFEST), lambda f: f.write(data))

    def publish(self, staged: str, rel: str) -> None:
        """Upload the staged file ``staged`` as ``rel`` (a URL; a local folder was written in place)."""
        if self.remote:
            fs, root = self._fs()
            target = f"{root}/{rel}"
            fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            fs.put_file(staged, target)

    def remove(self, rels: list[str]) -> None:
        """Delete files of a previous build (best effort: a file already gone is not an error)."""
        fs, root = self._fs() if self.remote and rels else (None, "")
        for rel in rels:
            with contextlib.suppress(OSError):
                if fs is not None:
                    fs.rm_file(f"{root}/{rel}")
                else:
                    os.unlink(self.local(rel))
                    if "/" in rel:  # a MultiVectorIndex shard's folder
                        os.rmdir(os.path.dirname(self.local(rel)))

    def fetch(self, rel: str, sha256: str, cache_dir: str) -> str:
        """A local path to ``rel`` whose content has the SHA-256 ``sha256`` (checked), else ValueError."""
        if not self.remote:
            path = self.local(rel)
            if file_sha256(path) != sha256:
                raise ValueError(f"{path}: checksum mismatch with {_MANIFEST} (the shard file is corrupted)")
            return path
        target = os.path.join(cache_dir, sha256, os.path.basename(rel))
        if os.path.exists(target) and file_sha256(target) == sha256:
            return target
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fs, root = self._fs()
        fd, tmp = tempfile.mkstemp(prefix=".download-", dir=os.path.dirname(target))
        os.close(fd)
        try:
            fs.get_file(f"{root}/{rel}", tmp)
            if file_sha256(tmp) != sha256:
                raise ValueError(f"{self.url}/{rel}: checksum mismatch with {_MANIFEST} (the shard file is corrupted)")
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return target


def _template_kind(template: Any) -> str:
    kind = type(template).__name__
    if _SHARD_CLASSES.get(kind) is not type(template):
        raise TypeError("template must be an empty HNSWIndex, PQIndex, IVFPQIndex or MultiVectorIndex, got "
                        f"{type(template).__name__}")
    if len(template):
        raise ValueError("the template must be empty: each shard adds its own rows")
    return kind


def _read_part(part: Any, column: str, id_column: str, tokens: bool, dim: int) -> tuple[Any, npt.NDArray[np.int64]]:
    """The rows of one dataset part: (float32 ``(n, dim)`` vectors, or a list of ``(n_tokens, dim)`` token sets;
    int64 ids)."""
    values: list[Any] = []
    ids = []
    for batch in part.iter_batches(batch_format="numpy", batch_size=4096):
        if tokens:
            values.extend(_token_rows(batch[column], column))
        else:
            values.append(np.asarray(batch[column], dtype=np.float32))
        ids.append(np.asarray(batch[id_column], dtype=np.int64))
    gids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    if tokens:
        return values, gids
    return (np.ascontiguousarray(np.concatenate(values)) if values else np.zeros((0, dim), np.float32)), gids


def _build_shard(part: Any, template_bytes: bytes, kind: str, folder: _Folder, shard: int, tag: str, column: str,
                 id_column: str, threads: int) -> dict[str, Any]:
    """One shard: the rows of ``part`` added to a copy of the template (trained first on those rows when the template
    is an untrained PQIndex / IVFPQIndex), saved as ``shard-NNNNN-<tag>`` in ``folder``."""
    index = pickle.loads(template_bytes)
    x, gids = _read_part(part, column, id_column, kind == "MultiVectorIndex", index.dim)
    info: dict[str, Any] = {"shard": shard, "count": int(len(gids)),
                            "id_min": int(gids.min()) if len(gids) else None,
                            "id_max": int(gids.max()) if len(gids) else None}
    with tempfile.TemporaryDirectory(prefix="simkern-shard-") as staging:
        def put(rel: str, write: Callable[[str], object]) -> str:
            """Write ``rel`` through ``write(local path)`` (in place for a local folder, staged for a URL), upload it
            where needed; its SHA-256."""
            target = os.path.join(staging, *rel.split("/")) if folder.remote else folder.local(rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            write(target)
            digest = file_sha256(target)
            folder.publish(target, rel)
            return digest

        if kind in ("PQIndex", "IVFPQIndex") and not index.is_trained:
            index.train(x, threads=threads)
            info["trained"] = "on the shard's rows"
        if kind == "PQIndex":  # PQIndex ids are positions: the global ids go to a sidecar
            index.add(x, threads=threads)
            info["ids_file"] = f"shard-{shard:05d}-{tag}.ids.npy"
            info["ids_sha256"] = put(info["ids_file"], lambda p: atomic_write(p, lambda f: np.save(f, gids)))
        elif len(gids):
            index.add(x, gids, threads=threads)
        if kind == "MultiVectorIndex":  # saved as a folder holding one container file
            info["file"] = f"shard-{shard:05d}-{tag}/index.skc"
            info["sha256"] = put(info["file"], lambda p: index.save(os.path.dirname(p)))
        else:
            info["file"] = f"shard-{shard:05d}-{tag}.simk"
            info["sha256"] = put(info["file"], index.save)
    return info


def _manifest_files(manifest: dict[str, Any]) -> list[str]:
    return [info[key] for info in manifest.get("shards", []) for key in ("file", "ids_file") if key in info]


def build_shards(dataset: Any, template: Any, num_shards: int, path: str | os.PathLike[str], *,
                 column: str | None = None, id_column: str = "id", num_cpus: float = 1) -> dict[str, Any]:
    """Split ``dataset`` into ``num_shards`` parts and build one index per part on a Ray task (``num_cpus`` CPUs, as
    many simkern threads) from a copy of ``template``, saved in the folder (or fsspec URL) ``path`` with
    ``manifest.json``. Returns the manifest.

    Rows: an int64 ``id_column`` and ``column``: a float32 vector (default ``"vector"``), or for a MultiVectorIndex
    a token set (default ``"tokens"``, one ``(n_tokens, dim)`` array per row). ``template``: an empty HNSWIndex or
    MultiVectorIndex (its configuration), or an empty PQIndex / IVFPQIndex - trained (one quantizer for every shard:
    scores comparable across shards, the sharded search exact where each shard's is) or untrained (each shard trains
    its own on its rows). Rebuilding into the same ``path`` writes new file names and replaces the manifest last, then
    deletes the previous build's files: a build that fails leaves the previous one intact and usable."""
    _ray_data()  # ImportError naming the extra when Ray is missing
    ray: Any = importlib.import_module("ray")
    kind = _template_kind(template)
    num_shards = positive_int(num_shards, "num_shards")
    if column is None:
        column = "tokens" if kind == "MultiVectorIndex" else "vector"
    folder = _Folder(path)
    folder.makedirs()
    try:
        previous = _manifest_files(_parse_manifest(folder.read_manifest(), folder.url))
    except (OSError, ValueError):
        previous = []  # nothing (valid) built here before
    template_bytes = pickle.dumps(template, protocol=5)
    threads = _worker_threads(_cpus_arg(num_cpus, zero_ok=False), None)
    tag = secrets.token_hex(4)  # this build's file names: never those of the build being replaced
    task = ray.remote(num_cpus=num_cpus)(_build_shard)
    infos = ray.get([task.remote(part, template_bytes, kind, folder, i, tag, column, id_column, threads)
                     for i, part in enumerate(dataset.split(num_shards))])
    manifest = {"format": "simkern-shards", "version": 1, "kind": kind, "dim": int(template.dim),
                "metric": "maxsim" if kind == "MultiVectorIndex" else str(template.metric),
                "shards": sorted(infos, key=lambda info: int(info["shard"]))}
    folder.write_manifest(json.dumps(manifest, indent=1).encode())
    current = set(_manifest_files(manifest))
    folder.remove([rel for rel in previous if rel not in current])
    return manifest


def _parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """A shard manifest, checked (kind, metric, file names inside the folder, counts and id ranges), else ValueError."""
    try:
        manifest = json.loads(data)
        kind, shards = manifest["kind"], manifest["shards"]
        if manifest.get("format") != "simkern-shards" or manifest.get("version") != 1:
            raise ValueError("not a simkern shard manifest (version 1)")
        if kind not in _SHARD_CLASSES or manifest["metric"] not in ("l2", "ip", "cosine", "maxsim") or not shards:
            raise ValueError(f"unknown kind {kind!r} or metric, or no shards")
        if not isinstance(manifest["dim"], int) or manifest["dim"] < 1:
            raise ValueError(f"bad dim {manifest['dim']!r}")
        for info in shards:
            _relative(info["file"], where)
            if "ids_file" in info:
                _relative(info["ids_file"], where)
            if not isinstance(info["count"], int) or not isinstance(info["sha256"], str):
                raise ValueError("a shard without a count or a checksum")
            if (info["id_min"] is None) != (info["id_max"] is None):
                raise ValueError("a shard with half an id range")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{where}: cannot read {_MANIFEST} ({e})") from None
    return manifest  # type: ignore[no-any-return]


class _ShardServer:
    """A shard in a Ray actor: fetches its files (local, or a verified download for a URL), checks their checksums,
    loads the index (mmap where asked) and answers searches in global ids."""

    def __init__(self, folder: _Folder, info: dict[str, Any], kind: str, mmap: bool, threads: int,
                 cache_dir: str) -> None:
        file_path = folder.fetch(info["file"], info["sha256"], cache_dir)
        self.threads = threads
        cls = _SHARD_CLASSES[kind]
        self.index: Any = cls.load(os.path.dirname(file_path) if kind == "MultiVectorIndex" else file_path,
                                   mmap=mmap)
        if len(self.index) != info["count"]:
            raise ValueError(f"{file_path}: {len(self.index)} rows where {_MANIFEST} says {info['count']}")
        self.gids: npt.NDArray[np.int64] | None = None
        if "ids_file" in info:
            ids_path = folder.fetch(info["ids_file"], info["ids_sha256"], cache_dir)
            self.gids = np.load(ids_path)
            if self.gids.shape != (len(self.index),) or self.gids.dtype != np.int64:
                raise ValueError(f"{ids_path}: {self.gids.shape} {self.gids.dtype} ids for {len(self.index)} rows")
            self.order = np.argsort(self.gids, kind="stable")
            self.sorted_gids = self.gids[self.order]

    def ready(self) -> bool:
        return True

    def search(self, queries: Any, k: int, allowed: npt.NDArray[np.int64] | None,
               kwargs: dict[str, Any]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        kwargs = {"threads": self.threads, **kwargs}
        if allowed is not None:
            if self.gids is None:
                kwargs["filter"] = allowed
            elif not len(self.order):
                kwargs["filter"] = np.zeros(0, np.int64)
            else:  # global ids -> positions
                pos = np.minimum(np.searchsorted(self.sorted_gids, allowed), len(self.order) - 1)
                kwargs["filter"] = self.order[pos[self.sorted_gids[pos] == allowed]]
        scores, ids = self.index.search(queries, k, **kwargs)
        if self.gids is not None:
            ids = np.where(ids >= 0, self.gids[np.maximum(ids, 0)], -1)
        return scores, ids


def _kill_all(ray: Any, actors: list[list[Any]]) -> None:
    for group in actors:
        for a in group:
            ray.kill(a)


class ShardedIndex:
    """Search over the shards of ``build_shards``, one Ray actor per shard and replica (see the module docstring).
    Results equal one index over all the rows wherever each shard's search is exact (PQIndex's exact ADC with a
    shared quantizer, HNSW with ef >= its shard's size, IVF-PQ with nprobe = nlist, MultiVectorIndex with candidates
    >= its shard's size)."""

    def __init__(self, path: str, manifest: dict[str, Any], actors: list[list[Any]]) -> None:
        self.path, self.manifest, self._actors = path, manifest, actors
        self._turn = 0
        self._id_bound = 1 + max((int(info["id_max"]) for info in manifest["shards"] if info["id_max"] is not None),
                                 default=-1)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, num_replicas: int = 1, mmap: bool = True, num_cpus: float = 0,
             threads: int | None = None, max_restarts: int = 3, max_task_retries: int = 3, timeout: float = 300.0,
             cache_dir: str | os.PathLike[str] | None = None) -> ShardedIndex:
        """Start the shard actors (``num_replicas`` per shard) and wait until every one has checked and loaded its
        file: a missing, corrupted or foreign shard raises ValueError here. ``num_cpus``: CPUs each actor reserves
        (default 0: Ray places shards wherever there is memory, as its actors' default); each actor's searches run
        ``threads`` simkern threads (default: its reserved CPUs, at least 1). Actors that cannot be placed within
        ``timeout`` seconds raise RuntimeError. ``cache_dir``: where actors keep the shards they download when
        ``path`` is a URL (default: ``simkern-shards`` in the temporary folder of their node)."""
        _ray_data()  # ImportError naming the extra when Ray is missing
        ray: Any = importlib.import_module("ray")
        folder = _Folder(path)
        try:
            data = folder.read_manifest()
        except OSError as e:
            raise ValueError(f"{folder.url}: cannot read {_MANIFEST} ({e})") from None
        manifest = _parse_manifest(data, folder.url)
        kind, shards = manifest["kind"], manifest["shards"]
        num_replicas = positive_int(num_replicas, "num_replicas")
        cache = os.fspath(cache_dir) if cache_dir is not None else os.path.join(tempfile.gettempdir(),
                                                                                "simkern-shards")
        server = ray.remote(_ShardServer)
        per_actor = _worker_threads(_cpus_arg(num_cpus, zero_ok=True), threads)
        actors = [[server.options(num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=max_task_retries)
                   .remote(folder, info, kind, mmap, per_actor, cache) for _ in range(num_replicas)]
                  for info in shards]
        try:
            ray.get([a.ready.remote() for group in actors for a in group], timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            _kill_all(ray, actors)
            raise RuntimeError(f"{folder.url}: the shard actors did not start within {timeout} s (not enough cluster "
                               f"resources for {len(shards) * num_replicas} actors of {num_cpus} CPUs?)") from None
        except Exception as e:  # noqa: BLE001 - a shard that failed to load: the cause, as ValueError
            _kill_all(ray, actors)
            cause = getattr(e, "cause", None) or e
            raise ValueError(f"{folder.url}: a shard failed to load: {cause}") from None
        return cls(folder.url, manifest, actors)

    def close(self) -> None:
        """Stop the shard actors."""
        _kill_all(importlib.import_module("ray"), self._actors)
        self._actors = []

    def __enter__(self) -> ShardedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return sum(int(info["count"]) for info in self.manifest["shards"])

    @property
    def kind(self) -> str:
        """The shards' index class name."""
        return str(self.manifest["kind"])

    def search(self, queries: Any, k: int = 10, *, filter: npt.ArrayLike | None = None,
               **search_kwargs: Any) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The ``k`` best ``(scores, ids)`` over every shard, merged by score then id; fewer than ``k``: ids -1.
        ``queries``: float32 ``(n, dim)`` rows, or token sets (a Ragged, a list of 2-D arrays) for MultiVectorIndex
        shards. ``filter``: allowed ids (an array of ids or a mask over ids; sent only to the shards whose id range
        holds one; not for MultiVectorIndex, whose search takes no filter). ``search_kwargs`` go to each shard's
        ``search`` (``ef=``, ``nprobe=``, ``rerank=``, ``candidates=``, ``threads=``)."""
        ray = importlib.import_module("ray")
        if not self._actors:
            raise ValueError("this ShardedIndex is closed")
        k = positive_int(k, "k")
        q: Any
        dim = int(self.manifest["dim"])
        if self.kind == "MultiVectorIndex":
            q = as_ragged(queries, "queries")
            nq, q_dim = len(q), q.dim
        else:
            q = np.ascontiguousarray(queries, dtype=np.float32)
            if q.ndim != 2:
                raise ValueError(f"queries must be 2-D (n, dim), got shape {q.shape}")
            nq, q_dim = q.shape
        if q_dim != dim:  # here, rather than in every shard (whose error would come wrapped in Ray's)
            raise ValueError(f"queries must have dim {dim}, got dim {q_dim}")
        allowed: npt.NDArray[np.int64] | None = None
        if filter is not None:
            if self.kind == "MultiVectorIndex":
                raise TypeError("filter is not supported by MultiVectorIndex shards (MultiVectorIndex.search takes "
                                "no filter)")
            mask, ids = filter_arg(filter, self._id_bound)
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
            refs.append(actor.search.remote(q, k, shard_allowed, search_kwargs))
        smaller = self.manifest["metric"] == "l2"
        if not refs:
            pad = np.inf if smaller else -np.inf
            return np.full((nq, k), pad, np.float32), np.full((nq, k), -1, np.int64)
        parts = ray.get(refs)
        return _merge_top_k([p[0] for p in parts], [p[1] for p in parts], k, smaller)


def _merge_top_k(scores_parts: list[npt.NDArray[np.float32]], ids_parts: list[npt.NDArray[np.int64]], k: int,
                 smaller: bool) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The ``k`` best of the shards' ``(nq, k)`` results (each padded with id -1 to k, as every index pads):
    padding last, then by score (ascending where ``smaller``), then id. Independent of the order of the parts."""
    scores = np.concatenate(scores_parts, axis=1)
    ids = np.concatenate(ids_parts, axis=1)
    key = np.where(ids < 0, np.inf, scores if smaller else -scores.astype(np.float64))
    order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), key), axis=1)[:, :k]
    return (np.take_along_axis(scores, order, 1).astype(np.float32, copy=False),
            np.take_along_axis(ids, order, 1))
