"""Randomized linear algebra: the fast Walsh-Hadamard transform (sketches and sketched least squares follow).

    y = simkern.fwht(x)                     # H_n @ x along axis 0 (n a power of two), unnormalised
    y = simkern.fwht(x, axis=1, normalize=True)
    simkern.fwht(x, out=x)                  # in place

``fwht`` computes the Sylvester-ordered Hadamard transform (``scipy.linalg.hadamard(n) @ x``) with log2(n)
butterfly passes in a fixed order, cache-blocked, SIMD along the other axes, multi-threaded (``threads=``); the
result is bit-identical for every thread count and ISA. float32 and float64 are computed in their own precision.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._validate import threads_arg

__all__ = ["fwht"]


def fwht(x, *, axis: int = 0, normalize: bool = False, out: np.ndarray | None = None,
         threads: int | None = None) -> np.ndarray:
    """Walsh-Hadamard transform of ``x`` (float32 or float64) along ``axis`` (length a power of two).

    ``normalize=True`` scales by 1/sqrt(n) (the transform is then orthonormal and its own inverse). Returns a new
    array, or ``out`` (same shape and dtype as ``x``; ``out=x`` transforms in place). Non-finite values raise
    ValueError."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension")
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis must be an int in [{-x.ndim}, {x.ndim}), got {axis!r}")
    axis = int(axis) % x.ndim
    n = x.shape[axis]
    if n < 1 or n & (n - 1):
        raise ValueError(f"x.shape[{axis}] must be a power of two, got {n}")
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    threads = threads_arg(threads)
    if x.size and not np.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    if out is not None:
        if not isinstance(out, np.ndarray) or out.dtype != x.dtype or out.shape != x.shape:
            raise ValueError(f"out must be a {x.dtype} array of shape {x.shape}")
        if not out.flags.writeable:
            raise ValueError("out must be writeable")
    kernel = _core._fwht_f32 if x.dtype == np.float32 else _core._fwht_f64
    rest = int(np.prod(x.shape[:axis] + x.shape[axis + 1:], dtype=np.int64))
    target = out if out is not None else np.empty_like(x, order="C")
    view = np.moveaxis(target, axis, 0)
    if view.flags.c_contiguous:  # transform in the result's own memory
        if target is not x:
            np.copyto(target, x)
        if x.size:
            kernel(view.reshape(n, rest), bool(normalize), threads)
        return target
    work = np.moveaxis(x, axis, 0).copy(order="C")  # one temporary: the axis first, C order
    if x.size:
        kernel(work.reshape(n, rest), bool(normalize), threads)
    np.copyto(view, work)
    return target
