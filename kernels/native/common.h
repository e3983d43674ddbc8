// What every native kernel shares: the one-line error type (like Edge4KError) and the
// thread policy of the row-parallel kernels.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
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

// The kernels' worker threads, started on first use and kept: a kernel call costs a wake-up, not
// a thread start (a 4K frame makes about 50 calls, one per tile blend among them).
class WorkerPool {
 public:
  static WorkerPool& get() {
    static WorkerPool* pool = new WorkerPool();   // never destroyed: its workers wait until exit
    return *pool;
  }

  // job(part) for part in [0, parts), part 0 on the calling thread; returns once all are done.
  // false, having run nothing, when the pool is busy (a call from another thread, or from inside a
  // job) or this is a forked child (the workers stayed in the parent): the caller runs it otherwise.
  bool run(int parts, const std::function<void(int)>& job) {
    if (getpid() != pid_) return false;
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (static_cast<int>(workers_.size()) < parts - 1) {
        const int index = static_cast<int>(workers_.size()) + 1;
        workers_.emplace_back([this, index] { work(index); });
        workers_.back().detach();
      }
      job_ = &job;
      parts_ = parts;
      pending_ = parts - 1;
      ++round_;
    }
    wake_.notify_all();
    std::exception_ptr error;
    try {
      job(0);
    } catch (...) {
      error = std::current_exception();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });   // job refers to the caller's frame
    if (error) std::rethrow_exception(error);
    return true;
  }

 private:
  void work(int index) {
    unsigned long seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return round_ != seen; });
      seen = round_;
      if (index >= parts_) continue;   // not needed this round
      const auto* job = job_;
      lock.unlock();
      (*job)(index);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  const pid_t pid_ = getpid();
  std::mutex busy_, mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int parts_ = 0, pending_ = 0;
  unsigned long round_ = 0;
};

// body(begin, end) over [0, n), split across the kernel threads (WorkerPool); small jobs run inline.
template <typename F>
void parallel_for(long n, F&& body, long min_per_thread = 4096) {
  const int cores = kernel_threads() > 0 ? kernel_threads() : static_cast<int>(std::thread::hardware_concurrency());
  const long parts = std::max(1L, std::min<long>(std::max(cores, 1), n / std::max(min_per_thread, 1L)));
  if (parts == 1) {
    body(0L, n);
    return;
  }
  if (WorkerPool::get().run(static_cast<int>(parts), [&](int p) { body(n * p / parts, n * (p + 1) / parts); }))
    return;
  std::vector<std::thread> threads;
  for (long p = 1; p < parts; ++p) threads.emplace_back(body, n * p / parts, n * (p + 1) / parts);
  body(0L, n / parts);
  for (auto& t : threads) t.join();
}

}  // namespace edge4k
