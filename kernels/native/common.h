// What every native kernel shares: the one-line error type (like Edge4KError) and the
// thread policy of the row-parallel kernels.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <thread>
#include <vector>

namespace edge4k {

// A problem with the input or the build, explained in one line.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Threads the parallel kernels use: set_kernel_threads(n) (the runner's and `edge4k run`'s
// --threads), else every core. Each kernel splits its rows into that many contiguous ranges,
// so results do not depend on the thread count.
inline int& kernel_threads() {
  static int threads = 0;
  return threads;
}
inline void set_kernel_threads(int threads) { kernel_threads() = std::max(threads, 0); }

// body(begin, end) over [0, n), split across the kernel threads; small jobs run inline.
template <typename F>
void parallel_for(long n, F&& body, long min_per_thread = 4096) {
  const int cores = kernel_threads() > 0 ? kernel_threads() : static_cast<int>(std::thread::hardware_concurrency());
  const long parts = std::max(1L, std::min<long>(std::max(cores, 1), n / std::max(min_per_thread, 1L)));
  if (parts == 1) {
    body(0L, n);
    return;
  }
  std::vector<std::thread> pool;
  for (long p = 1; p < parts; ++p) pool.emplace_back(body, n * p / parts, n * (p + 1) / parts);
  body(0L, n / parts);
  for (auto& t : pool) t.join();
}

}  // namespace edge4k
