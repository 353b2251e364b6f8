"""OPQ: an orthogonal rotation learned so that product quantization of the rotated vectors loses less.

Non-parametric OPQ (Ge et al. 2013), as in FAISS's OPQMatrix and nanopq: start from the identity; alternate
(1) a product-quantizer fit on the rotated training vectors (a few k-means iterations) and (2) the orthogonal
Procrustes solution R = U V^T of X^T Y = U S V^T, where Y are the reconstructions; then fit the final quantizer.
The rotation is float32 (dim, dim) with orthonormal columns; vectors are rotated as x @ R. Rotations preserve
L2 distances and inner products, so both metrics work unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._validate import (
    deprecated_alias,
    derived_seed,
    float32_rows,
    int_arg,
    out_array,
    positive_int,
    seed_arg,
    state_array,
    state_dict,
)
from .pq import ProductQuantizer

__all__ = ["OPQ"]


class OPQ:
    """Rotation + product quantizer. ``iters`` alternations of ``pq_iters`` k-means iterations each."""

    def __init__(self, dim: int, m: int, nbits: int = 8, metric: str = "l2", *, iters: int = 20,
                 pq_iters: int = 4) -> None:
        self.pq = ProductQuantizer(dim, m, nbits, metric)
        self.iters, self.pq_iters = int_arg(iters, "iters", 0), int_arg(pq_iters, "pq_iters", 0)
        self.rotation = np.eye(dim, dtype=np.float32)

    @property
    def dim(self) -> int:
        return self.pq.dim

    @property
    def is_trained(self) -> bool:
        return self.pq.is_trained

    def __repr__(self) -> str:
        return (f"OPQ(dim={self.dim}, m={self.pq.m}, nbits={self.pq.nbits}, metric={self.pq.metric!r}, "
                f"iters={self.iters}, {'trained' if self.is_trained else 'untrained'})")

    def train(self, x: npt.NDArray[np.float32], *, pq_final_iters: int = 25, seed: int = 0,
            max_train_points: int | None = None, threads: int | None = None) -> OPQ:
        """Learn the rotation on ``x`` (float32 (n, dim)), then train the quantizer on ``x @ rotation``."""
        x = float32_rows(x, self.dim, "x")
        pq_final_iters = int_arg(pq_final_iters, "pq_final_iters", 0)
        seed = seed_arg(seed)
        if max_train_points is not None:
            max_train_points = positive_int(max_train_points, "max_train_points")
            if max_train_points < x.shape[0]:
                rows = np.random.default_rng(seed).choice(x.shape[0], max_train_points, replace=False)
                x = np.ascontiguousarray(x[np.sort(rows)])
        x64 = x.astype(np.float64)
        rotation = np.eye(self.dim)
        for it in range(self.iters):
            rotated = np.ascontiguousarray((x64 @ rotation).astype(np.float32))
            pq = ProductQuantizer(self.dim, self.pq.m, self.pq.nbits, self.pq.metric)
            pq.train(rotated, iters=self.pq_iters, seed=derived_seed(seed, it), threads=threads)
            recon = pq.decode(pq.encode(rotated, threads=threads)).astype(np.float64)
            u, _, vt = np.linalg.svd(x64.T @ recon)
            rotation = u @ vt
        self.rotation = np.ascontiguousarray(rotation.astype(np.float32))
        self.pq.train(self.rotate(x), iters=pq_final_iters, seed=seed, threads=threads)
        return self

    def fit(self, *args: Any, **kwargs: Any) -> OPQ:
        """Deprecated alias of :meth:`train` (every family trains with ``train``; docs/API.md)."""
        deprecated_alias("OPQ.fit", "train")
        return self.train(*args, **kwargs)

    def _rotate_checked(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``x @ rotation`` for rows already checked by the caller (internal path: no second check)."""
        return np.ascontiguousarray(x @ self.rotation)

    def rotate(self, x: npt.NDArray[np.float32], *,
               out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        """float32 ``x @ rotation``. ``out``: write into this array instead (docs/API.md)."""
        x = float32_rows(x, self.dim, "x")
        dest = out_array(out, x.shape, np.float32, (x,))
        if dest is None:
            return np.ascontiguousarray(x @ self.rotation)
        return np.matmul(x, self.rotation, out=dest)

    # The quantizer's calls on rotated inputs; ``out`` as in ProductQuantizer.
    def encode(self, x: npt.NDArray[np.float32], *, threads: int | None = None,
               out: npt.NDArray[np.uint8] | None = None) -> npt.NDArray[np.uint8]:
        return self.pq.encode(self.rotate(x), threads=threads, out=out)

    def decode(self, codes: npt.NDArray[np.uint8], *,
               out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        """Reconstructions in the original space: decode, then rotate back (x_hat @ rotation.T)."""
        decoded = self.pq.decode(codes)
        dest = out_array(out, decoded.shape, np.float32, (codes,))
        if dest is None:
            return np.ascontiguousarray(decoded @ self.rotation.T)
        return np.matmul(decoded, self.rotation.T, out=dest)

    def distance_tables(self, queries: npt.NDArray[np.float32], *, threads: int | None = None,
                        out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        return self.pq.distance_tables(self.rotate(queries), threads=threads, out=out)

    def adc(self, queries: npt.NDArray[np.float32], codes: npt.NDArray[np.uint8], *,
            threads: int | None = None, out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        return self.pq.adc(self.rotate(queries), codes, threads=threads, out=out)

    def __getstate__(self) -> dict[str, Any]:
        return {"pq": self.pq.__getstate__(), "iters": self.iters, "pq_iters": self.pq_iters,
                "rotation": self.rotation}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = state_dict(state, ("pq", "iters", "pq_iters", "rotation"), "OPQ")
        self.pq = ProductQuantizer.__new__(ProductQuantizer)
        self.pq.__setstate__(state["pq"])
        self.iters, self.pq_iters = int_arg(state["iters"], "iters", 0), int_arg(state["pq_iters"], "pq_iters", 1)
        self.rotation = state_array(state["rotation"], "rotation", np.float32, (self.pq.dim, self.pq.dim))
