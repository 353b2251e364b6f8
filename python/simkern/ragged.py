"""Ragged token sets: one flat ``(total_tokens, dim)`` array plus int64 CSR offsets.

Set ``i`` owns rows ``offsets[i]:offsets[i + 1]`` of ``tokens`` (the ``cu_seqlens`` layout). A ``Ragged`` holds
references to both arrays (zero-copy); ``r[i]`` is a view.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeAlias, overload

import numpy as np
import numpy.typing as npt

from ._validate import beyond_int64, int_arg

__all__ = ["Ragged", "as_ragged"]


def _int_array(x: object, name: str) -> npt.NDArray[np.integer[Any]]:
    arr = np.asarray(x)
    if beyond_int64(x, arr):
        raise ValueError(f"{name} holds integers outside the int64 range")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    return arr


class Ragged:
    """A batch of variable-length token sets stored flat.

    Parameters
    ----------
    tokens : numpy.ndarray, shape (total_tokens, dim), C-contiguous
        All sets' token vectors, one after another. Kept by reference (no copy).
    offsets : array-like of int, shape (n + 1,)
        ``offsets[0] == 0``, non-decreasing, ``offsets[-1] == total_tokens``. Converted to int64 if given
        in another integer type (the only copy a Ragged ever makes).

    Raises ``TypeError`` for non-arrays / non-integer offsets and ``ValueError`` for bad shapes or offsets.
    """

    __slots__ = ("_tokens", "_offsets")
    _tokens: npt.NDArray[Any]
    _offsets: npt.NDArray[np.int64]

    def __init__(self, tokens: npt.NDArray[Any], offsets: npt.ArrayLike) -> None:
        if not isinstance(tokens, np.ndarray):
            raise TypeError(f"tokens must be a numpy.ndarray of shape (total_tokens, dim), got {type(tokens).__name__}")
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be 2-D (total_tokens, dim), got shape {tokens.shape}")
        if not tokens.flags.c_contiguous:
            raise ValueError("tokens must be C-contiguous; use numpy.ascontiguousarray(tokens)")
        offs: npt.NDArray[Any] = _int_array(offsets, "offsets")  # int64 from the ascontiguousarray below on
        if offs.ndim != 1 or offs.shape[0] < 1:
            raise ValueError(f"offsets must be 1-D with n + 1 >= 1 entries, got shape {offs.shape}")
        offs = np.ascontiguousarray(offs, dtype=np.int64)
        if not offs.flags.aligned:  # a view at an odd byte offset: the kernels load whole int64s
            offs = offs.copy()
        if offs[0] != 0:
            raise ValueError(f"offsets[0] must be 0, got {offs[0]}")
        steps = np.diff(offs)
        if steps.size and steps.min() < 0:
            bad = int(np.argmax(steps < 0)) + 1
            raise ValueError(f"offsets must be non-decreasing, but offsets[{bad}] = {offs[bad]} < {offs[bad - 1]}")
        if offs[-1] != tokens.shape[0]:
            raise ValueError(f"offsets[-1] must equal the number of token rows ({tokens.shape[0]}), got {offs[-1]}")
        self._tokens = tokens
        self._offsets = offs

    # -- constructors -------------------------------------------------------------------------------------
    @classmethod
    def _trusted(cls, tokens: npt.NDArray[Any], offsets: npt.NDArray[np.int64]) -> Ragged:
        """Internal: wrap arrays this module built itself (C-contiguous 2-D tokens, valid int64 offsets)."""
        r = cls.__new__(cls)
        r._tokens = tokens
        r._offsets = offsets
        return r

    @classmethod
    def from_list(
        cls, arrays: Sequence[npt.NDArray[Any]], *, dim: int | None = None, dtype: npt.DTypeLike | None = None
    ) -> Ragged:
        """Concatenate 2-D ``(n_i, dim)`` arrays into one flat buffer (one copy).

        All arrays must share ``dim`` and dtype. ``dim`` (and ``dtype``, default float32) are needed only for an
        empty list.
        """
        if isinstance(arrays, np.ndarray) or not isinstance(arrays, Sequence):
            raise TypeError(f"arrays must be a list or tuple of 2-D arrays, got {type(arrays).__name__}")
        if len(arrays) == 0:
            if dim is None:
                raise ValueError("from_list([]) needs dim= to know the token width")
            return cls(np.zeros((0, int_arg(dim, "dim", 0)), dtype=dtype or np.float32), np.zeros(1, np.int64))
        items = []
        for i, a in enumerate(arrays):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"arrays[{i}] must be a numpy.ndarray, got {type(a).__name__}")
            if a.ndim != 2:
                raise ValueError(f"arrays[{i}] must be 2-D (n_tokens, dim), got shape {a.shape}")
            items.append(a)
        width = items[0].shape[1] if dim is None else int_arg(dim, "dim", 0)
        kind = items[0].dtype if dtype is None else np.dtype(dtype)
        for i, a in enumerate(items):
            if a.shape[1] != width:
                raise ValueError(f"arrays[{i}] has dim {a.shape[1]}, expected {width} (all sets must share dim)")
            if a.dtype != kind:
                raise TypeError(f"arrays[{i}] has dtype {a.dtype}, expected {kind} (all sets must share a dtype)")
        lengths = np.array([a.shape[0] for a in items], dtype=np.int64)
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.empty((int(offsets[-1]), width), dtype=kind)
        for a, start, stop in zip(items, offsets[:-1], offsets[1:]):
            tokens[start:stop] = a
        return cls(tokens, offsets)

    @classmethod
    def from_padded(cls, array3d: npt.NDArray[Any], lengths: npt.ArrayLike) -> Ragged:
        """Keep the first ``lengths[i]`` rows of ``array3d[i]`` (shape (n, max_len, dim)); copies those rows."""
        if not isinstance(array3d, np.ndarray) or array3d.ndim != 3:
            shape = getattr(array3d, "shape", None)
            raise ValueError(f"array3d must be a 3-D numpy array (n, max_len, dim), got shape {shape}")
        lens = _int_array(lengths, "lengths")
        n, max_len, _ = array3d.shape
        if lens.shape != (n,):
            raise ValueError(f"lengths must have shape ({n},), got {lens.shape}")
        if n and (lens.min() < 0 or lens.max() > max_len):
            raise ValueError(f"lengths must lie in [0, {max_len}], got min {lens.min()} max {lens.max()}")
        mask = np.arange(max_len)[None, :] < lens[:, None]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        return cls(np.ascontiguousarray(array3d[mask]), offsets)

    # -- accessors -----------------------------------------------------------------------------------------
    @property
    def tokens(self) -> npt.NDArray[Any]:
        """The flat ``(total_tokens, dim)`` token array (the one passed in, not a copy)."""
        return self._tokens

    @property
    def offsets(self) -> npt.NDArray[np.int64]:
        """int64 ``(n + 1,)`` CSR offsets."""
        return self._offsets

    @property
    def dim(self) -> int:
        return int(self._tokens.shape[1])

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._tokens.dtype

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        """int64 ``(n,)``: tokens per set."""
        return np.diff(self._offsets)

    @property
    def total_tokens(self) -> int:
        return int(self._tokens.shape[0])

    def __len__(self) -> int:
        return int(self._offsets.shape[0] - 1)

    @overload
    def __getitem__(self, index: slice) -> Ragged: ...
    @overload
    def __getitem__(self, index: int | np.integer[Any]) -> npt.NDArray[Any]: ...

    def __getitem__(self, index: slice | int | np.integer[Any]) -> Ragged | npt.NDArray[Any]:
        n = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step != 1:
                raise ValueError("Ragged slices must have step 1")
            stop = max(start, stop)
            lo, hi = self._offsets[start], self._offsets[stop]
            return Ragged._trusted(self._tokens[lo:hi], self._offsets[start : stop + 1] - lo)
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"Ragged indices must be integers or slices, got {type(index).__name__}")
        i = int(index)
        if i < -n or i >= n:
            raise IndexError(f"set index {i} out of range for Ragged with {n} sets")
        i %= n
        return self._tokens[self._offsets[i] : self._offsets[i + 1]]

    def __iter__(self) -> Iterator[npt.NDArray[Any]]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"Ragged(n={len(self)}, total_tokens={self.total_tokens}, dim={self.dim}, dtype={self.dtype})"

    def __getstate__(self) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
        return (self._tokens, self._offsets)

    def __setstate__(self, state: tuple[npt.NDArray[Any], npt.NDArray[np.int64]]) -> None:
        tokens, offsets = state
        self.__init__(tokens, offsets)  # type: ignore[misc]  # re-validates the unpickled arrays


# What a multi-vector argument may be (see as_ragged): a Ragged, a list/tuple of 2-D arrays, a 2-D or a 3-D array
# (NumPy, or another CPU array type exporting DLPack or __array__).
RaggedLike: TypeAlias = "Ragged | npt.ArrayLike"


def as_array(x: object, name: str) -> npt.NDArray[Any]:
    """A NumPy view of an array-like without copying: ndarrays as they are, other CPU arrays (PyTorch, JAX,
    CuPy's host arrays, ...) through DLPack or ``__array__``. Anything else raises TypeError."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (TypeError, ValueError, RuntimeError, BufferError) as e:
            raise TypeError(f"{name}: cannot view this {type(x).__name__} as a NumPy array without a copy ({e}); "
                            "pass a CPU array of a NumPy dtype (bfloat16 tensors: convert to ml_dtypes.bfloat16 "
                            "through .view(torch.int16).numpy().view(ml_dtypes.bfloat16))") from None
    if hasattr(x, "__array__"):
        return np.asarray(x)
    raise TypeError(f"{name} must be an array (numpy.ndarray, or a CPU array exporting DLPack or __array__), "
                    f"got {type(x).__name__}")


def as_ragged(x: object, name: str) -> Ragged:
    """Normalise a multi-vector argument: a Ragged, a list/tuple of 2-D arrays (concatenated, one copy),
    a single 2-D array (one set, no copy) or a 3-D array ``(n, L, dim)`` (n sets of L tokens, no copy).
    Arrays may be NumPy arrays or other CPU array types that export DLPack or ``__array__`` (viewed, not copied)."""
    if isinstance(x, Ragged):
        return x
    if isinstance(x, (list, tuple)):
        try:
            return Ragged.from_list([as_array(a, f"{name}[{i}]") for i, a in enumerate(x)])
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name}: {e}") from None
    if not isinstance(x, np.ndarray) and (hasattr(x, "__dlpack__") or hasattr(x, "__array__")):
        x = as_array(x, name)
    if isinstance(x, np.ndarray):
        if x.ndim == 2:
            return Ragged._trusted(_contiguous(x, name), np.array([0, x.shape[0]], dtype=np.int64))
        if x.ndim == 3:
            n, length, dim = x.shape
            flat = _contiguous(x, name).reshape(n * length, dim)
            return Ragged._trusted(flat, np.arange(n + 1, dtype=np.int64) * length)
        raise ValueError(f"{name} must be a Ragged, a list of 2-D arrays or a 2-D/3-D array, got shape {x.shape}")
    raise TypeError(f"{name} must be a Ragged, a list of 2-D arrays or a numpy array, got {type(x).__name__}")


def aligned_tokens(r: Ragged) -> Ragged:
    """``r`` itself, or (when its tokens are a view at an address that is not a multiple of the itemsize) a Ragged
    over an aligned copy of them: the kernels load whole elements."""
    if r.tokens.flags.aligned:
        return r
    return Ragged._trusted(r.tokens.copy(), r.offsets)


def _contiguous(x: npt.NDArray[Any], name: str) -> npt.NDArray[Any]:
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; use numpy.ascontiguousarray({name})")
    return x
