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
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from ._validate import int_arg
from .fde import FDE
from .pq import ProductQuantizer
from .ragged import Ragged

__all__ = ["encode_fde", "encode_pq"]


def _ray_data() -> Any:
    """The ``ray.data`` module, or ImportError naming the extra."""
    try:
        return importlib.import_module("ray.data")
    except ImportError as e:
        raise ImportError("simkern.distributed needs Ray Data: pip install 'simkern[ray]'") from e


def _worker_threads(num_cpus: float, threads: int | None) -> int:
    """simkern threads per worker: ``threads`` if given, else the CPUs the worker reserved from Ray (at least 1)."""
    if threads is not None:
        return int_arg(threads, "threads", 1)
    return max(1, int(math.floor(num_cpus)))


def _map_kwargs(num_cpus: float, concurrency: int | tuple[int, int] | None, batch_size: int) -> dict[str, Any]:
    """The map_batches arguments shared by the encoders: numpy batches, an actor pool of ``concurrency`` workers
    (an int, or (min, max) to autoscale; default: as many as the cluster's CPUs allow at ``num_cpus`` each)."""
    rd = _ray_data()
    if not isinstance(num_cpus, (int, float)) or isinstance(num_cpus, bool) or not num_cpus > 0:
        raise ValueError(f"num_cpus must be a number > 0, got {num_cpus!r}")
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
