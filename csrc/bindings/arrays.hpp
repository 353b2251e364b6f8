// Helpers shared by the bind_*.cpp files: argument checks with messages that name the argument.
// Bindings take `py::array_t<T, py::array::c_style>` with .noconvert(): the Python layer decides whether to
// convert and says so in its docs; nothing here copies.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <sstream>
#include <string>

#include "simkern/common.hpp"
#include "simkern/thread_pool.hpp"

namespace simkern::bind {

namespace py = pybind11;

template <class T>
using CArray = py::array_t<T, py::array::c_style>;

inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i) << (a.ndim() == 1 ? "," : "");
  s << ")";
  return s.str();
}

inline void require(bool ok, const std::string& message) {
  if (!ok) throw py::value_error(message);
}
// A literal message is not turned into a std::string (a heap allocation past 15 characters) unless it is thrown:
// require() runs per value in some loops (the finiteness check of every vector a load restores).
inline void require(bool ok, const char* message) {
  if (!ok) throw py::value_error(message);
}

// The result array: a new one, or the caller's `out` after checking dtype, layout, shape and writability (the one
// helper behind every out= of the bindings; the Python side also refuses misaligned or overlapping arrays).
template <class T = float>
py::array_t<T> result_array(const py::object& out, std::vector<py::ssize_t> shape) {
  if (out.is_none()) return py::array_t<T>(shape);
  if (!py::isinstance<py::array>(out) ||
      py::reinterpret_borrow<py::array>(out).dtype().num() != py::dtype::of<T>().num())
    throw py::type_error("out must be a " + std::string(py::str(py::dtype::of<T>())) + " numpy array");
  py::array_t<T> arr = py::reinterpret_borrow<py::array_t<T>>(out);
  std::ostringstream want;
  want << "(";
  for (std::size_t i = 0; i < shape.size(); ++i) want << (i ? ", " : "") << shape[i] << (shape.size() == 1 ? "," : "");
  want << ")";
  bool same = arr.ndim() == static_cast<py::ssize_t>(shape.size());
  for (std::size_t i = 0; same && i < shape.size(); ++i) same = arr.shape(i) == shape[i];
  if (!same) throw py::value_error("out must have shape " + want.str() + ", got " + shape_str(arr));
  if (!(arr.flags() & py::array::c_style)) throw py::value_error("out must be C-contiguous");
  if (!arr.writeable()) throw py::value_error("out must be writeable");
  return arr;
}

inline void require_ndim(const py::array& a, int ndim, const char* name) {
  if (a.ndim() != ndim) {
    std::ostringstream s;
    s << name << " must be " << ndim << "-D, got shape " << shape_str(a);
    throw py::value_error(s.str());
  }
}

// An optional 1-D array argument: None gives an empty CArray; otherwise a C-contiguous 1-D array of exactly
// dtype T (never converted: a bool or int32 array where uint8 / int64 is expected would be misread), else
// TypeError / ValueError naming it. Every optional mask or id list of the bindings comes through here.
template <class T>
CArray<T> optional_vector(const py::object& obj, const char* name) {
  if (obj.is_none()) return CArray<T>();
  if (!py::isinstance<CArray<T>>(obj))
    throw py::type_error(std::string(name) + " must be a C-contiguous numpy array of dtype " +
                         std::string(py::str(py::dtype::of<T>())));
  CArray<T> arr = py::reinterpret_borrow<CArray<T>>(obj);
  require_ndim(arr, 1, name);
  return arr;
}

// CSR offsets: 1-D, length n + 1, offsets[0] == 0, non-decreasing, offsets[n] == total_rows.
inline i64 check_offsets(const CArray<i64>& offsets, i64 total_rows, const char* name) {
  require_ndim(offsets, 1, name);
  const i64 len = offsets.shape(0);
  require(len >= 1, std::string(name) + " must have at least one entry (offsets[0] == 0)");
  const i64* o = offsets.data();
  require(o[0] == 0, std::string(name) + "[0] must be 0, got " + std::to_string(o[0]));
  for (i64 i = 0; i + 1 < len; ++i) {
    if (o[i + 1] < o[i]) {
      throw py::value_error(std::string(name) + " must be non-decreasing, but " + name + "[" + std::to_string(i + 1) +
                            "] = " + std::to_string(o[i + 1]) + " < " + std::to_string(o[i]));
    }
  }
  require(o[len - 1] == total_rows, std::string(name) + "[-1] must equal the number of token rows (" +
                                        std::to_string(total_rows) + "), got " + std::to_string(o[len - 1]));
  return len - 1;
}

// Every id in [0, n) (or -1 when allow_padding).
inline void check_ids(const i64* ids, i64 count, i64 n, const char* name, bool allow_padding) {
  for (i64 i = 0; i < count; ++i) {
    const i64 id = ids[i];
    if (id >= n || id < (allow_padding ? -1 : 0)) {
      throw py::value_error(std::string(name) + " contains " + std::to_string(id) + " at position " +
                            std::to_string(i) + "; valid ids are 0.." + std::to_string(n - 1) +
                            (allow_padding ? " (or -1 for padding)" : ""));
    }
  }
}

// Runs a driver with the GIL released. Ctrl-C stays live: between tasks the calling thread briefly takes the GIL
// back to let Python look at pending signals (every 50 ms at most); a KeyboardInterrupt stops the remaining
// tasks and is raised here.
// Python runs signal handlers on its main thread only, so only calls made there poll (others never pay for the
// GIL round trip). The main thread's id is read from the threading module when _core is imported.
inline unsigned long main_thread_ident = 0;

inline bool python_signal_pending() {
  py::gil_scoped_acquire acquire;
  return PyErr_CheckSignals() != 0;
}

template <class Fn>
void run_without_gil(Fn&& fn) {
  try {
    const bool on_main_thread = PyThread_get_thread_ident() == main_thread_ident;
    InterruptScope interrupt(on_main_thread ? python_signal_pending : nullptr);
    py::gil_scoped_release release;
    fn();
  } catch (const Interrupted&) {
    // The exception PyErr_CheckSignals set (KeyboardInterrupt or the handler's); KeyboardInterrupt when the
    // interruption came from elsewhere (a test hook).
    if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
  }
}

}  // namespace simkern::bind
