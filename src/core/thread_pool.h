// A fixed pool of worker threads for data-parallel loops. The calling thread takes part, so a pool
// of size 1 runs everything inline.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moe {

class ThreadPool {
 public:
  // n_threads <= 0 means the number of hardware threads.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(thread_index, begin, end) over a split of [0, n) into size() contiguous chunks
  // aligned to `grain` and returns when all are done. The split depends only on n, grain and
  // size(), never on timing. fn must not throw and must not call run() on the same pool.
  using Fn = std::function<void(int thread_index, int64_t begin, int64_t end)>;
  void run(int64_t n, const Fn& fn, int64_t grain = 1);

 private:
  void worker(int index);
  void run_chunk(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;  // guarded by mu_; also read with atomic spin below
  std::atomic<uint64_t> generation_atomic_{0};
  std::atomic<int> pending_{0};
  bool stop_ = false;
  const Fn* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
};

}  // namespace moe
