// simkern/mapped_file.hpp - a file mapped read-only and private, guarded against changes made while it is mapped.
//
// Mapping a file that another program truncates makes every access past the new end raise SIGBUS, which kills the
// process; rewriting it in place changes what the mapping reads. MappedFile defends against both:
// - check() compares the open file's size and modification time with those seen at mapping time and
//   throws std::runtime_error when they differ (or after a caught SIGBUS). Callers run it before and after every
//   use of the bytes, so a change is reported instead of producing results from changed data.
// - a process-wide SIGBUS handler, installed with the first mapping, recognises faults inside a registered
//   mapping, maps a zero page over the vanished page (so the faulting load completes and reads zeros) and marks the
//   mapping as faulted; faults anywhere else go to the handler that was installed before (or the default action).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace simkern {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws std::system_error (errno) on open/map failures
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::uint8_t* data() const { return static_cast<const std::uint8_t*>(base_); }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  void check() const;  // throws std::runtime_error naming the file when it changed under the mapping

 private:
  std::string path_;
  int fd_ = -1;
  void* base_ = nullptr;
  std::size_t size_ = 0;
  std::int64_t mtime_ns_ = 0;
  int slot_ = -1;  // in the SIGBUS handler's table (-1: not registered)
};

}  // namespace simkern
