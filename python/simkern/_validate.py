"""Argument checks shared by the Python wrappers. Messages name the argument and what was expected."""

from __future__ import annotations

import contextlib
import hashlib
import numbers
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any, TypeGuard, TypeVar

import numpy as np
import numpy.typing as npt

_A = TypeVar("_A", bound="npt.NDArray[Any]")


# bfloat16 is ml_dtypes' dtype. Importing ml_dtypes costs ~0.6 s (0.7.0 with NumPy 2.4: it registers its dtypes and
# casts), four times the rest of `import simkern`, so it is imported only where simkern makes a bfloat16 array
# itself. An array that already has that dtype was made by ml_dtypes, so recognising one needs no import.
def is_bfloat16(dtype: np.dtype[Any]) -> bool:
    """Whether ``dtype`` is ``ml_dtypes.bfloat16`` (without importing ml_dtypes)."""
    module = sys.modules.get("ml_dtypes")
    return module is not None and dtype == module.bfloat16


def bfloat16_dtype() -> np.dtype[Any]:
    """``numpy.dtype(ml_dtypes.bfloat16)``, importing ml_dtypes (a runtime dependency) on first use."""
    from ml_dtypes import bfloat16

    dtype: np.dtype[Any] = np.dtype(bfloat16)
    return dtype


BFLOAT16_MAX = (2 - 2**-7) * 2.0**127  # largest finite bfloat16: ml_dtypes.finfo(bfloat16).max


# Integer arguments that reach C++ as int (counts, sizes, beam widths) are bounded here, so that an absurd value
# raises ValueError naming the argument instead of a pybind11 "incompatible function arguments" TypeError.
INT32_MAX = 2**31 - 1
MAX_THREADS = 1024  # the pool's own limit (csrc/runtime/thread_pool.cpp): larger requests are clamped to it

# User ids of every index: 0 <= id <= MAX_ID. -1 is the padding of search results; 2**63 - 1 is kept free so
# that the next default id (largest + 1) always fits in int64.
MAX_ID = 2**63 - 2


def threads_arg(threads: int | None) -> int:
    """None -> 0 (every thread of the pool), else an int >= 1 (values above 1024 are clamped to 1024)."""
    if threads is None:
        return 0
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, numbers.Integral):
        raise TypeError(f"threads must be an int >= 1 or None, got {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1 (or None for the default), got {threads}")
    return int(min(threads, MAX_THREADS))


def int_arg(value: object, name: str, low: int, high: int | None = INT32_MAX) -> int:
    """An int (Python or NumPy integer, not bool) in [low, high]; TypeError / ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < low or (high is not None and value > high):
        if high is None or (high == INT32_MAX and value < low):
            rng = f">= {low}"
        elif high == INT32_MAX:  # the bound of a C int, not of the argument's meaning
            rng = f"<= {INT32_MAX} (2**31 - 1)"
        else:
            rng = f"in {low}..{high}"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value


SEED_LIMIT = 2**64  # seeds of every family are ints in [0, 2**64) (a uint64 in C++)


def seed_arg(seed: int, name: str = "seed", limit: int = SEED_LIMIT) -> int:
    """A seed: an int (Python or NumPy integer, not bool) in [0, limit): TypeError for anything else, ValueError
    out of range. Every family takes its seeds through here (docs/API.md); ``limit`` is narrower only where a
    reference fixes the width (FDE: the reference's 32-bit seed)."""
    bound = "2**64" if limit == SEED_LIMIT else f"2**{limit.bit_length() - 1}"
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int in [0, {bound}), got {type(seed).__name__}")
    if not 0 <= seed < limit:
        raise ValueError(f"{name} must be in [0, {bound}), got {seed}")
    return int(seed)


def deprecated_alias(old: str, new: str) -> None:
    """Warn once per call site that ``old`` is a deprecated alias of ``new`` (kept for one release)."""
    warnings.warn(f"{old} is deprecated: use {new} (same arguments); see docs/API.md", DeprecationWarning,
                  stacklevel=3)


def derived_seed(seed: int, offset: int) -> int:
    """The seed of an inner step (``seed + offset``), wrapped into [0, 2**64) as a uint64 sum would be."""
    return (seed + offset) % SEED_LIMIT


def positive_int(value: object, name: str, high: int | None = INT32_MAX) -> int:
    """An int in [1, high] (default: what a C int holds)."""
    return int_arg(value, name, 1, high)


def beyond_int64(x: object, arr: npt.NDArray[Any]) -> bool:
    """True when ``x`` (``arr = np.asarray(x)``) holds integers that NumPy could not put in an integer array: Python
    ints beyond int64 (then ``arr`` is object, or float64 for a list like ``[0, 2**63]``), or uint64 values >= 2**63."""
    if arr.dtype == np.uint64:
        return bool(arr.size) and int(arr.max()) > 2**63 - 1
    if arr.dtype.kind not in "fO" or not arr.size or (isinstance(x, np.ndarray) and arr.dtype != object):
        return False
    values = np.asarray(x, dtype=object).ravel()
    return all(isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in values)


def int64_vector(x: object, name: str) -> npt.NDArray[np.int64]:
    """A 1-D integer array-like as a C-contiguous int64 array (converted from other integer types); values that
    int64 cannot hold raise ValueError (never a silent wrap-around)."""
    arr = np.asarray(x)
    if beyond_int64(x, arr):
        raise ValueError(f"{name} holds integers outside the int64 range")
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.int64)
    return out if out.flags.aligned else out.copy()  # a view at an odd byte offset: C++ loads whole int64s


