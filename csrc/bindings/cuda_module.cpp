// simkern._cuda: the optional CUDA module (built with SIMKERN_ENABLE_CUDA; the CPU module _core never links CUDA).
//
// Arrays arrive from simkern/cuda.py already parsed (DLPack capsules are read here, __cuda_array_interface__ dicts
// there) as specs: (data pointer, dtype code of api.hpp, shape tuple, strides tuple in elements). The launchers set
// the arrays' device, release the GIL and enqueue on the caller's stream (an integer cudaStream_t). Outputs are
// DeviceBuffer objects: stream-ordered allocations (cudaMallocAsync) exported through DLPack
// (__dlpack__ / __dlpack_device__) and __cuda_array_interface__, so torch, CuPy and JAX wrap them without a copy.
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "api.hpp"

namespace py = pybind11;
using simkern::cuda::CudaError;
using simkern::cuda::DeviceArray;
using simkern::cuda::i64;

namespace {

// --- DLPack 0.x ABI (the legacy, unversioned capsule "dltensor": what __dlpack__() returns without max_version) -
struct DLDevice {
  std::int32_t device_type;  // 1 CPU, 2 CUDA, 3 CUDA host, 13 CUDA managed
  std::int32_t device_id;
};
struct DLDataType {
  std::uint8_t code;  // 0 int, 1 uint, 2 float, 4 bfloat, 6 bool
  std::uint8_t bits;
  std::uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;  // elements; NULL = C-contiguous
  std::uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};
constexpr std::int32_t kDLCUDA = 2;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw CudaError(std::string("simkern.cuda: ") + what + ": " + cudaGetErrorString(e));
  }
}

// Runs on `device`, restoring the caller's current device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (device != previous_) check(cudaSetDevice(device), "cudaSetDevice");
    device_ = device;
  }
  ~DeviceGuard() {
    if (device_ != previous_) (void)cudaSetDevice(previous_);
  }

 private:
  int previous_ = 0, device_ = 0;
};

int dtype_size(int dtype) {
  switch (dtype) {
    case simkern::cuda::kF32:
    case simkern::cuda::kI32:
      return 4;
    case simkern::cuda::kF16:
    case simkern::cuda::kBF16:
      return 2;
    case simkern::cuda::kI64:
      return 8;
    default:
      return 1;
  }
}

DLDataType dl_dtype(int dtype) {
  switch (dtype) {
    case simkern::cuda::kF32:
      return {2, 32, 1};
    case simkern::cuda::kF16:
      return {2, 16, 1};
    case simkern::cuda::kBF16:
      return {4, 16, 1};
    case simkern::cuda::kU8:
      return {1, 8, 1};
    case simkern::cuda::kI8:
      return {0, 8, 1};
    case simkern::cuda::kI32:
      return {0, 32, 1};
    case simkern::cuda::kI64:
      return {0, 64, 1};
    default:
      return {6, 8, 1};
  }
}

// --- outputs ----------------------------------------------------------------------------------------------------

// One stream-ordered allocation, freed on the stream it was made on when the last owner (the DeviceBuffer, or a
// DLPack consumer's tensor) lets go.
struct Allocation {
  void* ptr = nullptr;
  int device = 0;
  std::uintptr_t stream = 0;
  Allocation(std::size_t bytes, int dev, std::uintptr_t s) : device(dev), stream(s) {
    DeviceGuard g(dev);
    if (bytes) check(cudaMallocAsync(&ptr, bytes, reinterpret_cast<cudaStream_t>(s)), "cudaMallocAsync");
  }
  ~Allocation() {
    if (!ptr) return;
    int previous = 0;
    (void)cudaGetDevice(&previous);
    (void)cudaSetDevice(device);
    (void)cudaFreeAsync(ptr, reinterpret_cast<cudaStream_t>(stream));
    (void)cudaSetDevice(previous);
  }
  Allocation(const Allocation&) = delete;
  Allocation& operator=(const Allocation&) = delete;
};

struct DeviceBuffer {
  std::shared_ptr<Allocation> alloc;
  int dtype = 0;
  std::vector<i64> shape;
  DeviceBuffer(std::vector<i64> shape_, int dtype_, int device, std::uintptr_t stream)
      : dtype(dtype_), shape(std::move(shape_)) {
    i64 n = 1;
    for (const i64 s : shape) {
      if (s < 0) throw py::value_error("DeviceBuffer: negative extent");
      n *= s;
    }
    alloc = std::make_shared<Allocation>(static_cast<std::size_t>(n) * dtype_size(dtype), device, stream);
  }
  std::uintptr_t ptr() const { return reinterpret_cast<std::uintptr_t>(alloc->ptr); }
};

