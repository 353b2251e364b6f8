"""simkern.cuda: the optional CUDA kernels, on torch / CuPy / JAX arrays without a copy.

Built only when simkern is built with ``SIMKERN_ENABLE_CUDA=ON`` (or ``AUTO`` and nvcc is found): the compiled
module ``simkern._cuda`` links the CUDA runtime statically, imports on any machine and reports here whether a
device can run it. Without it, or without a GPU or driver, :func:`is_available` is False, :func:`device_info` says
why, and every kernel raises :class:`CudaUnavailableError` (a ``RuntimeError``).

Arrays: any CUDA array with ``__dlpack__`` (torch, CuPy, JAX) or ``__cuda_array_interface__`` (CuPy, Numba,
torch), read where it lies. Work runs on the caller's current stream: torch's ``torch.cuda.current_stream()`` for
torch inputs, CuPy's current stream for CuPy inputs, the legacy default stream otherwise, or ``stream=`` (an
integer ``cudaStream_t`` or an object with ``cuda_stream`` / ``ptr``). Results are new device arrays on the
inputs' device, allocated stream-ordered on that stream and handed over through DLPack, wrapped by the caller's
library (a ``torch.Tensor`` for torch input, a ``cupy.ndarray`` for CuPy input, a JAX array for JAX input; a
:class:`DeviceBuffer`, which has ``__dlpack__`` and ``__cuda_array_interface__``, otherwise). Like memory from
torch's caching allocator without ``record_stream``, a result is freed on that stream: use it there, or
synchronise before using it on another.

Multi-vector sets (``maxsim``, ``maxsim_topk``, FDE) come in three forms: a 3-D ``(n, L, dim)`` padded array with
an optional ``(n, L)`` mask (any bool / integer / float dtype: nonzero = a token), a 2-D ``(L, dim)`` array (one
set), or a ragged pair ``(tokens (T, dim), offsets (n + 1,))`` (``cu_seqlens``: int32 / int64, on the device or
the host). Ragged offsets and ``candidates`` are checked on the host (one small device-to-host copy each, which
synchronises the stream); padded inputs with masks keep a call asynchronous apart from ``check_finite``.

``check_finite=True`` (the default, as the CPU functions) makes a call wait for its kernels and raise ValueError
for NaN / inf in scored tokens or a float32 overflow; ``check_finite=False`` returns at once (results undefined
for such inputs).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

_cuda: Any  # the compiled module (csrc/bindings/cuda_module.cpp), or None when simkern was built without it
try:
    _cuda = importlib.import_module("._cuda", __package__)
    _IMPORT_ERROR: str | None = None
except ImportError as exc:  # built without CUDA
    _cuda = None
    _IMPORT_ERROR = str(exc)

__all__ = [
    "CudaUnavailableError", "DeviceBuffer", "device_info", "fde_encode_documents", "fde_encode_queries",
    "is_available", "maxsim", "maxsim_topk", "pq_adc", "pq_distance_tables", "pq_scan_topk", "pq_search",
]

# Element type codes shared with csrc/cuda/api.hpp (DType).
F32, F16, BF16, U8, I8, I32, I64, BOOL = range(8)
_DTYPE_NAMES = {F32: "float32", F16: "float16", BF16: "bfloat16", U8: "uint8", I8: "int8", I32: "int32",
                I64: "int64", BOOL: "bool"}
_ITEMSIZE = {F32: 4, F16: 2, BF16: 2, U8: 1, I8: 1, I32: 4, I64: 8, BOOL: 1}
_DL_TO_CODE = {(2, 32): F32, (2, 16): F16, (4, 16): BF16, (1, 8): U8, (0, 8): I8, (0, 32): I32, (0, 64): I64,
               (6, 8): BOOL}
_CAI_TO_CODE = {"f4": F32, "f2": F16, "u1": U8, "i1": I8, "i4": I32, "i8": I64, "b1": BOOL}
_NP_TO_CODE = {np.dtype(np.float32): F32, np.dtype(np.float16): F16, np.dtype(np.uint8): U8,
               np.dtype(np.int8): I8, np.dtype(np.int32): I32, np.dtype(np.int64): I64, np.dtype(np.bool_): BOOL}
_FLOATS = (F32, F16, BF16)
_KDL_CUDA, _KDL_CUDA_MANAGED = 2, 13
_FLAG_NONFINITE, _FLAG_EMPTY = 1, 2
_MASK_MODES = {"remove": 0, "multiply": 1}
_KERNELS = {"auto": 0, "tensor_core": 1, "simt": 2}

DeviceBuffer = _cuda.DeviceBuffer if _cuda is not None else None


class CudaUnavailableError(RuntimeError):
    """simkern was built without CUDA, or no CUDA device (or driver) is usable: ``device_info()`` says which."""


# -- availability -------------------------------------------------------------------------------------------------

def _facts() -> dict[str, Any]:
    return dict(_cuda.device_facts()) if _cuda is not None else {}


def is_available() -> bool:
    """True when simkern._cuda is built and at least one CUDA device is usable. Never raises."""
    if _cuda is None:
        return False
    return int(_facts().get("count", 0)) > 0


def device_info() -> dict[str, Any]:
    """What the CUDA side sees: ``built`` (simkern._cuda present), ``build`` (architectures, nvcc, static cudart),
    ``available``, ``reason`` (why not, when not), ``driver_version`` / ``runtime_version`` and ``devices`` (name,
    compute capability, memory, multiprocessors of each). Never raises."""
    if _cuda is None:
        return {"built": False, "available": False, "devices": [],
                "reason": "simkern was built without CUDA (SIMKERN_ENABLE_CUDA=OFF, the default): rebuild with "
                          "SIMKERN_ENABLE_CUDA=ON pip install . on a machine with nvcc"
                          + (f" [{_IMPORT_ERROR}]" if _IMPORT_ERROR and "_cuda" not in _IMPORT_ERROR else "")}
    facts = _facts()
    info: dict[str, Any] = {"built": True, "build": dict(_cuda.build_info()), "available": facts["count"] > 0,
                            "driver_version": facts["driver_version"], "runtime_version": facts["runtime_version"],
                            "devices": []}
    if facts["count"] > 0:
        info["devices"] = [dict(_cuda.device_properties(i)) for i in range(facts["count"])]
    else:
        info["reason"] = f"no usable CUDA device: {facts['error_string'] or 'the runtime reports 0 devices'}"
    return info


def _require() -> Any:
    """The module, when a device can run it (called just before anything touches the device)."""
    if _cuda is None or not is_available():
        raise CudaUnavailableError(f"simkern.cuda is not available: {device_info()['reason']}")
    return _cuda


def _built() -> None:
    """Entry check of every kernel: without simkern._cuda nothing can even read the arguments. With it, the
    arguments are checked first (DLPack views need no device), and _require() runs before the device is touched."""
    if _cuda is None:
        _require()


# -- arrays -------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Array:
    """A device array as the kernels take it: pointer, dtype code, shape and strides in elements."""

    ptr: int
    dtype: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    device: int
    keep: Any  # the capsule or object that owns the memory during the call

    @property
    def spec(self) -> tuple[int, int, tuple[int, ...], tuple[int, ...]]:
        return (self.ptr, self.dtype, self.shape, self.strides)

    @property
    def dtype_name(self) -> str:
        return _DTYPE_NAMES[self.dtype]


@dataclasses.dataclass
class _Context:
    """The caller's device, stream and array library (to wrap results)."""

    stream: int
    library: str  # "torch", "cupy", "jax" or ""
    device: int | None = None