def id_vector(x: object, name: str = "ids") -> npt.NDArray[np.int64]:
    """User ids of an index: a 1-D int64 array with every value in 0..MAX_ID (ValueError otherwise)."""
    ids = int64_vector(x, name)
    if ids.size:
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high > MAX_ID:
            bad = low if low < 0 else high
            raise ValueError(f"{name} must lie in 0..2**63-2 (-1 is the padding of results), got {bad}")
    return ids


def filter_arg(
    filter: object, id_bound: int, name: str = "filter"
) -> tuple[npt.NDArray[np.uint8] | None, npt.NDArray[np.int64] | None]:
    """The one filter rule of every index (docs/API.md). ``filter`` is None (every id), a boolean mask with exactly
    ``id_bound`` entries (``mask[id]``, ids 0..id_bound-1: ``index.id_bound``), or a 1-D array of allowed ids (each
    in 0..2**63-2; an id not in the index matches nothing). An empty list or array (any dtype) allows none. Returns
    ``(mask, None)``
    with the mask as uint8, ``(None, ids)`` with int64 ids, or ``(None, None)``."""
    if filter is None:
        return None, None
    arr = np.asarray(filter)
    if arr.size == 0 and arr.ndim == 1:  # filter=[] of any dtype (an empty mask too): no id allowed
        return None, np.zeros(0, np.int64)
    if arr.dtype == np.bool_:
        if arr.shape != (id_bound,):
            raise ValueError(f"a boolean {name} mask needs exactly one entry per id 0..id_bound-1: shape "
                             f"({id_bound},) for this index (index.id_bound), got shape {arr.shape}; pass an array "
                             f"of ids to allow a subset")
        return np.ascontiguousarray(arr).view(np.uint8), None
    if beyond_int64(filter, arr):
        raise ValueError(f"{name} ids must lie in 0..2**63-2, got integers beyond int64")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be a boolean mask over ids or a 1-D array of allowed ids, got dtype "
                        f"{arr.dtype}")
    return None, id_vector(arr, f"{name} ids")


def is_valid_id(value: object) -> TypeGuard[numbers.Integral]:
    """True for an int that may be an index id (``id in index`` is False for anything else, never an error)."""
    return (not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Integral)
            and 0 <= int(value) <= MAX_ID)


# Vectors stored in or searched against an index: every row's Euclidean norm is at most NORM_LIMIT, so that no
# distance between two such rows (squared L2 <= (2 * 2**62)**2 = 2**126, |inner product| <= 2**124) can
# overflow float32, whatever the summation order. Finite rows beyond it raise ValueError naming the argument.
NORM_LIMIT = 2.0**62


