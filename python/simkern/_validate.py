"""Argument checks shared by the Python wrappers. Messages name the argument and what was expected."""

from __future__ import annotations

import numbers

import numpy as np

try:  # ml_dtypes is a runtime dependency; keep the import local to one place
    from ml_dtypes import bfloat16 as _bfloat16
except ImportError:  # pragma: no cover - ml_dtypes is required by pyproject
    _bfloat16 = None

BFLOAT16 = np.dtype(_bfloat16) if _bfloat16 is not None else None


def threads_arg(threads) -> int:
    """None -> 0 (the configured default), else an int >= 1."""
    if threads is None:
        return 0
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, numbers.Integral):
        raise TypeError(f"threads must be an int >= 1 or None, got {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1 (or None for the default), got {threads}")
    return int(threads)


def int_arg(value, name: str, low: int, high: int | None = None) -> int:
    """An int (Python or NumPy integer, not bool) in [low, high]; TypeError / ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value


def positive_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def int64_vector(x, name: str) -> np.ndarray:
    """A 1-D integer array-like as a C-contiguous int64 array (converted from other integer types)."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def float32_rows(x, dim: int, name: str, *, allow_vector: bool = False) -> np.ndarray:
    """A float32 C-contiguous ``(n, dim)`` array of finite values, returned as is (a 1-D ``(dim,)`` array is viewed
    as one row when ``allow_vector``); anything else raises TypeError/ValueError naming ``name``."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of shape (n, {dim}), got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {x.dtype}; convert with .astype(numpy.float32)")
    if allow_vector and x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; use numpy.ascontiguousarray({name})")
    if x.size and not np.isfinite(x).all():
        row = int(np.argmin(np.isfinite(x).all(axis=1)))
        raise ValueError(f"{name} contains NaN or inf (row {row})")
    return x
