// Device queries for simkern.cuda.is_available() / device_info(): never throw, so that a machine without a GPU or
// driver reports why instead of failing at import (the CUDA runtime is linked statically and loads libcuda lazily).
#include "common.cuh"

namespace simkern {
namespace cuda {

DeviceFacts device_facts() {
  DeviceFacts f;
  const cudaError_t e = cudaGetDeviceCount(&f.count);
  if (e != cudaSuccess) {
    f.count = 0;
    f.error = static_cast<int>(e);
    f.error_string = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    (void)cudaGetLastError();
  }
  (void)cudaDriverGetVersion(&f.driver_version);
  (void)cudaRuntimeGetVersion(&f.runtime_version);
  return f;
}

}  // namespace cuda
}  // namespace simkern
