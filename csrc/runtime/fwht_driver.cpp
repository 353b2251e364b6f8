// FWHT driver (contract in simkern/fwht.hpp): passes with h below a cache-sized block of rows run block by block
// (blocks are independent: threads take blocks), larger h run one pass at a time over blocks of 2h rows (threads
// take blocks, and column strips when there are fewer blocks than threads). A 1-D transform first runs the passes
// inside rows of m values, then the (n / m, m) row transform. Pass order per element: h increasing, always.
#include <algorithm>
#include <cmath>

#include "simkern/dispatch.hpp"
#include "simkern/fwht.hpp"
#include "simkern/thread_pool.hpp"

namespace simkern {
namespace {

constexpr i64 kBlockBytes = i64{1} << 18;  // rows per in-cache block: 256 KiB of them
constexpr i64 kRowValues = 64;             // 1-D transforms run as rows of 64 values
constexpr i64 kMinStrip = 64;              // narrowest column strip a thread takes

template <class T>
using PassFn = void (*)(T*, i64, i64, i64, i64, i64);

template <class T>
void rows_transform(T* x, i64 n, i64 d, PassFn<T> passes, int threads) {
  i64 block = 2;
  while (block * 2 <= n && block * 2 * d * static_cast<i64>(sizeof(T)) <= kBlockBytes) block *= 2;
  block = std::min(block, n);
  parallel_for(n / block, threads, [&](i64 b, int) { passes(x + b * block * d, block, d, d, 1, block); });
  for (i64 h = block; h < n; h *= 2) {
    const i64 blocks = n / (2 * h);
    const i64 strips = blocks >= threads ? 1 : std::max<i64>(1, std::min<i64>(threads, d / kMinStrip));
    const i64 strip = (d + strips - 1) / strips;
    parallel_for(blocks * strips, threads, [&](i64 task, int) {
      const i64 b = task / strips, c0 = (task % strips) * strip, width = std::min(strip, d - c0);
      if (width > 0) passes(x + b * 2 * h * d + c0, 2 * h, d, width, h, 2 * h);
    });
  }
}

template <class T>
void transform(T* x, i64 n, i64 d, bool normalize, int threads, PassFn<T> passes) {
  threads = resolve_threads(threads);
  if (n > 1) {
    if (d == 1 && n > kRowValues) {  // low bits inside rows of m values, then the rows
      const i64 m = kRowValues, rows = n / m, per_task = std::max<i64>(1, 4096 / m);
      parallel_for((rows + per_task - 1) / per_task, threads, [&](i64 t, int) {
        for (i64 r = t * per_task; r < std::min(rows, (t + 1) * per_task); ++r) passes(x + r * m, m, 1, 1, 1, m);
      });
      rows_transform(x, rows, m, passes, threads);
    } else {
      rows_transform(x, n, d, passes, threads);
    }
  }
  if (normalize && n > 1) {
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(n)));
    const i64 total = n * d, chunk = i64{1} << 16;
    parallel_for((total + chunk - 1) / chunk, threads, [&](i64 t, int) {
      for (i64 i = t * chunk; i < std::min(total, (t + 1) * chunk); ++i) x[i] *= scale;
    });
  }
}

}  // namespace

void fwht(float* x, i64 n, i64 d, bool normalize, int threads) {
  transform<float>(x, n, d, normalize, threads, fwht_kernels().passes_f32);
}
void fwht(double* x, i64 n, i64 d, bool normalize, int threads) {
  transform<double>(x, n, d, normalize, threads, fwht_kernels().passes_f64);
}

}  // namespace simkern