def _library_of(x: Any) -> str:
    module = type(x).__module__.split(".")[0]
    if module in ("torch", "cupy"):
        return module
    if module in ("jax", "jaxlib"):
        return "jax"
    return ""


def _stream_arg(stream: Any) -> int:
    if isinstance(stream, (int, np.integer)) and not isinstance(stream, bool):
        return int(stream)
    for attr in ("cuda_stream", "ptr", "handle"):
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    raise TypeError(f"stream must be an integer cudaStream_t or a stream object (torch / CuPy), got "
                    f"{type(stream).__name__}")


def _context(first: Any, stream: Any) -> _Context:
    library = _library_of(first)
    if stream is not None:
        return _Context(_stream_arg(stream), library)
    if library == "torch":
        import torch

        return _Context(int(torch.cuda.current_stream(first.device).cuda_stream), library)
    if library == "cupy":
        import cupy

        return _Context(int(cupy.cuda.get_current_stream().ptr), library)
    return _Context(0, library)


def _c_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= max(int(extent), 1)
    return tuple(reversed(strides))


def _device_array(x: Any, name: str, ctx: _Context) -> _Array:
    """View a CUDA array through DLPack or __cuda_array_interface__ (no copy)."""
    if isinstance(x, np.ndarray) or (not hasattr(x, "__cuda_array_interface__")
                                     and _dl_device_type(x) not in (_KDL_CUDA, _KDL_CUDA_MANAGED, -1)):
        where = "a NumPy array" if isinstance(x, np.ndarray) else f"a {type(x).__name__} on the host"
        raise TypeError(f"{name} must be a CUDA array (torch, CuPy, JAX on a GPU), got {where}; the CPU functions "
                        f"(simkern.maxsim, ...) take host arrays")
    if getattr(x, "requires_grad", False):
        raise TypeError(f"{name} requires grad: simkern's CUDA kernels have no backward pass; pass .detach()")
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        dev_type, dev_id = (int(v) for v in x.__dlpack_device__())
        if dev_type not in (_KDL_CUDA, _KDL_CUDA_MANAGED):
            raise TypeError(f"{name} must be a CUDA array, got one on DLPack device type {dev_type}")
        capsule = x.__dlpack__(stream=ctx.stream if ctx.stream != 0 else 1)
        ptr, _, dev_id, (code, bits, lanes), shape, strides = _cuda.dlpack_view(capsule)
        dtype = _DL_TO_CODE.get((int(code), int(bits))) if lanes == 1 else None
        if dtype is None:
            raise TypeError(f"{name} has an unsupported dtype (DLPack code {code}, {bits} bits, {lanes} lanes)")
        shape = tuple(int(s) for s in shape)
        strides = tuple(int(s) for s in strides) if strides is not None else _c_strides(shape)
        return _checked_device(_Array(int(ptr), dtype, shape, strides, int(dev_id), capsule), name, ctx)
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is None:
        raise TypeError(f"{name} must be a CUDA array with __dlpack__ or __cuda_array_interface__ (torch, CuPy, "
                        f"JAX), got {type(x).__name__}")
    typestr = str(cai["typestr"])
    dtype = _CAI_TO_CODE.get(typestr[1:])
    if dtype is None:
        raise TypeError(f"{name} has an unsupported dtype {typestr!r} (use __dlpack__ for bfloat16)")
    shape = tuple(int(s) for s in cai["shape"])
    item = _ITEMSIZE[dtype]
    if cai.get("strides") is None:
        strides = _c_strides(shape)
    else:
        if any(int(s) % item for s in cai["strides"]):
            raise ValueError(f"{name} has strides that are not a multiple of its item size")
        strides = tuple(int(s) // item for s in cai["strides"])
    ptr = int(cai["data"][0])
    _require()  # the pointer's device and the stream order need the driver
    device = int(_cuda.pointer_device(ptr)) if ptr else (ctx.device if ctx.device is not None else 0)
    producer = cai.get("stream")  # v3: the consumer waits for the producer's stream (1 = the legacy default)
    if producer is not None:
        producer = 0 if int(producer) == 1 else int(producer)
        if producer != ctx.stream:
            _cuda.stream_wait(device, producer, ctx.stream)
    return _checked_device(_Array(ptr, dtype, shape, strides, device, x), name, ctx)


def _dl_device_type(x: Any) -> int:
    try:
        return int(x.__dlpack_device__()[0])
    except Exception:  # noqa: BLE001 - any failure means "not a CUDA array we can read"
        return -1


def _checked_device(a: _Array, name: str, ctx: _Context) -> _Array:
    if ctx.device is None:
        ctx.device = a.device
    elif a.device != ctx.device:
        raise ValueError(f"{name} is on cuda:{a.device}, the other arguments on cuda:{ctx.device}")
    if any(s < 0 for s in a.strides):
        raise ValueError(f"{name} has negative strides; pass a contiguous copy")
    if a.ptr % _ITEMSIZE[a.dtype] and math.prod(a.shape):
        raise ValueError(f"{name} is not aligned to its item size ({_ITEMSIZE[a.dtype]} bytes)")
    return a


def _wrap(buf: Any, ctx: _Context) -> Any:
    """A result DeviceBuffer as the caller's library's array (no copy)."""
    if ctx.library == "torch":
        import torch

        return torch.from_dlpack(buf)
    if ctx.library == "cupy":
        import cupy

        return cupy.from_dlpack(buf)
    if ctx.library == "jax":
        import jax.dlpack

        return jax.dlpack.from_dlpack(buf)
    return buf


def _empty(shape: tuple[int, ...], dtype: int, ctx: _Context) -> Any:
    _require()
    assert ctx.device is not None
    return _cuda.DeviceBuffer(list(shape), dtype, ctx.device, ctx.stream)


def _upload(host: npt.NDArray[Any], ctx: _Context) -> _Array:
    """A host array copied to ctx's device; the returned view owns the DeviceBuffer (``keep``)."""
    host = np.ascontiguousarray(host)
    buf = _empty(tuple(host.shape), _NP_TO_CODE[host.dtype], ctx)
    if host.size:
        buf.upload(host)
    assert ctx.device is not None
    return _Array(int(buf.ptr), int(buf.dtype_code), host.shape, _c_strides(host.shape), ctx.device, buf)


def _to_host(a: _Array, ctx: _Context) -> npt.NDArray[Any]:
    """Copy a (small) device integer array to the host, synchronising the stream."""
    _require()
    np_dtype = {I32: np.int32, I64: np.int64, U8: np.uint8, I8: np.int8, BOOL: np.bool_}[a.dtype]
    if not math.prod(a.shape):
        return np.zeros(a.shape, np_dtype)
    span = 1 + sum((s - 1) * st for s, st in zip(a.shape, a.strides))
    raw = _cuda.copy_to_host(a.ptr, span * _ITEMSIZE[a.dtype], ctx.device, ctx.stream)
    flat: npt.NDArray[Any] = np.frombuffer(raw, dtype=np_dtype)
    item = _ITEMSIZE[a.dtype]
    view: npt.NDArray[Any] = np.lib.stride_tricks.as_strided(flat, a.shape, tuple(s * item for s in a.strides))
    result: npt.NDArray[Any] = view.copy()
    return result


# -- multi-vector sets --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Sets:
    tokens: _Array
    offsets: _Array | None
    mask: _Array | None
    n_sets: int
    max_len: int
    dim: int

    @property
    def spec(self) -> tuple[Any, ...]:
        return (self.tokens.spec, self.offsets.spec if self.offsets else None,
                self.mask.spec if self.mask else None, self.n_sets, self.max_len)


def _integer_host_or_device(x: Any, name: str, ctx: _Context) -> tuple[npt.NDArray[np.int64], _Array | None]:
    """An integer array given on the host (NumPy, list) or the device: its values on the host (int64), and the
    device view when it was on the device."""
    on_device = hasattr(x, "__cuda_array_interface__") or (
        hasattr(x, "__dlpack__") and _dl_device_type(x) in (_KDL_CUDA, _KDL_CUDA_MANAGED, -1))
    if isinstance(x, (np.ndarray, list, tuple)) or not on_device:
        arr = np.asarray(x)
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
        return arr.astype(np.int64), None
    a = _device_array(x, name, ctx)
    if a.dtype not in (I32, I64, U8, I8):
        raise TypeError(f"{name} must hold integers, got {a.dtype_name}")
    return _to_host(a, ctx).astype(np.int64), a


def _sets(x: Any, mask: Any, name: str, ctx: _Context, dtypes: tuple[int, ...]) -> _Sets:
    if isinstance(x, tuple) and len(x) == 2:
        if mask is not None:
            raise ValueError(f"{name}_mask applies to padded {name} only; ragged {name} (tokens, offsets) have no mask")
        tokens = _device_array(x[0], f"{name}[0] (tokens)", ctx)
        if len(tokens.shape) != 2:
            raise ValueError(f"{name}[0] (tokens) must be 2-D (T, dim), got shape {tokens.shape}")
        offsets, dev = _integer_host_or_device(x[1], f"{name}[1] (offsets)", ctx)
        if offsets.ndim != 1 or offsets.shape[0] < 1:
            raise ValueError(f"{name}[1] (offsets) must be 1-D with n + 1 >= 1 entries, got shape {offsets.shape}")
        if offsets[0] != 0 or (np.diff(offsets) < 0).any() or offsets[-1] != tokens.shape[0]:
            raise ValueError(f"{name}[1] (offsets) must start at 0, never decrease and end at the token count "
                             f"({tokens.shape[0]})")
        if dev is None or dev.dtype not in (I32, I64) or dev.strides != (1,):
            dev = _upload(offsets, ctx)
        n = int(offsets.shape[0] - 1)
        max_len = int(np.diff(offsets).max()) if n else 0
        result = _Sets(tokens, dev, None, n, max_len, tokens.shape[1])
    else:
        tokens = _device_array(x, name, ctx)
        if len(tokens.shape) == 2:
            tokens = dataclasses.replace(tokens, shape=(1, *tokens.shape),
                                         strides=(tokens.shape[0] * tokens.strides[0], *tokens.strides))
        if len(tokens.shape) != 3:
            raise ValueError(f"{name} must be 3-D (n, L, dim) padded, 2-D (L, dim) or a (tokens, offsets) pair, got "
                             f"shape {tokens.shape}")
        mask_arr = None
        if mask is not None:
            mask_arr = _device_array(mask, f"{name}_mask", ctx)
            if len(mask_arr.shape) == 1 and tokens.shape[0] == 1:
                mask_arr = dataclasses.replace(mask_arr, shape=(1, *mask_arr.shape),
                                               strides=(mask_arr.shape[0] * mask_arr.strides[0], *mask_arr.strides))
            if mask_arr.shape != tokens.shape[:2]:
                raise ValueError(f"{name}_mask must have shape {tokens.shape[:2]} ({name}'s (n, L)), got "
                                 f"{mask_arr.shape}")
        result = _Sets(tokens, None, mask_arr, tokens.shape[0], tokens.shape[1], tokens.shape[2])
    t = result.tokens
    if t.dtype not in dtypes:
        allowed = ", ".join(_DTYPE_NAMES[d] for d in dtypes)
        raise TypeError(f"{name} must be {allowed}, got {t.dtype_name}")
    if t.shape[-1] > 1 and t.strides[-1] != 1:
        raise ValueError(f"{name} must be contiguous along dim (unit stride); call .contiguous() first")
    if result.dim < 1:
        raise ValueError(f"{name} must have dim >= 1, got dim 0")
    return result


def _raise_flags(report: dict[str, Any], what: str) -> None:
    if report["flags"] & _FLAG_EMPTY:
        raise ValueError(f"{what}[{report['first_empty']}] is empty (0 tokens): an FDE of an empty document is "
                         f"undefined; pass empty='zeros' to encode it as zeros")
    if report["flags"] & _FLAG_NONFINITE:
        raise ValueError(f"{what}: NaN or inf in the scored tokens, or a float32 overflow")


def _candidates(candidates: Any, n_queries: int, n_docs: int, ctx: _Context) -> _Array:
    values, dev = _integer_host_or_device(candidates, "candidates", ctx)
    if values.ndim != 2 or values.shape[0] != n_queries:
        raise ValueError(f"candidates must have shape (n_queries={n_queries}, c), got {values.shape}")
    if values.size:
        lo, hi = int(values.min()), int(values.max())
        if lo < -1 or hi >= n_docs:
            bad = lo if lo < -1 else hi
            raise ValueError(f"candidates contain doc id {bad}; valid ids are 0..{n_docs - 1} (or -1 for padding)")
        rows = np.sort(values, axis=1)
        dup = (rows[:, 1:] == rows[:, :-1]) & (rows[:, 1:] >= 0)
        if dup.any():
            q, j = (int(v) for v in np.argwhere(dup)[0])
            raise ValueError(f"candidates for query {q} list doc id {int(rows[q, j])} twice")
    if dev is not None and dev.dtype in (I32, I64) and dev.strides == (values.shape[1], 1):
        return dev
    return _upload(values, ctx)


# -- MaxSim -------------------------------------------------------------------------------------------------------

def _maxsim_inputs(queries: Any, docs: Any, query_mask: Any, doc_mask: Any, stream: Any, mask_mode: Any,
                   kernel: Any) -> tuple[_Context, _Sets, _Sets, int, int]:
    """The checked arguments of maxsim / maxsim_topk: context, query and doc sets, mask-mode and kernel codes."""
    _built()
    mode = _choice(mask_mode, "mask_mode", _MASK_MODES)
    path = _choice(kernel, "kernel", _KERNELS)
    first = queries[0] if isinstance(queries, tuple) else queries
    ctx = _context(first, stream)
    q = _sets(queries, query_mask, "queries", ctx, _FLOATS)
    d = _sets(docs, doc_mask, "docs", ctx, _FLOATS)
    if q.dim != d.dim:
        raise ValueError(f"docs must have dim == {q.dim} (the queries' dim), got dim {d.dim}")
    if d.n_sets >= 2**31:
        raise ValueError(f"docs: at most 2**31 - 1 sets, got {d.n_sets}")
    return ctx, q, d, mode, path


def maxsim(queries: Any, docs: Any, *, query_mask: Any = None, doc_mask: Any = None,
           mask_mode: Literal["remove", "multiply"] = "remove", check_finite: bool = True, stream: Any = None,
           kernel: Literal["auto", "tensor_core", "simt"] = "auto") -> Any:
    """MaxSim of every query against every doc on the GPU: float32 ``(n_queries, n_docs)``.

    ``queries`` float32 / float16 / bfloat16, ``docs`` float16 / bfloat16 (tensor cores, sm_80+) or float32 (SIMT
    float32 kernel), each padded (+ mask), 2-D (one set) or ragged ``(tokens, offsets)``. Semantics as
    ``simkern.maxsim``: an empty doc scores -inf against a non-empty query, an empty query 0. ``mask_mode``:
    ``"remove"`` drops masked tokens (simkern's rule); ``"multiply"`` multiplies similarities by the masks
    (PyLate's formula: a masked doc token takes part in the max with similarity 0). Precision: float32
    accumulation; queries in another dtype than the docs are split into two parts of the docs' dtype (~16
    significant bits), so scores are within ``~2**-16 * sum |q| |d|`` of float32 scoring of the docs' values.
    ``kernel`` forces one kernel (tests compare them)."""
    ctx, q, d, mode, path = _maxsim_inputs(queries, docs, query_mask, doc_mask, stream, mask_mode, kernel)
    out = _empty((q.n_sets, d.n_sets), F32, ctx)
    report = _cuda.maxsim_scores(q.spec, d.spec, mode, None, path, bool(check_finite), int(out.ptr), ctx.device,
                                 ctx.stream)
    if check_finite:
        _raise_flags(report, "maxsim")
    return _wrap(out, ctx)


def maxsim_topk(queries: Any, docs: Any, k: int = 10, *, candidates: Any = None, query_mask: Any = None,
                doc_mask: Any = None, mask_mode: Literal["remove", "multiply"] = "remove", check_finite: bool = True,
                stream: Any = None, kernel: Literal["auto", "tensor_core", "simt"] = "auto") -> tuple[Any, Any]:
    """The ``k`` best docs per query, best first (ties: smaller doc id), as ``simkern.maxsim_topk``: float32
    scores and int64 ids ``(n_queries, k)``, padded with id -1 and score -inf. ``candidates``: an ``(n_queries, c)``
    integer array of doc ids (host or device; -1 = padding; no id twice per query) restricts each query to those
    docs (reranking). ``k <= 2048``."""
    ctx, q, d, mode, path = _maxsim_inputs(queries, docs, query_mask, doc_mask, stream, mask_mode, kernel)
    k = _topk_k(k)
    cand = None if candidates is None else _candidates(candidates, q.n_sets, d.n_sets, ctx)
    scores = _empty((q.n_sets, k), F32, ctx)
    ids = _empty((q.n_sets, k), I64, ctx)
    report = _cuda.maxsim_topk(q.spec, d.spec, mode, cand.spec if cand else None, path, bool(check_finite), k,
                               int(scores.ptr), int(ids.ptr), ctx.device, ctx.stream)
    if check_finite:
        _raise_flags(report, "maxsim_topk")
    return _wrap(scores, ctx), _wrap(ids, ctx)


# -- PQ -----------------------------------------------------------------------------------------------------------

def _codebooks(codebooks: Any, ctx: _Context) -> _Array:
    cb = codebooks.codebooks if hasattr(codebooks, "codebooks") and hasattr(codebooks, "ksub") else codebooks
    if isinstance(cb, np.ndarray):
        if cb.dtype != np.float32 or cb.ndim != 3:
            raise TypeError(f"codebooks must be float32 (m, ksub, dsub), got {cb.dtype} {cb.shape}")
        if not np.isfinite(cb).all():
            raise ValueError("codebooks contain NaN or inf")
        return _upload(cb, ctx)
    a = _device_array(cb, "codebooks", ctx)
    if a.dtype != F32 or len(a.shape) != 3:
        raise TypeError(f"codebooks must be float32 (m, ksub, dsub), got {a.dtype_name} {a.shape}")
    if a.strides != _c_strides(a.shape):
        raise ValueError("codebooks must be C-contiguous")
    return a


def pq_distance_tables(queries: Any, codebooks: Any, *, metric: Literal["l2", "ip"] = "l2",
                       stream: Any = None) -> Any:
    """float32 ``(n_queries, m, ksub)``: squared L2 from each query subvector to each centroid (``"ip"``: inner
    products), bit-identical to ``ProductQuantizer.distance_tables``. ``queries`` float32 ``(n, dim)`` on the
    device; ``codebooks`` float32 ``(m, ksub, dsub)`` on the device or the host, or a trained ProductQuantizer."""
    _built()
    ctx = _context(queries, stream)
    l2 = _metric(metric) == "l2"
    q = _device_array(queries, "queries", ctx)
    cb = _codebooks(codebooks, ctx)
    m, ksub, dsub = cb.shape
    if q.dtype != F32 or len(q.shape) != 2:
        raise TypeError(f"queries must be float32 (n, dim), got {q.dtype_name} {q.shape}")
    if q.shape[1] != m * dsub:
        raise ValueError(f"queries must have dim {m * dsub} (m * dsub of the codebooks), got {q.shape[1]}")
    if q.shape[1] > 1 and q.strides[1] != 1:
        raise ValueError("queries must be contiguous along dim; call .contiguous() first")
    out = _empty((q.shape[0], m, ksub), F32, ctx)
    _cuda.pq_tables(q.spec, cb.spec, l2, int(out.ptr), ctx.device, ctx.stream)
    return _wrap(out, ctx)


def _tables_codes(tables: Any, codes: Any, ctx: _Context) -> tuple[_Array, _Array]:
    t = _device_array(tables, "tables", ctx)
    c = _device_array(codes, "codes", ctx)
    if t.dtype != F32 or len(t.shape) != 3 or t.strides != _c_strides(t.shape):
        raise TypeError(f"tables must be C-contiguous float32 (n_queries, m, ksub), got {t.dtype_name} {t.shape}")
    if c.dtype != U8 or len(c.shape) != 2:
        raise TypeError(f"codes must be uint8 (n, m) (one byte per subspace: 8-bit codes), got {c.dtype_name} "
                        f"{c.shape}")
    if c.shape[1] != t.shape[1]:
        raise ValueError(f"codes must have m = {t.shape[1]} columns (the tables' m), got {c.shape[1]}")
    if t.shape[2] != 256:
        raise ValueError(f"tables must have ksub = 256 (8-bit codes), got {t.shape[2]}")
    if c.shape[1] > 1 and c.strides[1] != 1:
        raise ValueError("codes must be contiguous along m; call .contiguous() first")
    if c.shape[0] >= 2**32 - 1:
        raise ValueError(f"codes: at most 2**32 - 2 codes per call, got {c.shape[0]}")
    return t, c


def pq_adc(tables: Any, codes: Any, *, stream: Any = None) -> Any:
    """float32 ``(n_queries, n)``: every ADC distance (table sums in subspace order), as ``ProductQuantizer.adc``."""
    _built()
    ctx = _context(tables, stream)
    t, c = _tables_codes(tables, codes, ctx)
    out = _empty((t.shape[0], c.shape[0]), F32, ctx)
    _cuda.pq_adc(t.spec, c.spec, int(out.ptr), ctx.device, ctx.stream)
    return _wrap(out, ctx)


def pq_scan_topk(tables: Any, codes: Any, k: int = 10, *, metric: Literal["l2", "ip"] = "l2",
                 stream: Any = None) -> tuple[Any, Any]:
    """The exact top-k of float ADC over 8-bit codes ``(n, m)`` uint8 with ``tables`` ``(n_queries, m, 256)``:
    float32 scores and int64 ids ``(n_queries, k)``, smallest distances first for ``"l2"``, largest inner products
    for ``"ip"``, ties to the smaller id (``PQIndex.search``'s order); padding id -1 and +inf (l2) / -inf (ip)."""
    _built()
    ctx = _context(tables, stream)
    ip = _metric(metric) == "ip"
    t, c = _tables_codes(tables, codes, ctx)
    k = _topk_k(k)
    scores = _empty((t.shape[0], k), F32, ctx)
    ids = _empty((t.shape[0], k), I64, ctx)
    _cuda.pq_adc_topk(t.spec, c.spec, k, ip, int(scores.ptr), int(ids.ptr), ctx.device, ctx.stream)
    return _wrap(scores, ctx), _wrap(ids, ctx)


def pq_search(queries: Any, codebooks: Any, codes: Any, k: int = 10, *, metric: Literal["l2", "ip"] = "l2",
              stream: Any = None) -> tuple[Any, Any]:
    """``pq_distance_tables`` then ``pq_scan_topk``: the exact float-ADC top-k of ``PQIndex.search``."""
    tables = pq_distance_tables(queries, codebooks, metric=metric, stream=stream)
    return pq_scan_topk(tables, codes, k, metric=metric, stream=stream)


# -- FDE ----------------------------------------------------------------------------------------------------------

def _csr(index: npt.NDArray[Any], sign: npt.NDArray[Any], n_out: int) -> tuple[npt.NDArray[np.int32], ...]:
    """(start (n_out + 1), inputs ascending per output, their signs) of a CountSketch index / sign pair."""
    order = np.argsort(index, kind="stable").astype(np.int32)
    start = np.zeros(n_out + 1, np.int32)
    np.cumsum(np.bincount(index, minlength=n_out), out=start[1:])
    return start, order, np.ascontiguousarray(sign[order], dtype=np.float32)


def _fde_plan(fde: Any, ctx: _Context) -> dict[str, Any]:
    """The encoder's matrices on ctx's device, uploaded once per (encoder, device) and kept on the encoder."""
    cache: dict[int, dict[str, Any]] = fde.__dict__.setdefault("_cuda_plans", {})
    assert ctx.device is not None
    if ctx.device in cache:
        return cache[ctx.device]
    c = fde.config
    k = int(c["num_simhash_projections"])
    if k > int(_cuda.FDE_MAX_SIMHASH_BITS):
        raise ValueError(f"num_simhash_projections must be <= {int(_cuda.FDE_MAX_SIMHASH_BITS)} on the GPU, got {k}")
    m = fde._plan.matrices()
    reps, dim = int(c["num_repetitions"]), int(c["dim"])
    ams = c["projection"] == "ams_sketch"
    dp = int(c["projection_dimension"]) if ams else dim
    final_dim = int(c["final_projection_dimension"] or 0)
    buffers: list[Any] = []

    def up(a: npt.NDArray[Any]) -> int:
        view = _upload(a if a.size else np.zeros(1, a.dtype), ctx)
        buffers.append(view.keep)
        return view.ptr

    plan: dict[str, Any] = {"dim": dim, "repetitions": reps, "simhash_bits": k, "projection_dim": dp,
                            "final_dim": final_dim, "ams": ams, "fill_empty": bool(c["fill_empty_partitions"]),
                            "gray_decoded_target": c.get("fill_target", "reference") == "gray_decoded",
                            "simhash": up(np.ascontiguousarray(m["simhash"], dtype=np.float32))}
    zero_i, zero_f = np.zeros(1, np.int32), np.zeros(1, np.float32)
    if ams:
        starts, orders, signs = [], [], []
        for r in range(reps):
            s, o, g = _csr(np.asarray(m["ams_index"])[r], np.asarray(m["ams_sign"])[r], dp)
            starts.append(s)
            orders.append(o)
            signs.append(g)
        plan.update(ams_csr_start=up(np.concatenate(starts)), ams_csr_index=up(np.concatenate(orders)),
                    ams_csr_sign=up(np.concatenate(signs)))
    else:
        plan.update(ams_csr_start=up(zero_i), ams_csr_index=up(zero_i), ams_csr_sign=up(zero_f))
    if final_dim:
        s, o, g = _csr(np.asarray(m["final_index"]), np.asarray(m["final_sign"]), final_dim)
        plan.update(final_csr_start=up(s), final_csr_index=up(o), final_csr_sign=up(g))
    else:
        plan.update(final_csr_start=up(zero_i), final_csr_index=up(zero_i), final_csr_sign=up(zero_f))
    plan["_buffers"] = buffers
    cache[ctx.device] = plan
    return plan


def _fde_encode(fde: Any, x: Any, mask: Any, documents: bool, empty_zeros: bool, check_finite: bool,
                stream: Any) -> Any:
    _built()
    from .fde import FDE

    if not isinstance(fde, FDE):
        raise TypeError(f"fde must be a simkern.FDE, got {type(fde).__name__}")
    first = x[0] if isinstance(x, tuple) else x
    ctx = _context(first, stream)
    name = "documents" if documents else "queries"
    s = _sets(x, mask, name, ctx, _FLOATS)
    if s.dim != fde.dim:
        raise ValueError(f"{name} must have dim {fde.dim}, got {s.dim}")
    plan = _fde_plan(fde, ctx)
    out = _empty((s.n_sets, fde.output_dim), F32, ctx)
    report = _cuda.fde_encode({k: v for k, v in plan.items() if not k.startswith("_")}, s.spec, documents,
                              empty_zeros, bool(check_finite), int(out.ptr), ctx.device, ctx.stream)
    if report["flags"]:
        _raise_flags(report, name)
    return _wrap(out, ctx)


def fde_encode_documents(fde: Any, documents: Any, *, mask: Any = None, empty: Literal["error", "zeros"] = "error",
                         check_finite: bool = True, stream: Any = None) -> Any:
    """``fde.encode_documents`` on the GPU: float32 ``(n, fde.output_dim)``, bit-identical to the CPU encoder for
    finite inputs (the same operation order). ``documents`` float32 (float16 / bfloat16 are widened exactly) in
    any set form; an empty document raises ValueError unless ``empty="zeros"``. ``num_simhash_projections <= 12``."""
    zeros = _choice(empty, "empty", {"error": 0, "zeros": 1}) == 1
    return _fde_encode(fde, documents, mask, True, zeros, check_finite, stream)


def fde_encode_queries(fde: Any, queries: Any, *, mask: Any = None, check_finite: bool = True,
                       stream: Any = None) -> Any:
    """``fde.encode_queries`` on the GPU (sums per partition; an empty query encodes to zeros)."""
    return _fde_encode(fde, queries, mask, False, True, check_finite, stream)


# -- small helpers ------------------------------------------------------------------------------------------------

def _choice(value: Any, name: str, table: dict[str, int]) -> int:
    if not isinstance(value, str) or value not in table:
        raise ValueError(f"{name} must be one of {', '.join(repr(k) for k in table)}, got {value!r}")
    return table[value]


def _metric(metric: Any) -> str:
    _choice(metric, "metric", {"l2": 0, "ip": 1})
    return str(metric)


def _topk_k(k: Any) -> int:
    """k of a GPU top-k: a positive integer up to MAX_TOPK (the shared-memory sort of topk.cuh)."""
    value = _positive(k, "k")
    if value > int(_cuda.MAX_TOPK):
        raise ValueError(f"k must be <= {int(_cuda.MAX_TOPK)} on the GPU, got {value}")
    return value


def _positive(k: Any, name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")
    return int(k)

