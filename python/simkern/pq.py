"""Product quantization: codebook training, codes, distance tables and exact float ADC.

``ProductQuantizer(dim, m, nbits=8, metric="l2")`` splits vectors into ``m`` subvectors of ``dsub = dim / m``
coordinates and quantises each with its own codebook of ``ksub = 2**nbits`` centroids (nbits 8 or 4).

- Codebooks are float32 ``(m, ksub, dsub)``, FAISS's layout (``faiss.vector_to_array(pq.centroids)`` reshaped),
  and nanopq's ``codewords``; :meth:`ProductQuantizer.from_codebooks` adopts codebooks trained elsewhere.
- Codes are uint8 ``(n, code_size)``: one byte per subspace for 8 bits; for 4 bits two codes per byte, subspace
  ``2i`` in the low nibble of byte ``i`` (FAISS's packing), ``code_size = ceil(m / 2)``.
- Distances to centroids are summed in coordinate order with a rounding after every operation (no FMA), so codes,
  tables and trained codebooks are bit-identical on every ISA and for any thread count.

Inputs must be float32, C-contiguous, finite; nothing is converted silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._enums import METRICS, PQ_INITS, PQ_METRICS, choice
from ._validate import (
    check_out_aligned,
    deprecated_alias,
    float32_rows,
    int_arg,
    into_out,
    out_array,
    positive_int,
    seed_arg,
    state_array,
    state_dict,
    threads_arg,
)

__all__ = ["ProductQuantizer"]

_METRICS, _INITS = METRICS, PQ_INITS  # the shared tables (metric codes are in the PQIndex header)


class ProductQuantizer:
    """Product quantizer with ``m`` subspaces of ``2**nbits`` centroids each (see the module docstring)."""

    def __init__(self, dim: int, m: int, nbits: int = 8, metric: str = "l2") -> None:
        dim, m = positive_int(dim, "dim"), positive_int(m, "m")
        if dim % m != 0:
            raise ValueError(f"dim ({dim}) must be a multiple of m ({m})")
        if isinstance(nbits, bool) or nbits not in (4, 8):
            raise ValueError(f"nbits must be 8 or 4, got {nbits!r}")
        metric = choice(metric, "metric", PQ_METRICS)
        self.dim, self.m, self.nbits, self.metric = dim, m, int(nbits), metric
        self._codebooks: npt.NDArray[np.float32] | None = None
        self._ct: npt.NDArray[np.float32] | None = None  # (m, dsub, ksub): the layout the kernels read

    # -- properties --------------------------------------------------------------------------------------------
    @property
    def ksub(self) -> int:
        return 1 << self.nbits

    @property
    def dsub(self) -> int:
        return self.dim // self.m

    @property
    def code_size(self) -> int:
        """Bytes per code: m for 8 bits, ceil(m / 2) for 4 bits."""
        return self.m if self.nbits == 8 else (self.m + 1) // 2

    @property
    def is_trained(self) -> bool:
        return self._codebooks is not None

    @property
    def codebooks(self) -> npt.NDArray[np.float32]:
        """float32 ``(m, ksub, dsub)`` (read-only view)."""
        cb = self._require_trained()
        view: npt.NDArray[np.float32] = cb.view()
        view.flags.writeable = False
        return view

    def __repr__(self) -> str:
        state = "trained" if self.is_trained else "untrained"
        return (f"ProductQuantizer(dim={self.dim}, m={self.m}, nbits={self.nbits}, metric={self.metric!r}, "
                f"{state})")

    def __getstate__(self) -> dict[str, Any]:
        return {"dim": self.dim, "m": self.m, "nbits": self.nbits, "metric": self.metric,
                "codebooks": self._codebooks}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = state_dict(state, ("dim", "m", "nbits", "metric", "codebooks"), "ProductQuantizer")
        self.__init__(state["dim"], state["m"], state["nbits"], state["metric"])  # type: ignore[misc]  # unpickling
        if state["codebooks"] is not None:
            self._set_codebooks(state_array(state["codebooks"], "codebooks", np.float32,
                                            (self.m, self.ksub, self.dsub)))

    # -- training ----------------------------------------------------------------------------------------------
    @classmethod
    def from_codebooks(cls, codebooks: npt.NDArray[np.float32], metric: str = "l2") -> ProductQuantizer:
        """Adopt codebooks trained elsewhere: float32 ``(m, ksub, dsub)`` with ksub 256 or 16 (copied)."""
        if not isinstance(codebooks, np.ndarray) or codebooks.dtype != np.float32:
            raise TypeError("codebooks must be a float32 numpy array of shape (m, ksub, dsub)")
        if codebooks.ndim != 3 or codebooks.shape[1] not in (16, 256) or 0 in codebooks.shape:
            raise ValueError(f"codebooks must have shape (m, ksub, dsub) with ksub 256 or 16, got {codebooks.shape}")
        if not np.isfinite(codebooks).all():
            raise ValueError("codebooks contain NaN or inf")
        m, ksub, dsub = codebooks.shape
        pq = cls(m * dsub, m, 8 if ksub == 256 else 4, metric)
        pq._set_codebooks(np.array(codebooks, dtype=np.float32, order="C"))
        return pq

    def train(self, x: npt.NDArray[np.float32], *, iters: int = 25, seed: int = 0, max_train_points: int | None = None,
            init: str = "kmeans++", threads: int | None = None) -> ProductQuantizer:
        """Train one k-means per subspace on ``x`` (float32 ``(n, dim)``, n >= ksub).

        ``max_train_points``: train on that many rows sampled without replacement (seeded). ``init``:
        ``"kmeans++"`` (D^2 seeding on a seeded sample of at most 32 * ksub rows) or ``"random"`` (ksub distinct
        rows). The assignment step uses |c|^2/2 - x.c with fused multiply-adds (ties: lowest centroid). Empty clusters
        are re-seeded with the farthest point. The result depends
        only on the data, ``seed`` and the options - not on the thread count or the ISA. Returns ``self``.
        """
        x = float32_rows(x, self.dim, "x")
        iters = int_arg(iters, "iters", 0)
        init = choice(init, "init", _INITS)
        seed = seed_arg(seed)
        if max_train_points is not None:
            max_train_points = positive_int(max_train_points, "max_train_points")
            if max_train_points < x.shape[0]:
                rows = np.random.default_rng(seed).choice(x.shape[0], max_train_points, replace=False)
                x = np.ascontiguousarray(x[np.sort(rows)])
        if x.shape[0] < self.ksub:
            raise ValueError(f"train needs at least ksub = {self.ksub} training vectors, got {x.shape[0]}")
        codebooks = _core._pq_train(x, self.m, self.ksub, int(iters), seed, _INITS[init],
                                    threads_arg(threads))
        self._set_codebooks(codebooks)
        return self

    def fit(self, *args: Any, **kwargs: Any) -> ProductQuantizer:
        """Deprecated alias of :meth:`train` (every family trains with ``train``; docs/API.md)."""
        deprecated_alias("ProductQuantizer.fit", "train")
        return self.train(*args, **kwargs)

    # -- codes -------------------------------------------------------------------------------------------------
    def encode(self, x: npt.NDArray[np.float32], *, threads: int | None = None,
               out: npt.NDArray[np.uint8] | None = None) -> npt.NDArray[np.uint8]:
        """uint8 ``(n, code_size)``: the nearest centroid per subspace (ties: lowest index). ``out``: write into
        this array instead (docs/API.md)."""
        self._require_trained()
        x = float32_rows(x, self.dim, "x")
        dest = out_array(out, (x.shape[0], self.code_size), np.uint8, (x,))
        # _ct is set with _codebooks, which _require_trained() just checked
        if self.nbits == 8:
            return _core._pq_encode(x, self._ct, threads_arg(threads), dest)  # type: ignore[arg-type]
        codes = _core._pq_encode(x, self._ct, threads_arg(threads))  # type: ignore[arg-type]
        return into_out(self._pack4(codes), dest)

    def decode(self, codes: npt.NDArray[np.uint8], *,
               out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        """float32 ``(n, dim)``: the concatenated centroids of each code. ``out``: write into this array instead."""
        cb = self._require_trained()
        unpacked = self._unpack(codes)
        dest = out_array(out, (unpacked.shape[0], self.dim), np.float32, (codes,))
        vectors = cb[np.arange(self.m)[None, :], unpacked]  # (n, m, dsub)
        return into_out(np.ascontiguousarray(vectors.reshape(unpacked.shape[0], self.dim)), dest)

    # -- distances ---------------------------------------------------------------------------------------------
    def distance_tables(self, queries: npt.NDArray[np.float32], *, threads: int | None = None,
                        out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        """float32 ``(n_queries, m, ksub)``: squared L2 from each query subvector to each centroid, or inner
        products for ``metric="ip"``. ``out``: write into this float32 C-contiguous array of that shape (not
        overlapping ``queries``) and return it, instead of allocating."""
        self._require_trained()
        q = float32_rows(queries, self.dim, "queries")
        if out is not None and isinstance(out, np.ndarray) and np.may_share_memory(out, q):
            raise ValueError("out must not overlap queries")
        check_out_aligned(out)
        return self._tables_checked(q, threads_arg(threads), out)

    def _tables_checked(self, q: npt.NDArray[np.float32], core_threads: int,
                        out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        """distance_tables of queries the caller checked (float32 rows of dim, finite), on a trained quantizer,
        ``core_threads`` resolved (internal path: no second check)."""
        # _ct is set with _codebooks, which the callers' trained check covers
        return _core._pq_tables(q, self._ct, _METRICS[self.metric], core_threads, out)  # type: ignore[arg-type]

    def adc(self, queries: npt.NDArray[np.float32], codes: npt.NDArray[np.uint8], *,
            threads: int | None = None, out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        """float32 ``(n_queries, n)``: asymmetric distances (table sums in subspace order, exact float):
        approximate squared L2 for ``"l2"``, approximate inner product for ``"ip"``. ``out``: write into this
        array instead (docs/API.md)."""
        tables = self.distance_tables(queries, threads=threads)
        unpacked = self._unpack(codes)
        dest = out_array(out, (tables.shape[0], unpacked.shape[0]), np.float32, (queries, codes))
        return _core._pq_adc(tables, unpacked, threads_arg(threads), dest)

    # -- helpers -----------------------------------------------------------------------------------------------
    def _require_trained(self) -> npt.NDArray[np.float32]:
        if self._codebooks is None:
            raise ValueError("the ProductQuantizer is not trained: call train() or use from_codebooks()")
        return self._codebooks

    def _set_codebooks(self, codebooks: npt.NDArray[np.float32]) -> None:
        expected = (self.m, self.ksub, self.dsub)
        if codebooks.shape != expected:
            raise ValueError(f"codebooks must have shape {expected}, got {codebooks.shape}")
        self._codebooks = codebooks
        self._ct = _core._pq_transpose(codebooks)

    def _unpack(self, codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """Validated codes as uint8 ``(n, m)``, one code per byte."""
        if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8:
            raise TypeError("codes must be a uint8 numpy array of shape (n, code_size)")
        if codes.ndim != 2 or codes.shape[1] != self.code_size:
            raise ValueError(f"codes must have shape (n, {self.code_size}), got {codes.shape}")
        if self.nbits == 8:
            return np.ascontiguousarray(codes)
        unpacked = np.empty((codes.shape[0], 2 * self.code_size), dtype=np.uint8)
        unpacked[:, 0::2] = codes & 0x0F
        unpacked[:, 1::2] = codes >> 4
        if self.m % 2 and codes.shape[0] and (unpacked[:, -1] != 0).any():
            raise ValueError("codes: the unused high nibble of the last byte must be 0 (odd m)")
        return np.ascontiguousarray(unpacked[:, : self.m])

    def _pack4(self, codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        if self.m % 2:
            codes = np.concatenate([codes, np.zeros((codes.shape[0], 1), np.uint8)], axis=1)
        return np.ascontiguousarray(codes[:, 0::2] | (codes[:, 1::2] << 4))
