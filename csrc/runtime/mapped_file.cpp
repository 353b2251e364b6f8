// MappedFile: see simkern/mapped_file.hpp. POSIX only (the package targets Linux and macOS).
#include "simkern/mapped_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <stdexcept>
#include <system_error>

namespace simkern {
namespace {

// The handler's table: [start, end) of each live mapping and its fault flag. Slots are claimed under a mutex;
// the handler reads them lock-free (a signal handler may not take locks).
constexpr int kSlots = 1024;
struct Slot {
  std::atomic<std::uintptr_t> start{0}, end{0};
  std::atomic<int> faulted{0};
};
Slot g_slots[kSlots];
std::mutex g_slots_mutex;
struct sigaction g_previous;
std::once_flag g_install_once;

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  for (Slot& slot : g_slots) {
    const std::uintptr_t start = slot.start.load(std::memory_order_acquire);
    if (start == 0 || addr < start || addr >= slot.end.load(std::memory_order_acquire)) continue;
    const std::uintptr_t page = addr & ~static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE) - 1);
    // The page vanished (file truncated): put a private zero page in its place and let the load complete.
    if (mmap(reinterpret_cast<void*>(page), static_cast<std::size_t>(sysconf(_SC_PAGESIZE)), PROT_READ,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
      slot.faulted.store(1, std::memory_order_release);
      return;
    }
    break;
  }
  // Not ours: what would have happened without us.
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction) return g_previous.sa_sigaction(sig, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN && g_previous.sa_handler) {
    return g_previous.sa_handler(sig);
  }
  signal(sig, SIG_DFL);  // returning re-executes the faulting access, which now takes the default action
}

void install_handler() {
  std::call_once(g_install_once, [] {
    struct sigaction action{};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &g_previous);
  });
}

std::int64_t ns(const struct timespec& t) { return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; }

#if defined(__APPLE__)
#define SIMKERN_MTIME(st) (st).st_mtimespec
#else
#define SIMKERN_MTIME(st) (st).st_mtim
#endif

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), path);
  struct stat st{};
  if (fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    const int err = S_ISREG(st.st_mode) ? errno : EINVAL;
    ::close(fd_);
    throw std::system_error(err, std::generic_category(), path + " (not a regular file)");
  }
  size_ = static_cast<std::size_t>(st.st_size);
  mtime_ns_ = ns(SIMKERN_MTIME(st));
  if (size_ == 0) return;  // nothing to map (the caller reports an empty file)
  install_handler();
  base_ = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
  if (base_ == MAP_FAILED) {
    const int err = errno;
    base_ = nullptr;
    ::close(fd_);
    throw std::system_error(err, std::generic_category(), path);
  }
  std::lock_guard<std::mutex> guard(g_slots_mutex);
  for (int i = 0; i < kSlots; ++i) {
    if (g_slots[i].start.load(std::memory_order_relaxed) != 0) continue;
    g_slots[i].faulted.store(0, std::memory_order_relaxed);
    g_slots[i].end.store(reinterpret_cast<std::uintptr_t>(base_) + size_, std::memory_order_release);
    g_slots[i].start.store(reinterpret_cast<std::uintptr_t>(base_), std::memory_order_release);
    slot_ = i;
    break;
  }
  if (slot_ < 0) {
    munmap(base_, size_);
    ::close(fd_);
    throw std::system_error(EMFILE, std::generic_category(), path + " (more than 1024 files mapped at once)");
  }
}

MappedFile::~MappedFile() {
  if (slot_ >= 0) {
    std::lock_guard<std::mutex> guard(g_slots_mutex);
    g_slots[slot_].start.store(0, std::memory_order_release);
    g_slots[slot_].end.store(0, std::memory_order_release);
  }
  if (base_) munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
}

void MappedFile::check() const {
  if (slot_ >= 0 && g_slots[slot_].faulted.load(std::memory_order_acquire))
    throw std::runtime_error(path_ + ": the file was truncated while it was memory-mapped (load it again)");
  struct stat st{};
  if (fstat(fd_, &st) != 0) throw std::runtime_error(path_ + ": cannot stat the memory-mapped file");
  // (Not the change time: our own save() renames a new file over this one's name, which changes this inode's
  // ctime without touching its bytes.)
  if (static_cast<std::size_t>(st.st_size) != size_ || ns(SIMKERN_MTIME(st)) != mtime_ns_)
    throw std::runtime_error(path_ +
                             ": the file changed on disk while it was memory-mapped (it must not be "
                             "modified in place while an index maps it; load it again)");
}

}  // namespace simkern