struct ExportContext {
  std::shared_ptr<Allocation> alloc;
  std::vector<std::int64_t> shape;
  DLManagedTensor managed{};
};

void export_deleter(DLManagedTensor* self) { delete static_cast<ExportContext*>(self->manager_ctx); }

void capsule_destructor(PyObject* capsule) {
  // A capsule nobody consumed still owns its tensor (a consumer renames it "used_dltensor").
  if (PyCapsule_IsValid(capsule, "dltensor")) {
    auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
    if (m && m->deleter) m->deleter(m);
  }
}

py::object to_dlpack(const DeviceBuffer& b, const py::object& stream, const py::object& max_version,
                     const py::object& dl_device, const py::object& copy) {
  // max_version: the legacy capsule is returned whatever the consumer supports (the protocol allows it).
  (void)max_version;
  if (!copy.is_none() && copy.cast<bool>())
    throw py::buffer_error("simkern.cuda: DeviceBuffer.__dlpack__(copy=True) is not supported");
  if (!dl_device.is_none()) {
    const auto dev = dl_device.cast<py::tuple>();
    if (dev[0].cast<int>() != kDLCUDA || dev[1].cast<int>() != b.alloc->device)
      throw py::buffer_error("simkern.cuda: DeviceBuffer cannot be exported to another device");
  }
  // The consumer's stream waits for ours when they differ (the data was written on the allocation's stream).
  if (!stream.is_none()) {
    const auto consumer = stream.cast<std::intptr_t>();
    if (consumer == -1) {
      // no synchronisation asked for
    } else {
      const std::uintptr_t theirs = consumer == 1 ? 0 : static_cast<std::uintptr_t>(consumer);
      if (theirs != b.alloc->stream) {
        DeviceGuard g(b.alloc->device);
        cudaEvent_t ev;
        check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
        check(cudaEventRecord(ev, reinterpret_cast<cudaStream_t>(b.alloc->stream)), "cudaEventRecord");
        check(cudaStreamWaitEvent(reinterpret_cast<cudaStream_t>(theirs), ev, 0), "cudaStreamWaitEvent");
        (void)cudaEventDestroy(ev);
      }
    }
  }
  auto* ctx = new ExportContext();
  ctx->alloc = b.alloc;
  ctx->shape.assign(b.shape.begin(), b.shape.end());
  DLTensor& t = ctx->managed.dl_tensor;
  t.data = b.alloc->ptr;
  t.device = {kDLCUDA, b.alloc->device};
  t.ndim = static_cast<std::int32_t>(ctx->shape.size());
  t.dtype = dl_dtype(b.dtype);
  t.shape = ctx->shape.data();
  t.strides = nullptr;
  t.byte_offset = 0;
  ctx->managed.manager_ctx = ctx;
  ctx->managed.deleter = export_deleter;
  PyObject* cap = PyCapsule_New(&ctx->managed, "dltensor", capsule_destructor);
  if (!cap) {
    delete ctx;
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(cap);
}

// --- inputs -----------------------------------------------------------------------------------------------------

// A DLPack capsule's tensor as a tuple: (data + byte_offset, device_type, device_id, (code, bits, lanes), shape,
// strides or None). The capsule stays with the caller, who keeps it alive for the call.
py::tuple dlpack_view(const py::capsule& cap) {
  if (!PyCapsule_IsValid(cap.ptr(), "dltensor"))
    throw py::type_error("expected an unconsumed DLPack capsule named 'dltensor'");
  const auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"));
  const DLTensor& t = m->dl_tensor;
  py::tuple shape(t.ndim);
  for (int i = 0; i < t.ndim; ++i) shape[i] = t.shape[i];
  py::object strides = py::none();
  if (t.strides) {
    py::tuple s(t.ndim);
    for (int i = 0; i < t.ndim; ++i) s[i] = t.strides[i];
    strides = s;
  }
  const auto data = reinterpret_cast<std::uintptr_t>(t.data) + t.byte_offset;
  return py::make_tuple(data, t.device.device_type, t.device.device_id,
                        py::make_tuple(t.dtype.code, t.dtype.bits, t.dtype.lanes), shape, strides);
}

// spec: (ptr, dtype, shape, strides) -> DeviceArray
DeviceArray array_of(const py::handle& spec) {
  DeviceArray a;
  if (spec.is_none()) return a;
  const auto t = spec.cast<py::tuple>();
  a.data = reinterpret_cast<const void*>(t[0].cast<std::uintptr_t>());
  a.dtype = t[1].cast<int>();
  const auto shape = t[2].cast<std::vector<i64>>();
  const auto strides = t[3].cast<std::vector<i64>>();
  if (shape.size() > 4 || strides.size() != shape.size()) throw py::value_error("bad array spec");
  a.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < a.ndim; ++i) {
    a.shape[i] = shape[static_cast<std::size_t>(i)];
    a.strides[i] = strides[static_cast<std::size_t>(i)];
  }
  return a;
}

