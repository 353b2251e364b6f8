// simkern/thread_pool.hpp - the library's own persistent thread pool (no OpenMP).
//
// parallel_for(n_tasks, n_threads, fn) runs fn(task, thread_index) for every task in [0, n_tasks) on up to
// n_threads threads (the caller is thread 0 and always takes part); n_threads <= 0 (a binding's threads=None)
// means default_num_threads(), resolved here so that no family can forget it. Tasks are handed out dynamically from an
// atomic counter, so kernels must make each task's result independent of which thread runs it.
// - The first exception thrown by any task stops the hand-out and is rethrown in the caller.
// - Workers are created lazily and kept; the pool grows to the largest thread count asked for.
// - fork(): the child drops the parent's pool (its threads do not exist there) and builds a new one on use.
// - Concurrent callers: one job owns the pool at a time; a caller that finds it busy (another Python thread,
//   or a task calling parallel_for) runs its tasks inline on its own thread. Results are the same.
// - Interruption (Ctrl-C): a binding installs a checker for the duration of a call (InterruptScope). The calling
//   thread runs it between tasks, at most every kInterruptCheckMs; when it returns true no further task starts and
//   parallel_for throws Interrupted once the tasks already running have finished.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>

namespace simkern {

class Interrupted : public std::runtime_error {
 public:
  Interrupted() : std::runtime_error("interrupted") {}
};

// Installs `check` for parallel_for calls made by this thread while the scope lives (scopes nest).
class InterruptScope {
 public:
  explicit InterruptScope(bool (*check)());
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  bool (*previous_)();
};

int default_num_threads();            // SIMKERN_NUM_THREADS, else hardware concurrency
void set_default_num_threads(int n);  // n >= 1
int resolve_threads(int requested);   // requested <= 0 -> default

// Test probe (timing-free): the widest thread count, after resolution, that parallel_for was asked for on the
// calling thread since the last reset (0: none). tests/test_threads.py checks that threads=None reaches
// default_num_threads() in every family.
int parallel_for_widest_request(bool reset);

void parallel_for(std::int64_t n_tasks, int n_threads, const std::function<void(std::int64_t, int)>& fn);

}  // namespace simkern
