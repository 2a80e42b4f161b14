#include "core/thread_pool.h"

#include <algorithm>

namespace moe {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    claim_.fetch_add(uint64_t{1} << 32);
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::work(int index, uint32_t gen) {
  for (;;) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    int chunk;
    do {
      if (static_cast<uint32_t>(c >> 32) != gen) return;
      chunk = static_cast<int>(c & 0xffffffffu);
      if (chunk >= n_threads_) return;
    } while (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire));
    // The job cannot finish while this chunk is claimed and not done, so its fields are stable.
    const int64_t blocks = (n_ + grain_ - 1) / grain_;
    const int64_t per = blocks / n_threads_;
    const int64_t extra = blocks % n_threads_;
    const int64_t b0 = chunk * per + std::min<int64_t>(chunk, extra);
    const int64_t b1 = b0 + per + (chunk < extra ? 1 : 0);
    const int64_t begin = std::min(n_, b0 * grain_);
    const int64_t end = std::min(n_, b1 * grain_);
    if (begin < end) (*fn_)(index, begin, end);
    done_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run(int64_t n, const Fn& fn, int64_t grain) {
  if (n <= 0) return;
  if (n_threads_ == 1) {
    fn(0, 0, n);
    return;
  }
  fn_ = &fn;
  n_ = n;
  grain_ = std::max<int64_t>(1, grain);
  done_.store(0, std::memory_order_relaxed);
  const uint32_t gen = static_cast<uint32_t>(claim_.load(std::memory_order_relaxed) >> 32) + 1;
  claim_.store(static_cast<uint64_t>(gen) << 32, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  work(0, gen);
  // Chunks still running on workers finish within microseconds for decode-sized work.
  for (int spins = 0; done_.load(std::memory_order_acquire) != n_threads_; ++spins) {
    if (spins < 4000) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::worker(int index) {
  uint32_t seen = 0;
  for (;;) {
    // Spin for the next job before sleeping: decode issues many small jobs back to back.
    uint32_t gen = seen;
    for (int spins = 0; spins < 20000; ++spins) {
      gen = static_cast<uint32_t>(claim_.load(std::memory_order_acquire) >> 32);
      if (gen != seen) break;
      cpu_relax();
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      cv_.wait(lock, [&] {
        gen = static_cast<uint32_t>(claim_.load(std::memory_order_seq_cst) >> 32);
        return gen != seen || stop_.load();
      });
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    }
    if (stop_.load()) return;
    seen = gen;
    work(index, gen);
  }
}

}  // namespace moe