// spec: (tokens, offsets or None, mask or None, n_sets, max_len)
simkern::cuda::SetBatch sets_of(const py::tuple& spec) {
  simkern::cuda::SetBatch b;
  b.tokens = array_of(spec[0]);
  b.offsets = array_of(spec[1]);
  b.mask = array_of(spec[2]);
  b.n_sets = spec[3].cast<i64>();
  b.max_len = spec[4].cast<i64>();
  return b;
}

simkern::cuda::MaxsimArgs maxsim_args(const py::tuple& q, const py::tuple& d, int mask_mode,
                                      const py::object& candidates, int path, bool check_finite) {
  simkern::cuda::MaxsimArgs a;
  a.queries = sets_of(q);
  a.docs = sets_of(d);
  a.mask_mode = static_cast<simkern::cuda::MaskMode>(mask_mode);
  a.candidates = array_of(candidates);
  a.path = static_cast<simkern::cuda::MaxsimPath>(path);
  a.check_finite = check_finite;
  return a;
}

py::dict report_dict(const simkern::cuda::CallReport& r) {
  py::dict d;
  d["flags"] = r.flags;
  d["first_empty"] = r.first_empty;
  d["path"] = std::string(r.path);
  return d;
}

py::dict device_properties(int device) {
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  py::dict d;
  d["index"] = device;
  d["name"] = std::string(p.name);
  d["compute_capability"] = py::make_tuple(p.major, p.minor);
  d["total_memory"] = static_cast<std::uint64_t>(p.totalGlobalMem);
  d["multiprocessors"] = p.multiProcessorCount;
  d["shared_memory_per_block_optin"] = static_cast<std::uint64_t>(p.sharedMemPerBlockOptin);
  d["l2_cache"] = p.l2CacheSize;
  return d;
}

}  // namespace