_NORM_CHUNK = 1 << 16  # values per float64 pass of row_norms64 (temporaries ~1 MB: below glibc's mmap threshold)


def row_norms64(x: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """Euclidean norms of the rows of a 2-D float array, computed in float64 (no underflow of 1e-30 rows, no
    overflow of 1e38 ones), a few rows at a time (no float64 copy of a large input)."""
    norms = np.empty(x.shape[0])
    step = max(1, _NORM_CHUNK // max(1, x.shape[1]))
    for a in range(0, x.shape[0], step):
        x64 = x[a:a + step].astype(np.float64, copy=False)
        norms[a:a + step] = np.sqrt(np.einsum("ij,ij->i", x64, x64))
    return norms


def check_norms(x: npt.NDArray[np.floating[Any]], name: str, *, cosine: bool = False) -> None:
    """Refuse rows whose norm exceeds NORM_LIMIT (arithmetic on them could overflow float32), and for cosine rows
    of norm 0. ``x`` is 2-D and finite."""
    if not x.size:
        return
    norms = row_norms64(x)
    big = norms > NORM_LIMIT
    if big.any() and not cosine:  # cosine rows are normalised (in float64) before any arithmetic
        row = int(np.flatnonzero(big)[0])
        raise ValueError(f"{name} row {row} has norm {norms[row]:.3g}, beyond the supported 2**62 (~4.6e18): "
                         f"distances to it could overflow float32")
    if cosine:
        zero = norms == 0
        if zero.any():
            raise ValueError(f"{name} row {int(np.flatnonzero(zero)[0])} is all zeros: cosine is undefined")


def check_no_overlap(out: npt.NDArray[Any], name: str, *inputs: object) -> None:
    """``out=`` must not share memory with any input (the kernels read inputs while writing ``out``)."""
    for arr in inputs:
        if not isinstance(arr, np.ndarray) or not np.may_share_memory(out, arr):  # disjoint address ranges
            continue
        try:
            # numpy's stub types max_work as Literal[-1, 0]; the function takes any bound on the work
            overlap = np.shares_memory(out, arr, max_work=10_000)  # type: ignore[arg-type]
        except np.exceptions.TooHardError:
            overlap = True
        if overlap:
            raise ValueError(f"out must not overlap {name}")


def _new_file_mode(path: str) -> int:
    """The permission bits ``open(path, "w")`` would give: the existing file's, else 0o666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    try:  # Linux: read the umask without changing it (os.umask would race with other threads)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def check_out_aligned(out: object, name: str = "out") -> None:
    """``out=`` arrays are written in place by the kernels, whole elements at a time: a view at an address that is not
    a multiple of its itemsize (e.g. ``np.frombuffer(buf, offset=1)``) is refused."""
    if isinstance(out, np.ndarray) and not out.flags.aligned:
        raise ValueError(f"{name} must be aligned (its address a multiple of its itemsize, {out.itemsize}); "
                         f"pass a fresh array, e.g. numpy.empty(...)")


def out_array(out: object, shape: tuple[int, ...], dtype: npt.DTypeLike, inputs: tuple[object, ...] = (),
              name: str = "out") -> npt.NDArray[Any] | None:
    """The ``out=`` rule of every call (docs/API.md): None, or a numpy array of exactly this dtype and shape,
    C-contiguous, writeable, aligned and sharing no memory with ``inputs``; TypeError / ValueError otherwise."""
    if out is None:
        return None
    want = np.dtype(dtype)
    if not isinstance(out, np.ndarray) or out.dtype != want:
        got = out.dtype if isinstance(out, np.ndarray) else type(out).__name__
        raise TypeError(f"{name} must be a {want} numpy array, got {got}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    check_out_aligned(out, name)
    for arr in inputs:
        if isinstance(arr, np.ndarray) and np.may_share_memory(out, arr):
            raise ValueError(f"{name} must not overlap the inputs")
    return out


def out_pair(out: object, shape: tuple[int, int], inputs: tuple[object, ...] = ()
             ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None:
    """``out=`` of the searches: None or a tuple ``(scores float32, ids int64)``, both of ``shape`` (each as
    ``out_array``)."""
    if out is None:
        return None
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(f"out must be a tuple (scores float32, ids int64), got {type(out).__name__}")
    scores = out_array(out[0], shape, np.float32, inputs, "out[0] (scores)")
    ids = out_array(out[1], shape, np.int64, inputs + (out[0],), "out[1] (ids)")
    assert scores is not None and ids is not None
    return scores, ids


def into_out(result: _A, out: npt.NDArray[Any] | None) -> _A:
    """``result`` written into a checked ``out`` (which is returned), or ``result`` itself without one."""
    if out is None:
        return result
    np.copyto(out, result)
    return out  # type: ignore[return-value]  # out has result's dtype and shape (out_array checked them)


def pair_into_out(result: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
                  out: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None
                  ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """A search's ``(scores, ids)`` written into a checked ``out`` pair (returned), or returned as they are."""
    if out is None:
        return result
    np.copyto(out[0], result[0])
    np.copyto(out[1], result[1])
    return out


def fsync_dir(folder: str) -> None:
    """Make the entries of ``folder`` (a rename into it, new files) durable: fsync of the directory, where the
    platform allows it (Windows cannot open directories; some file systems refuse: best effort there)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks (the manifests' checksums: MultiVectorIndex folders,
    simkern.distributed shards)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> None:
    """Write a file through ``write(f)`` into a uniquely named temporary file beside ``path``, flush it to disk,
    rename it over ``path`` and fsync the folder: readers see the old file or the new one, never a mix, and a crash
    leaves one of the two; two writers never share a
    temporary name; on any error (or KeyboardInterrupt) the temporary file is removed and ``path`` is untouched."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory: save needs a file path")
    folder, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.tmp-", dir=folder)
    try:
        with contextlib.suppress(OSError):  # mkstemp makes 0600 files: give the usual mode (or the old file's)
            os.fchmod(fd, _new_file_mode(path))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(folder)  # the rename itself survives a crash
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def float32_rows(
    x: npt.NDArray[np.float32], dim: int, name: str, *, allow_vector: bool = False
) -> npt.NDArray[np.float32]:
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
    if not x.flags.aligned:  # a view at an odd byte offset: the kernels load whole floats
        x = x.copy()
    if x.size and not np.isfinite(x).all():
        row = int(np.argmin(np.isfinite(x).all(axis=1)))
        raise ValueError(f"{name} contains NaN or inf (row {row})")
    return x


def state_dict(state: object, keys: Iterable[str], what: str) -> dict[str, Any]:
    """A pickled state (``__setstate__``): a dict holding at least ``keys``, else ValueError naming ``what``."""
    if not isinstance(state, dict):
        raise ValueError(f"corrupt {what} state: expected a dict, got {type(state).__name__}")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"corrupt {what} state: missing {', '.join(map(repr, missing))}")
    return state


def state_array(
    value: object, what: str, dtype: npt.DTypeLike, shape: Sequence[int | None]
) -> npt.NDArray[Any]:
    """An array of a pickled state with this dtype and shape (None in ``shape``: any length), finite if float."""
    if not isinstance(value, np.ndarray) or value.dtype != np.dtype(dtype):
        raise ValueError(f"corrupt state: {what} must be a {np.dtype(dtype)} array, got "
                         f"{getattr(value, 'dtype', type(value).__name__)}")
    if value.ndim != len(shape) or any(w is not None and w != g for w, g in zip(shape, value.shape)):
        raise ValueError(f"corrupt state: {what} has shape {value.shape}, expected {tuple(shape)}")
    if value.dtype.kind == "f" and value.size and not np.isfinite(value).all():
        raise ValueError(f"corrupt state: {what} contains NaN or inf")
    return np.ascontiguousarray(value)
