#include "core/thread_pool.h"

#include <algorithm>

namespace moe {

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    ++generation_;
    generation_atomic_.store(generation_, std::memory_order_release);
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run_chunk(int index) {
  const int64_t blocks = (n_ + grain_ - 1) / grain_;
  const int64_t per = blocks / n_threads_;
  const int64_t extra = blocks % n_threads_;
  const int64_t b0 = index * per + std::min<int64_t>(index, extra);
  const int64_t b1 = b0 + per + (index < extra ? 1 : 0);
  const int64_t begin = std::min(n_, b0 * grain_);
  const int64_t end = std::min(n_, b1 * grain_);
  if (begin < end) (*fn_)(index, begin, end);
}

void ThreadPool::run(int64_t n, const Fn& fn, int64_t grain) {
  if (n <= 0) return;
  if (n_threads_ == 1) {
    fn(0, 0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    grain_ = std::max<int64_t>(1, grain);
    pending_.store(n_threads_ - 1, std::memory_order_relaxed);
    ++generation_;
    generation_atomic_.store(generation_, std::memory_order_release);
  }
  cv_.notify_all();
  run_chunk(0);
  // Workers finish within microseconds for decode-sized work: spin, then yield.
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins)
    if (spins > 2000) std::this_thread::yield();
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin briefly for the next job before sleeping: decode issues many small jobs back to back.
    for (int spins = 0; spins < 20000 && generation_atomic_.load(std::memory_order_acquire) == seen; ++spins) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (stop_) return;
    }
    run_chunk(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace moe