PYBIND11_MODULE(_cuda, m, py::mod_gil_not_used()) {
  m.doc() = "simkern's optional CUDA kernels (use simkern.cuda)";
  py::register_exception<CudaError>(m, "CudaError", PyExc_RuntimeError);

  m.def("build_info", [] {
    py::dict d;
    d["architectures"] = std::string(SIMKERN_CUDA_ARCHITECTURES);
    d["nvcc"] = std::string(SIMKERN_NVCC_VERSION);
    int runtime = 0;
    (void)cudaRuntimeGetVersion(&runtime);
    d["runtime_version"] = runtime;
#if defined(SIMKERN_CUDA_EMU)
    d["cudart"] = "none: the CPU emulator of tools/cuda_emu";
    d["emulated"] = true;
#else
    d["cudart"] = "static";
    d["emulated"] = false;
#endif
    return d;
  });
  m.def("device_facts", [] {
    const auto f = simkern::cuda::device_facts();
    py::dict d;
    d["count"] = f.count;
    d["error"] = f.error;
    d["error_string"] = f.error_string;
    d["driver_version"] = f.driver_version;
    d["runtime_version"] = f.runtime_version;
    return d;
  });
  m.def("device_properties", &device_properties, py::arg("device"));
  m.def("current_device", [] {
    int d = 0;
    check(cudaGetDevice(&d), "cudaGetDevice");
    return d;
  });
  m.def("dlpack_view", &dlpack_view, py::arg("capsule"));
  m.def("copy_to_host", [](std::uintptr_t src, std::size_t bytes, int device, std::uintptr_t stream) {
    std::string host(bytes, '\0');
    DeviceGuard g(device);
    {
      py::gil_scoped_release nogil;
      check(cudaMemcpyAsync(host.data(), reinterpret_cast<const void*>(src), bytes, cudaMemcpyDeviceToHost,
                            reinterpret_cast<cudaStream_t>(stream)),
            "cudaMemcpyAsync");
      check(cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
    }
    return py::bytes(host);
  });
  m.def("pointer_device", [](std::uintptr_t ptr) {
    cudaPointerAttributes attr{};
    check(cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr)), "cudaPointerGetAttributes");
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
      throw py::type_error("simkern.cuda: the array's memory is not device memory");
    return attr.device;
  });
  m.def("stream_wait", [](int device, std::uintptr_t producer, std::uintptr_t consumer) {
    DeviceGuard g(device);
    cudaEvent_t ev;
    check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventRecord(ev, reinterpret_cast<cudaStream_t>(producer)), "cudaEventRecord");
    check(cudaStreamWaitEvent(reinterpret_cast<cudaStream_t>(consumer), ev, 0), "cudaStreamWaitEvent");
    (void)cudaEventDestroy(ev);
  });
  m.def("synchronize", [](int device, std::uintptr_t stream) {
    DeviceGuard g(device);
    py::gil_scoped_release nogil;
    check(cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
  });

  py::class_<DeviceBuffer>(m, "DeviceBuffer",
                           "A device allocation exported through DLPack and __cuda_array_interface__")
      .def(py::init<std::vector<i64>, int, int, std::uintptr_t>(), py::arg("shape"), py::arg("dtype"),
           py::arg("device"), py::arg("stream"))
      .def_property_readonly("ptr", &DeviceBuffer::ptr)
      .def_property_readonly("device", [](const DeviceBuffer& b) { return b.alloc->device; })
      .def_property_readonly("stream", [](const DeviceBuffer& b) { return b.alloc->stream; })
      .def_property_readonly("shape", [](const DeviceBuffer& b) { return py::tuple(py::cast(b.shape)); })
      .def_property_readonly("dtype_code", [](const DeviceBuffer& b) { return b.dtype; })
      .def("__dlpack__", &to_dlpack, py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
           py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def_property_readonly("__cuda_array_interface__",
                             [](const DeviceBuffer& b) {
                               static const char* typestr[] = {"<f4", "<f2", "<V2", "|u1", "|i1", "<i4", "<i8", "|b1"};
                               py::dict d;
                               d["shape"] = py::tuple(py::cast(b.shape));
                               d["typestr"] = typestr[b.dtype];
                               d["data"] = py::make_tuple(b.ptr(), false);
                               d["strides"] = py::none();
                               d["version"] = 3;
                               d["stream"] = b.alloc->stream == 0 ? std::uintptr_t{1} : b.alloc->stream;
                               return d;
                             })
      .def("__dlpack_device__", [](const DeviceBuffer& b) { return py::make_tuple(kDLCUDA, b.alloc->device); })
      .def("upload", [](DeviceBuffer& b, const py::buffer& host) {
        const py::buffer_info info = host.request();
        std::size_t bytes = static_cast<std::size_t>(info.size * info.itemsize);
        i64 n = 1;
        for (const i64 s : b.shape) n *= s;
        if (bytes != static_cast<std::size_t>(n) * dtype_size(b.dtype))
          throw py::value_error("upload: the host buffer's size differs from the device buffer's");
        DeviceGuard g(b.alloc->device);
        const void* src = info.ptr;
        py::gil_scoped_release nogil;
        check(cudaMemcpyAsync(b.alloc->ptr, src, bytes, cudaMemcpyHostToDevice,
                              reinterpret_cast<cudaStream_t>(b.alloc->stream)),
              "cudaMemcpyAsync");
        check(cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(b.alloc->stream)), "cudaStreamSynchronize");
      });

  m.def("maxsim_scores", [](const py::tuple& q, const py::tuple& d, int mask_mode, const py::object& candidates,
                            int path, bool check_finite, std::uintptr_t out, int device, std::uintptr_t stream) {
    const simkern::cuda::MaxsimArgs a = maxsim_args(q, d, mask_mode, candidates, path, check_finite);
    DeviceGuard g(device);
    simkern::cuda::CallReport r;
    {
      py::gil_scoped_release nogil;
      r = simkern::cuda::maxsim_scores(a, reinterpret_cast<float*>(out), stream);
    }
    return report_dict(r);
  });
  m.def("maxsim_topk",
        [](const py::tuple& q, const py::tuple& d, int mask_mode, const py::object& candidates, int path,
           bool check_finite, i64 k, std::uintptr_t scores, std::uintptr_t ids, int device, std::uintptr_t stream) {
          const simkern::cuda::MaxsimArgs a = maxsim_args(q, d, mask_mode, candidates, path, check_finite);
          DeviceGuard g(device);
          simkern::cuda::CallReport r;
          {
            py::gil_scoped_release nogil;
            r = simkern::cuda::maxsim_topk(a, k, reinterpret_cast<float*>(scores), reinterpret_cast<i64*>(ids), stream);
          }
          return report_dict(r);
        });
  m.attr("MAX_TOPK") = simkern::cuda::kMaxTopK;
  m.attr("FDE_MAX_SIMHASH_BITS") = simkern::cuda::kFdeMaxSimhashBits;

  m.def("pq_tables", [](const py::tuple& queries, const py::tuple& codebooks, bool l2, std::uintptr_t out, int device,
                        std::uintptr_t stream) {
    const DeviceArray q = array_of(queries), cb = array_of(codebooks);
    DeviceGuard g(device);
    py::gil_scoped_release nogil;
    simkern::cuda::pq_tables(q, cb, l2, reinterpret_cast<float*>(out), stream);
  });
  m.def("pq_adc",
        [](const py::tuple& tables, const py::tuple& codes, std::uintptr_t out, int device, std::uintptr_t stream) {
          const DeviceArray t = array_of(tables), c = array_of(codes);
          DeviceGuard g(device);
          py::gil_scoped_release nogil;
          simkern::cuda::pq_adc(t, c, reinterpret_cast<float*>(out), stream);
        });
  m.def("pq_adc_topk", [](const py::tuple& tables, const py::tuple& codes, i64 k, bool larger_is_better,
                          std::uintptr_t scores, std::uintptr_t ids, int device, std::uintptr_t stream) {
    const DeviceArray t = array_of(tables), c = array_of(codes);
    DeviceGuard g(device);
    py::gil_scoped_release nogil;
    simkern::cuda::pq_adc_topk(t, c, k, larger_is_better, reinterpret_cast<float*>(scores), reinterpret_cast<i64*>(ids),
                               stream);
  });

  // plan: dict of the FDEDevicePlan fields (device pointers as integers)
  m.def("fde_encode", [](const py::dict& plan, const py::tuple& sets, bool documents, bool empty_zeros,
                         bool check_finite, std::uintptr_t out, int device, std::uintptr_t stream) {
    simkern::cuda::FDEDevicePlan p;
    p.dim = plan["dim"].cast<i64>();
    p.repetitions = plan["repetitions"].cast<i64>();
    p.simhash_bits = plan["simhash_bits"].cast<i64>();
    p.projection_dim = plan["projection_dim"].cast<i64>();
    p.final_dim = plan["final_dim"].cast<i64>();
    p.ams = plan["ams"].cast<bool>();
    p.fill_empty = plan["fill_empty"].cast<bool>();
    p.gray_decoded_target = plan["gray_decoded_target"].cast<bool>();
    const auto ptr = [&](const char* key) { return plan[key].cast<std::uintptr_t>(); };
    p.simhash = reinterpret_cast<const float*>(ptr("simhash"));
    p.ams_csr_start = reinterpret_cast<const std::int32_t*>(ptr("ams_csr_start"));
    p.ams_csr_index = reinterpret_cast<const std::int32_t*>(ptr("ams_csr_index"));
    p.ams_csr_sign = reinterpret_cast<const float*>(ptr("ams_csr_sign"));
    p.final_csr_start = reinterpret_cast<const std::int32_t*>(ptr("final_csr_start"));
    p.final_csr_index = reinterpret_cast<const std::int32_t*>(ptr("final_csr_index"));
    p.final_csr_sign = reinterpret_cast<const float*>(ptr("final_csr_sign"));
    const auto b = sets_of(sets);
    DeviceGuard g(device);
    simkern::cuda::CallReport r;
    {
      py::gil_scoped_release nogil;
      r = simkern::cuda::fde_encode(p, b, documents, empty_zeros, check_finite, reinterpret_cast<float*>(out), stream);
    }
    return report_dict(r);
  });
}
