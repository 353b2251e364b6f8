// Persistent thread pool: see simkern/thread_pool.hpp for the contract.
#include "simkern/thread_pool.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sched.h>
#define SIMKERN_POSIX 1
#endif

namespace simkern {
namespace {

constexpr int kMaxThreads = 1024;
constexpr int kInterruptCheckMs = 50;

thread_local bool (*t_interrupt_check)() = nullptr;  // installed by InterruptScope on the calling thread

// Runs the interrupt checker at most every kInterruptCheckMs (only on the thread that installed it).
class InterruptPoller {
 public:
  InterruptPoller() : check_(t_interrupt_check), last_(std::chrono::steady_clock::now()) {}
  bool interrupted() {
    if (!check_) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(kInterruptCheckMs)) return false;
    last_ = now;
    return check_();
  }

 private:
  bool (*check_)();
  std::chrono::steady_clock::time_point last_;
};

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stopping_ = true;
    }
    cv_start_.notify_all();
    for (auto& t : workers_) t.join();
  }

  // Runs the job with `n_threads` threads (caller included) if the pool is free; returns false if it is busy.
  bool try_run(std::int64_t n_tasks, int n_threads, const std::function<void(std::int64_t, int)>& fn) {
    std::unique_lock<std::mutex> owner(busy_, std::try_to_lock);
    if (!owner.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lk(m_);
      while (static_cast<int>(workers_.size()) < n_threads - 1) {
        const int index = static_cast<int>(workers_.size()) + 1;
        workers_.emplace_back([this, index, gen = generation_] { worker_loop(index, gen); });
      }
      fn_ = &fn;
      n_tasks_ = n_tasks;
      next_.store(0);
      failed_.store(false);
      error_ = nullptr;
      participants_ = n_threads - 1;
      finished_ = 0;
      ++generation_;
    }
    cv_start_.notify_all();
    run_tasks(0);
    std::exception_ptr error;
    {
      std::unique_lock<std::mutex> lk(m_);
      cv_done_.wait(lk, [this] { return finished_ == participants_; });
      fn_ = nullptr;
      error = error_;
      error_ = nullptr;
    }
    if (error) std::rethrow_exception(error);
    return true;
  }

 private:
  void run_tasks(int thread_index) {
    InterruptPoller poller;  // has a checker only on the calling thread (index 0)
    for (;;) {
      if (failed_.load(std::memory_order_relaxed)) return;
      if (thread_index == 0 && poller.interrupted()) {
        std::lock_guard<std::mutex> lk(error_m_);
        if (!failed_.exchange(true)) error_ = std::make_exception_ptr(Interrupted());
        return;
      }
      const std::int64_t task = next_.fetch_add(1, std::memory_order_relaxed);
      if (task >= n_tasks_) return;
      try {
        (*fn_)(task, thread_index);
      } catch (...) {
        std::lock_guard<std::mutex> lk(error_m_);
        if (!failed_.exchange(true)) error_ = std::current_exception();
      }
    }
  }

  void worker_loop(int index, std::uint64_t seen) {
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      cv_start_.wait(lk, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      if (index > participants_) continue;
      lk.unlock();
      run_tasks(index);
      lk.lock();
      if (++finished_ == participants_) cv_done_.notify_one();
    }
  }

  std::mutex busy_;  // held by the caller that owns the pool for one job
  std::mutex m_;
  std::condition_variable cv_start_, cv_done_;
  std::vector<std::thread> workers_;
  const std::function<void(std::int64_t, int)>* fn_ = nullptr;
  std::int64_t n_tasks_ = 0;
  std::atomic<std::int64_t> next_{0};
  std::atomic<bool> failed_{false};
  std::mutex error_m_;
  std::exception_ptr error_;
  std::uint64_t generation_ = 0;
  int participants_ = 0;
  int finished_ = 0;
  bool stopping_ = false;
};

std::mutex g_pool_mutex;
Pool* g_pool = nullptr;  // leaked in a fork child (its threads are gone there); never destroyed otherwise
std::atomic<int> g_default_threads{0};

#if SIMKERN_POSIX
void atfork_prepare() { g_pool_mutex.lock(); }
void atfork_parent() { g_pool_mutex.unlock(); }
void atfork_child() {
  g_pool = nullptr;  // the parent's workers do not exist in the child; build a fresh pool on first use
  g_pool_mutex.unlock();
}
std::once_flag g_atfork_once;
#endif

Pool* get_pool() {
#if SIMKERN_POSIX
  std::call_once(g_atfork_once, [] { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); });
#endif
  std::lock_guard<std::mutex> lk(g_pool_mutex);
  if (!g_pool) g_pool = new Pool();
  return g_pool;
}

int hardware_threads() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

int env_threads() {
  const char* env = std::getenv("SIMKERN_NUM_THREADS");
  if (!env || !*env) return 0;
  char* end = nullptr;
  const long n = std::strtol(env, &end, 10);
  if (end == env || *end != '\0' || n < 1) return 0;  // invalid values are ignored
  return n > kMaxThreads ? kMaxThreads : static_cast<int>(n);
}

}  // namespace

InterruptScope::InterruptScope(bool (*check)()) : previous_(t_interrupt_check) { t_interrupt_check = check; }
InterruptScope::~InterruptScope() { t_interrupt_check = previous_; }

int default_num_threads() {
  int n = g_default_threads.load();
  if (n > 0) return n;
  n = env_threads();
  if (n <= 0) n = hardware_threads();
  int expected = 0;
  g_default_threads.compare_exchange_strong(expected, n);
  return g_default_threads.load();
}

void set_default_num_threads(int n) {
  if (n < 1) n = 1;
  if (n > kMaxThreads) n = kMaxThreads;
  g_default_threads.store(n);
}

int resolve_threads(int requested) {
  if (requested <= 0) return default_num_threads();
  return requested > kMaxThreads ? kMaxThreads : requested;
}

namespace {
thread_local int t_widest_request = 0;  // parallel_for_widest_request(): widest resolved request on this thread
}  // namespace

int parallel_for_widest_request(bool reset) {
  const int widest = t_widest_request;
  if (reset) t_widest_request = 0;
  return widest;
}

void parallel_for(std::int64_t n_tasks, int n_threads, const std::function<void(std::int64_t, int)>& fn) {
  n_threads = resolve_threads(n_threads);  // <= 0 (threads=None) means every pool thread, in every family
  if (n_threads > t_widest_request) t_widest_request = n_threads;
  if (n_tasks <= 0) return;
  if (n_threads > n_tasks) n_threads = static_cast<int>(n_tasks);
  if (n_threads > 1 && get_pool()->try_run(n_tasks, n_threads, fn)) return;
  InterruptPoller poller;  // single thread, or the pool is busy: run inline
  for (std::int64_t task = 0; task < n_tasks; ++task) {
    if (poller.interrupted()) throw Interrupted();
    fn(task, 0);
  }
}

}  // namespace simkern
