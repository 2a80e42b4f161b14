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
  // size(), never on timing; which thread runs a chunk does (threads claim chunks as they come
  // free, so a descheduled worker never holds up the others). thread_index identifies the
  // running thread (0 = the caller) and is unique among chunks that run at the same time.
  // fn must not throw and must not call run() on the same pool.
  using Fn = std::function<void(int thread_index, int64_t begin, int64_t end)>;
  void run(int64_t n, const Fn& fn, int64_t grain = 1);

 private:
  void worker(int index);
  // Claims and runs chunks of job `gen` until none is left.
  void work(int index, uint32_t gen);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  // (job generation << 32) | next chunk to claim. Claiming by compare-and-swap within one
  // generation means a late worker can never run a chunk of a newer job with an old view.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> done_{0};      // chunks finished in the current job
  std::atomic<int> sleepers_{0};  // workers blocked on cv_
  std::atomic<bool> stop_{false};
  // The current job: written by run() before it publishes the generation.
  const Fn* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
};

}  // namespace moe
