"""simkern.cuda: the optional CUDA kernels (``pytest -m cuda`` selects this module).

Three groups, each skipping cleanly where it cannot run:

- availability: without simkern._cuda, or with it and no GPU / driver (the CI machine: nvcc, no GPU), the module
  imports, ``is_available()`` is False, ``device_info()`` says why and every kernel raises CudaUnavailableError;
- argument checks, on *fake* CUDA arrays (DLPack metadata over a pointer that is never dereferenced: every check
  runs before the device is touched), wherever simkern._cuda is built;
- the kernels on a GPU (torch or CuPy arrays): float64 NumPy references, exact equality on integer-valued data
  (every sum is exact in float32, so any summation order gives the same bits and top-k ties are decided by id
  alone), bit-identity with the CPU PQ and FDE paths, ragged edge cases around the 64-token tiles, masks, dtypes.
  ``SIMKERN_CUDA_TEST_QUICK=1`` (tools/gpu_check.sh's compute-sanitizer pass, and the emulator's ASan pass in
  .ci/run step 1e) runs fewer examples and smaller inputs.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest
import simkern
from hypothesis import given, settings
from hypothesis import strategies as st
from simkern import cuda

pytestmark = pytest.mark.cuda

BUILT = cuda._cuda is not None
AVAILABLE = cuda.is_available()
EMULATED = BUILT and bool(cuda._cuda.build_info().get("emulated"))  # tools/cuda_emu: the kernels on the CPU
QUICK = bool(os.environ.get("SIMKERN_CUDA_TEST_QUICK"))
needs_build = pytest.mark.skipif(not BUILT, reason="simkern built without CUDA (SIMKERN_ENABLE_CUDA=OFF)")
needs_gpu = pytest.mark.skipif(not AVAILABLE, reason="no usable CUDA device")


# -- availability ---------------------------------------------------------------------------------------------------

def test_device_info_never_raises_and_agrees_with_is_available():
    info = cuda.device_info()
    assert info["built"] is BUILT
    assert info["available"] is AVAILABLE
    if not AVAILABLE:
        assert info["reason"] and isinstance(info["reason"], str)
        assert info["devices"] == []
    else:
        assert info["devices"] and all(len(d["compute_capability"]) == 2 for d in info["devices"])
    if BUILT:
        build = info["build"]
        if not EMULATED:
            assert build["cudart"] == "static" and build["architectures"] and build["nvcc"].startswith("13.")


@pytest.mark.skipif(BUILT, reason="simkern._cuda is built")
def test_without_the_module_every_kernel_raises_unavailable():
    assert not cuda.is_available()
    assert "SIMKERN_ENABLE_CUDA" in cuda.device_info()["reason"]
    with pytest.raises(cuda.CudaUnavailableError, match="built without CUDA"):
        cuda.maxsim(np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32))
    with pytest.raises(cuda.CudaUnavailableError):
        cuda.pq_scan_topk(None, None, 1)
    assert issubclass(cuda.CudaUnavailableError, RuntimeError)


@needs_build
def test_module_links_no_cuda_shared_library():
    """The CUDA runtime is linked statically: the module needs no libcudart / libcuda to import (libcuda is opened
    lazily by the runtime when a device call is made)."""
    import subprocess

    so = cuda._cuda.__file__
    out = subprocess.run(["ldd", so], capture_output=True, text=True, check=False).stdout
    assert "libcudart" not in out and "libcuda." not in out, out


@needs_build
@pytest.mark.skipif(AVAILABLE, reason="a CUDA device is usable")
def test_no_device_reports_cleanly():
    info = cuda.device_info()
    assert info["reason"].startswith("no usable CUDA device")
    q = FakeCudaArray((2, 3, 8), "float32")
    d = FakeCudaArray((4, 5, 8), "bfloat16")
    with pytest.raises(cuda.CudaUnavailableError, match="no usable CUDA device"):
        cuda.maxsim(q, d)
    with pytest.raises(cuda.CudaUnavailableError):
        cuda.maxsim_topk(q, d, 2)
    with pytest.raises(cuda.CudaUnavailableError):
        cuda.pq_scan_topk(FakeCudaArray((2, 4, 256), "float32"), FakeCudaArray((10, 4), "uint8"), 3)
    with pytest.raises(cuda.CudaUnavailableError):  # ragged with host offsets: the upload needs the device
        cuda.maxsim((FakeCudaArray((5, 8), "float32"), np.array([0, 2, 5])), d)
    with pytest.raises(cuda.CudaUnavailableError):
        cuda.fde_encode_documents(simkern.FDE(8), FakeCudaArray((2, 3, 8), "float32"))
    with pytest.raises(cuda.CudaUnavailableError):
        cuda._require()


# -- fake CUDA arrays for argument checks ---------------------------------------------------------------------------

class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32), ("dtype", _DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


_CAPSULE_NAME = b"dltensor"
_PyCapsule_New = ctypes.pythonapi.PyCapsule_New
_PyCapsule_New.restype = ctypes.py_object
_PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_DTYPES = {"float32": (2, 32), "float16": (2, 16), "bfloat16": (4, 16), "uint8": (1, 8), "int8": (0, 8),
           "int32": (0, 32), "int64": (0, 64), "bool": (6, 8), "float64": (2, 64)}


class FakeCudaArray:
    """DLPack metadata of a CUDA array over a pointer that is never read (argument checks only)."""

    def __init__(self, shape, dtype, strides=None, device_type=2, ptr=0x7F0000000000):
        self.shape = tuple(shape)
        self.device_type = device_type
        n = len(self.shape)
        self._shape = (ctypes.c_int64 * max(n, 1))(*self.shape)
        self._strides = (ctypes.c_int64 * max(n, 1))(*strides) if strides is not None else None
        code, bits = _DTYPES[dtype]
        tensor = _DLTensor(ptr, _DLDevice(device_type, 0), n, _DLDataType(code, bits, 1),
                           ctypes.cast(self._shape, ctypes.POINTER(ctypes.c_int64)),
                           ctypes.cast(self._strides, ctypes.POINTER(ctypes.c_int64)) if strides is not None
                           else None, 0)
        self._managed = _DLManagedTensor(tensor, None, None)

    def __dlpack_device__(self):
        return (self.device_type, 0)

    def __dlpack__(self, stream=None, **kwargs):
        return _PyCapsule_New(ctypes.addressof(self._managed), _CAPSULE_NAME, None)


class EmuArray(FakeCudaArray):
    """A host array presented as a CUDA array (the emulator's device memory is host memory)."""

    def __init__(self, a, dtype=None):
        if dtype == "bfloat16":
            import ml_dtypes

            a = np.asarray(a, np.float32).astype(ml_dtypes.bfloat16)
        elif dtype is not None:
            a = np.asarray(a).astype(dtype)
        self.array = a = np.ascontiguousarray(a)
        name = "bfloat16" if a.dtype.name == "bfloat16" else a.dtype.name
        super().__init__(a.shape, name, strides=[st // a.itemsize for st in a.strides], ptr=a.ctypes.data)


def F(*shape, dtype="float32", **kw):
    return FakeCudaArray(shape, dtype, **kw)


@needs_build
class TestArgumentChecks:
    """Wrong arguments raise TypeError / ValueError naming the argument, before anything touches the device."""

    def test_host_arrays_are_refused(self):
        with pytest.raises(TypeError, match="queries must be a CUDA array.*NumPy"):
            cuda.maxsim(np.zeros((2, 3, 4), np.float32), F(2, 3, 4, dtype="bfloat16"))
        with pytest.raises(TypeError, match="docs must be a CUDA array"):
            cuda.maxsim(F(2, 3, 4), F(2, 3, 4, device_type=1))
        with pytest.raises(TypeError, match="docs must be a CUDA array.*list"):
            cuda.maxsim(F(2, 3, 4), [[1.0]])

    def test_tensors_that_require_grad_are_refused(self):
        q = F(2, 3, 4)
        q.requires_grad = True
        with pytest.raises(TypeError, match="queries requires grad"):
            cuda.maxsim(q, F(2, 3, 4))

    def test_dtypes(self):
        with pytest.raises(TypeError, match="docs must be float32, float16, bfloat16, got int32"):
            cuda.maxsim(F(2, 3, 4), F(2, 3, 4, dtype="int32"))
        with pytest.raises(TypeError, match="queries has an unsupported dtype \\(DLPack code 2, 64 bits"):
            cuda.maxsim(F(2, 3, 4, dtype="float64"), F(2, 3, 4))
        with pytest.raises(TypeError, match="queries_mask has an unsupported dtype|queries_mask"):
            cuda.maxsim(F(2, 3, 4), F(2, 3, 4), query_mask=F(2, 3, dtype="float64"))

    def test_shapes(self):
        with pytest.raises(ValueError, match="docs must have dim == 4"):
            cuda.maxsim(F(2, 3, 4), F(2, 3, 5))
        with pytest.raises(ValueError, match="queries must be 3-D"):
            cuda.maxsim(F(2, 3, 4, 1), F(2, 3, 4))
        with pytest.raises(ValueError, match="docs_mask must have shape \\(2, 3\\)"):
            cuda.maxsim(F(2, 3, 4), F(2, 3, 4), doc_mask=F(3, 2, dtype="bool"))
        with pytest.raises(ValueError, match="queries must have dim >= 1"):
            cuda.maxsim(F(2, 3, 0), F(2, 3, 0))
        with pytest.raises(ValueError, match="contiguous along dim"):
            cuda.maxsim(F(2, 3, 4, strides=(24, 8, 2)), F(2, 3, 4))
        with pytest.raises(ValueError, match="negative strides"):
            cuda.maxsim(F(2, 3, 4, strides=(-12, 4, 1)), F(2, 3, 4))

    def test_ragged_offsets(self):
        tokens = F(5, 4)
        with pytest.raises(ValueError, match=r"queries\[1\] \(offsets\) must start at 0"):
            cuda.maxsim((tokens, np.array([0, 3, 2, 5])), F(2, 3, 4))
        with pytest.raises(ValueError, match="end at the token count \\(5\\)"):
            cuda.maxsim((tokens, np.array([0, 2, 6])), F(2, 3, 4))
        with pytest.raises(ValueError, match="1-D"):
            cuda.maxsim((tokens, np.zeros((2, 2), np.int64)), F(2, 3, 4))
        with pytest.raises(TypeError, match="must hold integers"):
            cuda.maxsim((tokens, np.array([0.0, 5.0])), F(2, 3, 4))
        with pytest.raises(ValueError, match="queries_mask applies to padded queries only"):
            cuda.maxsim((tokens, np.array([0, 5])), F(2, 3, 4), query_mask=F(1, 5, dtype="bool"))
        with pytest.raises(ValueError, match=r"queries\[0\] \(tokens\) must be 2-D"):
            cuda.maxsim((F(5, 4, 1), np.array([0, 5])), F(2, 3, 4))

    def test_topk_arguments(self):
        q, d = F(2, 3, 4), F(5, 3, 4, dtype="bfloat16")
        with pytest.raises(ValueError, match="k must be >= 1"):
            cuda.maxsim_topk(q, d, 0)
        with pytest.raises(TypeError, match="k must be an integer"):
            cuda.maxsim_topk(q, d, True)
        with pytest.raises(ValueError, match="k must be <= 2048 on the GPU"):
            cuda.maxsim_topk(q, d, 4096)
        with pytest.raises(ValueError, match="candidates contain doc id 5"):
            cuda.maxsim_topk(q, d, 2, candidates=np.array([[0, 5], [1, -1]]))
        with pytest.raises(ValueError, match="candidates for query 1 list doc id 3 twice"):
            cuda.maxsim_topk(q, d, 2, candidates=np.array([[0, 1], [3, 3]]))
        with pytest.raises(ValueError, match="candidates must have shape \\(n_queries=2"):
            cuda.maxsim_topk(q, d, 2, candidates=np.array([[0, 1]]))
        with pytest.raises(ValueError, match="mask_mode must be one of"):
            cuda.maxsim(q, d, mask_mode="zero")
        with pytest.raises(ValueError, match="kernel must be one of"):
            cuda.maxsim(q, d, kernel="wmma")
        with pytest.raises(TypeError, match="stream must be"):
            cuda.maxsim(q, d, stream="default")

    def test_pq_arguments(self):
        t, c = F(2, 4, 256), F(10, 4, dtype="uint8")
        with pytest.raises(TypeError, match="codes must be uint8"):
            cuda.pq_scan_topk(t, F(10, 4, dtype="int8"), 1)
        with pytest.raises(ValueError, match="codes must have m = 4"):
            cuda.pq_scan_topk(t, F(10, 5, dtype="uint8"), 1)
        with pytest.raises(ValueError, match="ksub = 256"):
            cuda.pq_scan_topk(F(2, 4, 16), c, 1)
        with pytest.raises(TypeError, match="tables must be C-contiguous float32"):
            cuda.pq_scan_topk(F(2, 4, 256, dtype="float16"), c, 1)
        with pytest.raises(ValueError, match="metric must be one of"):
            cuda.pq_scan_topk(t, c, 1, metric="cos")
        with pytest.raises(ValueError, match="k must be >= 1"):
            cuda.pq_scan_topk(t, c, 0)
        with pytest.raises(TypeError, match="codebooks must be float32"):
            cuda.pq_distance_tables(F(2, 8), np.zeros((4, 256, 2), np.float64))
        with pytest.raises(ValueError, match="codebooks contain NaN"):
            cuda.pq_distance_tables(F(2, 8), np.full((4, 256, 2), np.nan, np.float32))

    def test_fde_arguments(self):
        with pytest.raises(TypeError, match="fde must be a simkern.FDE"):
            cuda.fde_encode_documents(object(), F(2, 3, 8))
        with pytest.raises(ValueError, match="documents must have dim 8, got 4"):
            cuda.fde_encode_documents(simkern.FDE(8), F(2, 3, 4))
        with pytest.raises(ValueError, match="num_simhash_projections must be <= 12 on the GPU"):
            cuda.fde_encode_queries(simkern.FDE(8, num_simhash_projections=13), F(2, 3, 8))
        with pytest.raises(ValueError, match="empty must be one of"):
            cuda.fde_encode_documents(simkern.FDE(8), F(2, 3, 8), empty="skip")


@needs_build
def test_dlpack_view_reads_the_capsule():
    a = F(3, 5, 8, dtype="bfloat16", strides=(80, 16, 1), ptr=0x7F0000001000)
    ptr, dev_type, dev_id, dtype, shape, strides = cuda._cuda.dlpack_view(a.__dlpack__())
    assert (ptr, dev_type, dev_id, dtype, shape, strides) == (0x7F0000001000, 2, 0, (4, 16, 1), (3, 5, 8),
                                                              (80, 16, 1))
    with pytest.raises(TypeError, match="DLPack capsule"):
        cuda._cuda.dlpack_view(_PyCapsule_New(ctypes.addressof(a._managed), b"other", None))


# -- on a GPU -------------------------------------------------------------------------------------------------------

def _framework():
    if EMULATED:
        return "emu"
    try:
        import torch

        if torch.cuda.is_available():
            return "torch"
    except ImportError:
        pass
    try:
        import cupy  # noqa: F401

        return "cupy"
    except ImportError:
        return None


def dev(a, dtype=None):
    """A NumPy array on the GPU (torch when present, else CuPy), in dtype ("float32", "float16", "bfloat16",
    or a NumPy integer / bool dtype)."""
    fw = _framework()
    if fw == "emu":
        return EmuArray(a, dtype)
    if fw == "torch":
        import torch

        t = torch.from_numpy(np.ascontiguousarray(a)).cuda()
        if dtype in ("float16", "bfloat16", "float32"):
            t = t.to(getattr(torch, dtype))
        return t
    import cupy

    if dtype == "bfloat16":
        pytest.skip("bfloat16 arrays need torch")
    return cupy.asarray(np.ascontiguousarray(a).astype(dtype) if dtype else a)


def host(x):
    if isinstance(x, cuda._cuda.DeviceBuffer) and EMULATED:  # emulated device memory is host memory
        cai = x.__cuda_array_interface__
        dtype = np.dtype(cai["typestr"])
        count = int(np.prod(cai["shape"]))
        raw = (ctypes.c_char * max(count * dtype.itemsize, 1)).from_address(cai["data"][0])
        return np.frombuffer(raw, dtype, count).reshape(cai["shape"]).copy()
    if hasattr(x, "cpu"):
        x = x.cpu()
        return x.float().numpy() if x.dtype.is_floating_point else x.numpy()
    import cupy

    return cupy.asnumpy(x)


def rounded(a, dtype):
    """The values a takes in dtype, as float64."""
    if dtype == "float32":
        return a.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return a.astype(np.float16).astype(np.float64)
    import ml_dtypes

    return a.astype(ml_dtypes.bfloat16).astype(np.float64)


def ref_maxsim(q, d, qmask, dmask, mode):
    """float64 reference for padded (n, L, dim) inputs with 0/1 or weighted masks."""
    nq, nd = q.shape[0], d.shape[0]
    out = np.zeros((nq, nd))
    for i in range(nq):
        for j in range(nd):
            qm = qmask[i] if qmask is not None else np.ones(q.shape[1])
            dm = dmask[j] if dmask is not None else np.ones(d.shape[1])
            if mode == "remove":
                qi, dj = q[i][qm != 0], d[j][dm != 0]
                if len(qi) == 0:
                    out[i, j] = 0.0
                elif len(dj) == 0:
                    out[i, j] = -np.inf
                else:
                    out[i, j] = (qi @ dj.T).max(axis=1).sum()
            else:
                if q.shape[1] == 0:
                    out[i, j] = 0.0
                elif d.shape[1] == 0:
                    out[i, j] = -np.inf
                else:
                    s = (qm[:, None] * dm[None, :]) * (q[i] @ d[j].T)
                    out[i, j] = s.max(axis=1).sum()
    return out


needs_fw = pytest.mark.skipif(AVAILABLE and _framework() is None, reason="no torch / CuPy to make CUDA arrays")
EDGE_LENGTHS = [0, 1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200]


@needs_gpu
@needs_fw
class TestMaxsimOnGpu:
    @pytest.mark.parametrize("kernel", ["auto", "tensor_core", "simt"])
    @pytest.mark.parametrize("qdt,ddt", [("float32", "bfloat16"), ("bfloat16", "bfloat16"), ("float16", "float16"),
                                         ("float32", "float16"), ("float32", "float32")])
    def test_integer_valued_data_is_exact(self, kernel, qdt, ddt):
        """Small integers: every product and sum is exact in float32, so the scores equal the float64 reference
        bit for bit whatever the order, at every doc length around the 64-token tiles."""
        if kernel == "tensor_core" and ddt == "float32":
            pytest.skip("the tensor-core kernel takes 16-bit docs")
        rng = np.random.default_rng(0)
        dim = 40
        lengths = EDGE_LENGTHS if not QUICK else [0, 1, 17, 64, 65]
        ld = max(lengths)
        d = rng.integers(-3, 4, (len(lengths), ld, dim)).astype(np.float64)
        dmask = np.zeros((len(lengths), ld), np.uint8)
        for j, n in enumerate(lengths):
            dmask[j, :n] = 1
        q = rng.integers(-3, 4, (3, 20, dim)).astype(np.float64)
        qmask = (rng.random((3, 20)) < 0.8).astype(np.uint8)
        qmask[2] = 0  # an empty query
        got = host(cuda.maxsim(dev(q, qdt), dev(d, ddt), query_mask=dev(qmask), doc_mask=dev(dmask), kernel=kernel))
        want = ref_maxsim(q, d, qmask, dmask, "remove")
        np.testing.assert_array_equal(got, want.astype(np.float32))
        assert (got[2] == 0).all() and (got[:2, 0] == -np.inf).all()

    @pytest.mark.parametrize("kernel", ["tensor_core", "simt"])
    def test_weighted_masks_multiply_exactly(self, kernel):
        """PyLate's formula with mask values other than 0 / 1: score = sum_i max_j qm_i dm_j <q_i, d_j>."""
        rng = np.random.default_rng(7)
        q = rng.integers(-3, 4, (3, 10, 24)).astype(np.float64)
        d = rng.integers(-3, 4, (4, 70, 24)).astype(np.float64)
        qm = rng.choice([0.0, 0.5, 1.0, 2.0], (3, 10)).astype(np.float32)
        dm = rng.choice([0.0, 0.5, 1.0, 2.0], (4, 70)).astype(np.float32)
        got = host(cuda.maxsim(dev(q, "float32"), dev(d, "bfloat16"), query_mask=dev(qm), doc_mask=dev(dm),
                               mask_mode="multiply", kernel=kernel))
        np.testing.assert_array_equal(got, ref_maxsim(q, d, qm, dm, "multiply").astype(np.float32))

    def test_long_queries_span_row_blocks(self):
        rng = np.random.default_rng(1)
        q = rng.integers(-2, 3, (2, 150, 32)).astype(np.float64)  # lq_pad 192: three 64-row chunks per query
        d = rng.integers(-2, 3, (5, 70, 32)).astype(np.float64)
        got = host(cuda.maxsim(dev(q, "bfloat16"), dev(d, "bfloat16")))
        np.testing.assert_array_equal(got, ref_maxsim(q, d, None, None, "remove").astype(np.float32))

    @settings(max_examples=8 if QUICK else 40, deadline=None)
    @given(nq=st.integers(1, 5), nd=st.integers(1, 6), lq=st.sampled_from([1, 7, 16, 31, 32, 33, 64, 70]),
           ld=st.sampled_from([1, 8, 63, 64, 65, 130]), dim=st.sampled_from([8, 16, 24, 100, 128, 136, 256, 300]),
           ddt=st.sampled_from(["bfloat16", "float16", "float32"]), qdt=st.sampled_from(["float32", "bfloat16"]),
           mode=st.sampled_from(["remove", "multiply"]), seed=st.integers(0, 2**16))
    def test_random_against_float64(self, nq, nd, lq, ld, dim, ddt, qdt, mode, seed):
        rng = np.random.default_rng(seed)
        q = rng.standard_normal((nq, lq, dim))
        d = rng.standard_normal((nd, ld, dim))
        qmask = (rng.random((nq, lq)) < 0.9).astype(np.float32)
        dmask = (rng.random((nd, ld)) < 0.9).astype(np.float32)
        got = host(cuda.maxsim(dev(q, qdt), dev(d, ddt), query_mask=dev(qmask), doc_mask=dev(dmask),
                               mask_mode=mode))
        qr, dr = rounded(q, qdt), rounded(d, ddt)
        want = ref_maxsim(qr, dr, qmask, dmask, mode)
        # bound: per query token, 2**-14 of sum_k |q_k d_k| (query split error 2**-16, float32 accumulation)
        bound = np.einsum("aik,bjk->abij", np.abs(qr), np.abs(dr)).max(axis=3).sum(axis=2) * 2.0**-14 + 1e-6
        finite = np.isfinite(want)
        assert (np.isfinite(got) == finite).all()
        assert (got[~finite] == want[~finite]).all()
        assert (np.abs(got[finite] - want[finite]) <= bound[finite]).all()

    def test_ragged_equals_padded(self):
        rng = np.random.default_rng(2)
        lengths = np.array([3, 0, 64, 65, 1, 128])
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        tokens = rng.integers(-3, 4, (offsets[-1], 64)).astype(np.float64)
        q = rng.integers(-3, 4, (4, 9, 64)).astype(np.float64)
        padded = np.zeros((len(lengths), lengths.max(), 64))
        mask = np.zeros((len(lengths), lengths.max()), bool)
        for j, n in enumerate(lengths):
            padded[j, :n] = tokens[offsets[j]:offsets[j + 1]]
            mask[j, :n] = True
        a = host(cuda.maxsim(dev(q, "bfloat16"), (dev(tokens, "bfloat16"), offsets)))
        b = host(cuda.maxsim(dev(q, "bfloat16"), (dev(tokens, "bfloat16"), dev(offsets.astype(np.int32)))))
        c = host(cuda.maxsim(dev(q, "bfloat16"), dev(padded, "bfloat16"), doc_mask=dev(mask)))
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        qt = q.reshape(-1, 64)
        qoff = np.arange(5) * 9
        np.testing.assert_array_equal(host(cuda.maxsim((dev(qt, "float32"), qoff), (dev(tokens, "bfloat16"),
                                                                                     offsets))), a)

    def test_topk_equals_cpu_path(self):
        """Integer-valued data (exact scores, many ties): the top-k equals simkern.maxsim_topk's, ties by id."""
        rng = np.random.default_rng(3)
        q = rng.integers(-2, 3, (6, 12, 32)).astype(np.float32)
        n_docs = 100 if QUICK else 300
        lengths = rng.integers(0, 90, n_docs)
        docs = [rng.integers(-2, 3, (n, 32)).astype(np.float32) for n in lengths]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        tokens = np.concatenate(docs)
        cpu_s, cpu_i = simkern.maxsim_topk(list(q), docs, 25)
        s, i = cuda.maxsim_topk(dev(q, "float32"), (dev(tokens, "bfloat16"), offsets), 25)
        np.testing.assert_array_equal(host(i), cpu_i)
        np.testing.assert_array_equal(host(s), cpu_s)
        cand = np.stack([rng.permutation(n_docs)[:40] for _ in range(6)])
        cand[:, -3:] = -1
        cpu_s, cpu_i = simkern.maxsim_topk(list(q), docs, 10, candidates=cand)
        s, i = cuda.maxsim_topk(dev(q, "float32"), (dev(tokens, "bfloat16"), offsets), 10, candidates=dev(cand))
        np.testing.assert_array_equal(host(i), cpu_i)
        np.testing.assert_array_equal(host(s), cpu_s)
        s, i = cuda.maxsim_topk(dev(q, "float32"), (dev(tokens, "bfloat16"), offsets), 500)  # k > n_docs
        assert (host(i)[:, n_docs:] == -1).all() and (host(s)[:, n_docs:] == -np.inf).all()

    def test_non_finite_raises_and_unchecked_calls_return(self):
        q = np.ones((1, 4, 16))
        d = np.ones((2, 5, 16))
        d[1, 2, 3] = np.nan
        with pytest.raises(ValueError, match="NaN or inf"):
            cuda.maxsim(dev(q, "float32"), dev(d, "bfloat16"))
        mask = np.ones((2, 5), bool)
        mask[1, 2] = False  # the NaN token is not scored
        got = host(cuda.maxsim(dev(q, "float32"), dev(d, "bfloat16"), doc_mask=dev(mask)))
        np.testing.assert_array_equal(got, [[64.0, 64.0]])
        big = np.full((1, 2, 16), 1e30)  # finite float32 tokens whose dot products overflow float32
        with pytest.raises(ValueError, match="overflow"):
            cuda.maxsim(dev(big, "float32"), dev(big, "float32"))
        with pytest.raises(ValueError, match="overflow"):
            cuda.maxsim(dev(big, "float32"), dev(big, "bfloat16"))
        cuda.maxsim(dev(q, "float32"), dev(d, "bfloat16"), check_finite=False)  # no raise
        with pytest.raises(RuntimeError, match="tensor-core MaxSim kernel needs float16 / bfloat16 docs"):
            cuda.maxsim(dev(q, "float32"), dev(d, "float32"), kernel="tensor_core")

    def test_results_are_the_callers_type_on_the_callers_stream(self):
        if _framework() != "torch":
            pytest.skip("torch")
        import torch

        q = torch.randn(2, 8, 64, device="cuda", dtype=torch.bfloat16)
        d = torch.randn(5, 30, 64, device="cuda", dtype=torch.bfloat16)
        want = cuda.maxsim(q, d)
        assert isinstance(want, torch.Tensor) and want.device == q.device and want.dtype == torch.float32
        ref = torch.einsum("ash,bth->abst", q.float(), d.float()).max(dim=3).values.sum(dim=2)
        torch.testing.assert_close(want, ref, rtol=1e-2, atol=1e-2)
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            got = cuda.maxsim(q, d, check_finite=False)
        s.synchronize()
        torch.testing.assert_close(got, want, rtol=0, atol=0)

    def test_pylate_colbert_scores_on_cuda_tensors(self):
        if _framework() != "torch":
            pytest.skip("torch")
        import torch
        from simkern.compat import pylate

        rng = np.random.default_rng(4)
        q = rng.standard_normal((3, 7, 32)).astype(np.float32)
        d = rng.standard_normal((4, 11, 32)).astype(np.float32)
        qm = (rng.random((3, 7)) < 0.8).astype(np.float32)
        dm = (rng.random((4, 11)) < 0.8).astype(np.float32)
        cpu = pylate.colbert_scores(torch.from_numpy(q), torch.from_numpy(d), torch.from_numpy(qm),
                                    torch.from_numpy(dm))
        gpu = pylate.colbert_scores(torch.from_numpy(q).cuda(), torch.from_numpy(d).cuda(),
                                    torch.from_numpy(qm).cuda(), torch.from_numpy(dm).cuda())
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)


@needs_gpu
@needs_fw
def test_launches_split_at_the_grid_limits(monkeypatch):
    """Work past gridDim.x (2**31 - 1 blocks) or gridDim.y (65535 queries) is split into several launches; lowered
    limits (SIMKERN_CUDA_MAX_BLOCKS / _MAX_GRID_Y, read at every launch) split these small inputs, with the same
    results as one launch."""
    rng = np.random.default_rng(8)
    q = rng.integers(-3, 4, (5, 20, 32)).astype(np.float64)
    d = rng.integers(-3, 4, (9, 40, 32)).astype(np.float64)
    cand = np.stack([rng.permutation(9)[:6] for _ in range(5)])
    x = rng.standard_normal((600, 16)).astype(np.float32)
    pq = simkern.ProductQuantizer(16, 4).train(x, iters=2)
    codes, queries = pq.encode(x), rng.standard_normal((7, 16)).astype(np.float32)
    fde = simkern.FDE(32, num_repetitions=3)

    def run():
        tables = cuda.pq_distance_tables(dev(queries), pq)
        return [host(cuda.maxsim(dev(q, "float32"), dev(d, "bfloat16"), kernel=kern)) for kern in ("auto", "simt")] + [
            host(a) for a in cuda.maxsim_topk(dev(q, "float32"), dev(d, "bfloat16"), 3, candidates=cand)] + [
            host(tables), host(cuda.pq_adc(tables, dev(codes)))] + [
            host(a) for a in cuda.pq_scan_topk(tables, dev(codes), 5)] + [
            host(cuda.fde_encode_documents(fde, dev(d, "float32")))]

    whole = run()
    monkeypatch.setenv("SIMKERN_CUDA_MAX_BLOCKS", "4")
    monkeypatch.setenv("SIMKERN_CUDA_MAX_GRID_Y", "3")
    for a, b in zip(run(), whole):
        np.testing.assert_array_equal(a, b)


@needs_gpu
@needs_fw
class TestPqOnGpu:
    @pytest.mark.parametrize("metric", ["l2", "ip"])
    def test_tables_and_topk_equal_the_cpu_bit_for_bit(self, metric):
        rng = np.random.default_rng(5)
        x = rng.standard_normal((3000, 32)).astype(np.float32)
        pq = simkern.ProductQuantizer(32, 8, metric=metric).train(x, iters=4)
        codes = pq.encode(x)
        queries = rng.standard_normal((17, 32)).astype(np.float32)
        tables = cuda.pq_distance_tables(dev(queries), pq, metric=metric)
        cpu_tables = pq.distance_tables(queries)
        np.testing.assert_array_equal(host(tables), cpu_tables)
        np.testing.assert_array_equal(host(cuda.pq_adc(tables, dev(codes))), pq.adc(queries, codes))
        adc = pq.adc(queries, codes)
        for k in (1, 10, 100, 2048):
            s, i = cuda.pq_scan_topk(tables, dev(codes), k, metric=metric)
            s, i = host(s), host(i)
            for r in range(len(queries)):
                order = np.lexsort((np.arange(len(codes)), adc[r] if metric == "l2" else -adc[r]))[:k]
                np.testing.assert_array_equal(i[r, :len(order)], order)
                np.testing.assert_array_equal(s[r, :len(order)], adc[r][order])
        small = codes[:5]
        s, i = cuda.pq_scan_topk(tables, dev(small), 8, metric=metric)
        assert (host(i)[:, 5:] == -1).all()
        assert (host(s)[:, 5:] == (np.inf if metric == "l2" else -np.inf)).all()


@needs_gpu
@needs_fw
class TestFdeOnGpu:
    @pytest.mark.parametrize("config", [
        {},
        {"projection": "identity", "projection_dimension": None, "num_repetitions": 3},
        {"num_simhash_projections": 0},
        {"final_projection_dimension": 256},
        {"fill_empty_partitions": False, "num_simhash_projections": 7},
    ])
    def test_bit_identical_to_the_cpu_encoder(self, config):
        rng = np.random.default_rng(6)
        fde = simkern.FDE(48, seed=7, **config)
        lengths = [1, 2, 5, 40, 129, 300] if not QUICK else [1, 5, 40]
        docs = [rng.standard_normal((n, 48)).astype(np.float32) for n in lengths]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        tokens = np.concatenate(docs)
        want_d = fde.encode_documents(docs)
        want_q = fde.encode_queries(docs)
        got_d = host(cuda.fde_encode_documents(fde, (dev(tokens, "float32"), offsets)))
        got_q = host(cuda.fde_encode_queries(fde, (dev(tokens, "float32"), offsets)))
        np.testing.assert_array_equal(got_d, want_d)
        np.testing.assert_array_equal(got_q, want_q)
        padded = np.zeros((len(docs), max(lengths), 48), np.float32)
        mask = np.zeros((len(docs), max(lengths)), bool)
        for j, a in enumerate(docs):
            padded[j, :len(a)] = a
            mask[j, :len(a)] = True
        np.testing.assert_array_equal(host(cuda.fde_encode_documents(fde, dev(padded), mask=dev(mask))), want_d)

    def test_empty_documents(self):
        fde = simkern.FDE(16)
        tokens = np.ones((3, 16), np.float32)
        with pytest.raises(ValueError, match=r"documents\[1\] is empty"):
            cuda.fde_encode_documents(fde, (dev(tokens), np.array([0, 3, 3])))
        got = host(cuda.fde_encode_documents(fde, (dev(tokens), np.array([0, 3, 3])), empty="zeros"))
        assert (got[1] == 0).all()
        np.testing.assert_array_equal(got[0], fde.encode_documents([tokens])[0])
