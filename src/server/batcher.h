// Continuous batching for one model: requests join and leave between decode steps, every active
// sequence advances in one batched forward per step, and long prompts are prefilled a chunk at a
// time so running streams keep their pace. Each sequence owns a KV cache sized to its request,
// and the caches of all active sequences stay within a byte budget.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"
#include "runtime/sampler.h"

namespace moe::server {

struct TokenOut {
  int32_t id = 0;
  float logprob = 0.0f;                        // log-softmax of the model's logits at id (when asked)
  std::vector<std::pair<int32_t, float>> top;  // the n_logprobs most likely tokens, best first
};

enum class Finish { kNone, kLength, kEog, kContext, kCancelled, kError };

struct GenParams {
  std::vector<int32_t> prompt;  // at least one token
  int64_t max_tokens = 128;     // >= 1
  SamplingParams sampling;
  int n_logprobs = -1;  // -1: no logprobs; 0: the sampled token's; k: and the top k
  bool ignore_eog = false;
};

// The channel between the batcher thread and the one HTTP thread that owns a request.
class Sequence {
 public:
  explicit Sequence(GenParams p) : params_(std::move(p)) {}

  // Waits up to `timeout` for tokens or the end, appending what arrived to *out. Returns false
  // once the sequence has finished and every token has been taken.
  bool wait(std::vector<TokenOut>* out, std::chrono::milliseconds timeout);
  // Stops generation (client gone, stop string seen); the batcher frees the cache at its next step.
  void cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  Finish finish() const;
  std::string error() const;
  int64_t n_prompt() const { return static_cast<int64_t>(params_.prompt.size()); }
  const GenParams& params() const { return params_; }

 private:
  friend class Batcher;
  void push(TokenOut t);
  void end(Finish f, std::string error = {});

  const GenParams params_;
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<TokenOut> pending_;
  Finish finish_ = Finish::kNone;
  std::string error_;
};

struct BatcherOptions {
  int64_t max_seqs = 64;        // sequences decoded together
  int64_t max_queue = 256;      // waiting requests; beyond this submit() refuses
  int64_t prefill_chunk = 256;  // prompt tokens per step, over all prefilling sequences
  int64_t kv_budget_bytes = int64_t{4} << 30;
  int64_t n_ctx = 4096;  // most tokens (prompt + reply) of one sequence
  int threads = 0;       // 0: hardware concurrency
};

struct BatcherStats {
  int64_t queued = 0;
  int64_t active = 0;
  int64_t kv_bytes = 0;  // caches of the active sequences
  int64_t kv_budget = 0;
  int64_t steps = 0;
  int64_t prompt_tokens = 0;  // evaluated since start
  int64_t generated_tokens = 0;
  std::vector<std::vector<int64_t>> expert_counts;  // [n_layer][n_expert] routed slots since start
};

class Batcher {
 public:
  // *model must outlive the batcher. Starts the scheduling thread.
  Batcher(const LoadedModel& model, BatcherOptions opt);
  ~Batcher();  // ends every sequence with kCancelled, then joins
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Queues a request. Returns nullptr when the queue is full (the caller answers 429). Throws
  // moe::Error when the request could never run (prompt + max_tokens over n_ctx, or its cache
  // over the whole budget).
  std::shared_ptr<Sequence> submit(GenParams p);
  BatcherStats stats() const;
  const BatcherOptions& options() const { return opt_; }
  // Cache bytes a sequence of n_ctx tokens needs.
  int64_t cache_bytes(int64_t n_ctx) const;

 private:
  struct Active;
  void loop();
  void step(std::vector<std::unique_ptr<Active>>& active, ThreadPool& pool);
  // Drops the sequences done() says are over, freeing their cache budget; updates the stats.
  void retire(std::vector<std::unique_ptr<Active>>& active, int64_t& kv_used,
              const std::function<bool(Active&)>& done);

  const LoadedModel& m_;
  const BatcherOptions opt_;
  int64_t kv_bytes_per_token_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Sequence>> queue_;
  bool stop_ = false;
  BatcherStats stats_;
  std::thread thread_;
};

}  // namespace moe::server
