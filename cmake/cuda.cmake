# The optional CUDA module simkern._cuda (csrc/cuda/*.cu + csrc/bindings/cuda_module.cpp).
#
# SIMKERN_ENABLE_CUDA: OFF (default), ON or AUTO.
#   OFF  - no CUDA anywhere: a plain `pip install .` never looks for nvcc (the development and CI machines have
#          nvcc 13 and no GPU; compiling the kernels for five architectures costs minutes on 2 cores).
#   ON   - build _cuda; fails when CMake cannot find a CUDA compiler.
#   AUTO - build _cuda when check_language(CUDA) finds nvcc, else continue without it (a message says which).
# SIMKERN_CUDA_ARCHITECTURES (default "75-real;80-real;86-real;89-real;90"): SASS for sm_75 (Turing), sm_80 (A100),
#   sm_86 / sm_89 (Ampere / Ada workstation cards), sm_90 (H100 / H200), plus compute_90 PTX that the driver JITs
#   for newer GPUs (Blackwell). nvcc 13 starts at sm_75. CI compiles "80-real" only (tools/cuda/build.sh).
# The CPU module (_core) never links CUDA; _cuda links the CUDA runtime statically (CUDA::cudart_static: no
# libcudart at import, libcuda.so is opened lazily by the runtime), so it imports on machines without a GPU or a
# driver and says so through simkern.cuda.is_available().
set(SIMKERN_ENABLE_CUDA OFF CACHE STRING "Build the optional CUDA module simkern._cuda: OFF, ON or AUTO")
set_property(CACHE SIMKERN_ENABLE_CUDA PROPERTY STRINGS OFF ON AUTO)
set(SIMKERN_CUDA_ARCHITECTURES "75-real;80-real;86-real;89-real;90" CACHE STRING
    "CUDA architectures of simkern._cuda (CMAKE_CUDA_ARCHITECTURES syntax)")

string(TOUPPER "${SIMKERN_ENABLE_CUDA}" _simkern_cuda_mode)
set(SIMKERN_BUILD_CUDA OFF)
if(_simkern_cuda_mode STREQUAL "ON" OR _simkern_cuda_mode STREQUAL "AUTO")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(SIMKERN_BUILD_CUDA ON)
  elseif(_simkern_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "SIMKERN_ENABLE_CUDA=ON but CMake found no CUDA compiler (nvcc): put it on PATH or set "
                        "CMAKE_CUDA_COMPILER, or build with SIMKERN_ENABLE_CUDA=OFF")
  else()
    message(STATUS "simkern: SIMKERN_ENABLE_CUDA=AUTO and no CUDA compiler found: building without simkern._cuda")
  endif()
elseif(NOT _simkern_cuda_mode STREQUAL "OFF")
  message(FATAL_ERROR "SIMKERN_ENABLE_CUDA must be OFF, ON or AUTO, got '${SIMKERN_ENABLE_CUDA}'")
endif()

if(SIMKERN_BUILD_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "${SIMKERN_CUDA_ARCHITECTURES}")
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  message(STATUS "simkern: building simkern._cuda with nvcc ${CMAKE_CUDA_COMPILER_VERSION} for "
                 "${CMAKE_CUDA_ARCHITECTURES}")

  add_library(simkern_cuda STATIC
    csrc/cuda/runtime.cu
    csrc/cuda/maxsim.cu
    csrc/cuda/pq.cu
    csrc/cuda/fde.cu
  )
  target_include_directories(simkern_cuda PUBLIC csrc/cuda csrc/include)
  set_target_properties(simkern_cuda PROPERTIES POSITION_INDEPENDENT_CODE ON CUDA_SEPARABLE_COMPILATION OFF)
  # No --use_fast_math: the FDE and PQ kernels rely on IEEE division and explicit rounding (bit-identical to the
  # CPU). nvcc's warnings are errors (CI compiles this on every run).
  target_compile_options(simkern_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Werror=all-warnings>)
  target_link_libraries(simkern_cuda PUBLIC CUDA::cudart_static)

  pybind11_add_module(_cuda MODULE csrc/bindings/cuda_module.cpp)
  target_link_libraries(_cuda PRIVATE simkern_cuda CUDA::cudart_static)
  target_compile_options(_cuda PRIVATE ${SIMKERN_WARNINGS} ${SIMKERN_BASELINE_FLAGS})
  string(REPLACE ";" " " _simkern_archs_str "${CMAKE_CUDA_ARCHITECTURES}")
  target_compile_definitions(_cuda PRIVATE SIMKERN_CUDA_ARCHITECTURES="${_simkern_archs_str}"
                             SIMKERN_NVCC_VERSION="${CMAKE_CUDA_COMPILER_VERSION}")
  install(TARGETS _cuda DESTINATION simkern)
endif()
