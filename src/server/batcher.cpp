#include "server/batcher.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "core/error.h"
#include "core/thread_pool.h"

namespace moe::server {

bool Sequence::wait(std::vector<TokenOut>* out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !pending_.empty() || finish_ != Finish::kNone; });
  for (TokenOut& t : pending_) out->push_back(std::move(t));
  pending_.clear();
  return finish_ == Finish::kNone;
}

void Sequence::cancel() {
  cancelled_.store(true, std::memory_order_relaxed);
  cv_.notify_all();
}

Finish Sequence::finish() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finish_;
}

std::string Sequence::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

void Sequence::push(TokenOut t) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back(std::move(t));
  }
  cv_.notify_all();
}

void Sequence::end(Finish f, std::string error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finish_ != Finish::kNone) return;
    finish_ = f;
    error_ = std::move(error);
  }
  cv_.notify_all();
}

// A sequence the batcher is running: its cache, sampler and how far its prompt has been evaluated.
struct Batcher::Active {
  std::shared_ptr<Sequence> seq;
  KvCache cache;
  Sampler sampler;
  int64_t n_past = 0;  // positions in the cache
  int64_t n_prompt_done = 0;
  int64_t n_generated = 0;
  int32_t next = -1;  // sampled, not yet evaluated
  int64_t bytes = 0;
};

namespace {

// log-softmax of logits at id, and the k best (id, logprob) pairs.
void logprobs(const float* logits, int64_t n_vocab, int32_t id, int k, TokenOut* out) {
  const float mx = *std::max_element(logits, logits + n_vocab);
  double sum = 0.0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  const float log_z = mx + static_cast<float>(std::log(sum));
  out->logprob = logits[id] - log_z;
  if (k <= 0) return;
  std::vector<int32_t> idx(static_cast<size_t>(n_vocab));
  std::iota(idx.begin(), idx.end(), 0);
  const int64_t kk = std::min<int64_t>(k, n_vocab);
  std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (int64_t i = 0; i < kk; ++i) out->top.emplace_back(idx[i], logits[idx[i]] - log_z);
}

}  // namespace

Batcher::Batcher(const LoadedModel& model, BatcherOptions opt) : m_(model), opt_(opt) {
  MOE_CHECK(opt_.max_seqs >= 1 && opt_.max_queue >= 0 && opt_.prefill_chunk >= 1 && opt_.n_ctx >= 2,
            "batcher: max_seqs, prefill_chunk must be >= 1 and n_ctx >= 2");
  const KvCache probe = m_.model->new_cache(1);
  kv_bytes_per_token_ = static_cast<int64_t>(probe.bytes());
  stats_.kv_budget = opt_.kv_budget_bytes;
  thread_ = std::thread([this] { loop(); });
}

Batcher::~Batcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

int64_t Batcher::cache_bytes(int64_t n_ctx) const { return n_ctx * kv_bytes_per_token_; }

std::shared_ptr<Sequence> Batcher::submit(GenParams p) {
  const int64_t n_prompt = static_cast<int64_t>(p.prompt.size());
  MOE_CHECK(n_prompt >= 1, "the prompt is empty");
  MOE_CHECK(p.max_tokens >= 1, "max_tokens must be at least 1");
  MOE_CHECK(n_prompt + 1 <= opt_.n_ctx, "the prompt has ", n_prompt, " tokens; the context holds ",
            opt_.n_ctx);
  const int64_t n_vocab = m_.model->config().n_vocab;
  for (int32_t id : p.prompt) MOE_CHECK(id >= 0 && id < n_vocab, "token id ", id, " is out of range");
  // The reply is cut at the context's end (finish "length"), as OpenAI's servers do.
  MOE_CHECK(cache_bytes(std::min(n_prompt + p.max_tokens, opt_.n_ctx)) <= opt_.kv_budget_bytes,
            "the request needs more KV cache than the server's budget");
  auto seq = std::make_shared<Sequence>(std::move(p));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (static_cast<int64_t>(queue_.size()) >= opt_.max_queue) return nullptr;
    queue_.push_back(seq);
    stats_.queued = static_cast<int64_t>(queue_.size());
  }
  cv_.notify_all();
  return seq;
}

BatcherStats Batcher::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Batcher::retire(std::vector<std::unique_ptr<Active>>& active, int64_t& kv_used,
                     const std::function<bool(Active&)>& done) {
  for (auto& a : active) {
    if (done(*a)) {
      kv_used -= a->bytes;
      a.reset();
    }
  }
  std::erase(active, nullptr);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.active = static_cast<int64_t>(active.size());
  stats_.kv_bytes = kv_used;
}

void Batcher::loop() {
  ThreadPool pool(opt_.threads);
  std::vector<std::unique_ptr<Active>> active;
  int64_t kv_used = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !active.empty(); });
      if (stop_) break;
      // Admit in arrival order while the cache budget allows; a request that does not fit waits
      // for running ones to finish rather than being overtaken (no starvation of long prompts).
      while (!queue_.empty() && static_cast<int64_t>(active.size()) < opt_.max_seqs) {
        std::shared_ptr<Sequence>& s = queue_.front();
        if (s->cancelled()) {
          s->end(Finish::kCancelled);
          queue_.pop_front();
          continue;
        }
        const GenParams& p = s->params();
        const int64_t n_ctx = std::min(static_cast<int64_t>(p.prompt.size()) + p.max_tokens, opt_.n_ctx);
        const int64_t bytes = cache_bytes(n_ctx);
        if (kv_used + bytes > opt_.kv_budget_bytes) break;
        auto a = std::unique_ptr<Active>(
            new Active{s, m_.model->new_cache(n_ctx),
                       Sampler(p.sampling, static_cast<int32_t>(m_.model->config().n_vocab))});
        a->bytes = bytes;
        for (int32_t id : p.prompt) a->sampler.accept(id);
        kv_used += bytes;
        active.push_back(std::move(a));
        queue_.pop_front();
      }
      stats_.queued = static_cast<int64_t>(queue_.size());
    }
    // Cancelled sequences leave before the step, so their caches are free for the next admission.
    retire(active, kv_used, [](Active& a) {
      if (a.seq->cancelled()) a.seq->end(Finish::kCancelled);
      return a.seq->finish() != Finish::kNone;
    });
    if (active.empty()) continue;
    try {
      step(active, pool);
    } catch (const std::exception& e) {
      for (auto& a : active) a->seq->end(Finish::kError, e.what());
    }
    retire(active, kv_used, [](Active& a) { return a.seq->finish() != Finish::kNone; });
  }
  for (auto& a : active) a->seq->end(Finish::kCancelled);
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : queue_) s->end(Finish::kCancelled);
  queue_.clear();
}

void Batcher::step(std::vector<std::unique_ptr<Active>>& active, ThreadPool& pool) {
  const ModelConfig& cfg = m_.model->config();
  const int64_t n_vocab = cfg.n_vocab;
  std::vector<SeqBatch> batch;
  std::vector<Active*> owners;
  std::vector<int64_t> advance;  // rows each batch entry adds to its cache
  std::vector<int32_t> one(active.size());
  int64_t prefill_left = opt_.prefill_chunk, n_prompt_rows = 0;
  // Decoding sequences first (one token each), then prompt chunks while the step's budget lasts.
  for (size_t i = 0; i < active.size(); ++i) {
    Active& a = *active[i];
    if (a.next < 0) continue;
    one[i] = a.next;
    batch.push_back(SeqBatch{std::span<const int32_t>(&one[i], 1), a.n_past, &a.cache, false});
    owners.push_back(&a);
    advance.push_back(1);
  }
  for (auto& ap : active) {
    Active& a = *ap;
    if (a.next >= 0 || prefill_left == 0) continue;
    const auto& prompt = a.seq->params().prompt;
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(prompt.size()) - a.n_prompt_done, prefill_left);
    batch.push_back(
        SeqBatch{std::span<const int32_t>(prompt.data() + a.n_prompt_done, static_cast<size_t>(n)), a.n_past,
                 &a.cache, false});
    owners.push_back(&a);
    advance.push_back(n);
    prefill_left -= n;
    n_prompt_rows += n;
  }
  if (batch.empty()) return;
  std::vector<float> logits(batch.size() * static_cast<size_t>(n_vocab));  // [n_seqs, n_vocab]
  ForwardStats fs;
  m_.model->forward_batch(batch, logits.data(), pool, &fs);

  int64_t n_sampled = 0;
  for (size_t b = 0; b < batch.size(); ++b) {
    Active& a = *owners[b];
    const GenParams& p = a.seq->params();
    a.n_past += advance[b];
    if (a.next < 0) {
      a.n_prompt_done += advance[b];
      if (a.n_prompt_done < static_cast<int64_t>(p.prompt.size())) continue;  // more prompt to go
    } else {
      a.sampler.accept(a.next);
    }
    const float* row = logits.data() + b * static_cast<size_t>(n_vocab);
    TokenOut t;
    t.id = a.sampler.sample(row);
    ++n_sampled;
    if (!p.ignore_eog && m_.tokenizer->is_eog(t.id)) {
      a.seq->end(Finish::kEog);
      continue;
    }
    if (p.n_logprobs >= 0) logprobs(row, n_vocab, t.id, p.n_logprobs, &t);
    a.next = t.id;
    ++a.n_generated;
    a.seq->push(std::move(t));
    if (a.n_generated >= p.max_tokens) {
      a.seq->end(Finish::kLength);
    } else if (a.n_past >= a.cache.n_ctx()) {
      a.seq->end(a.cache.n_ctx() >= opt_.n_ctx ? Finish::kContext : Finish::kLength);
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.steps;
  stats_.prompt_tokens += n_prompt_rows;
  stats_.generated_tokens += n_sampled;
  if (!fs.expert_counts.empty()) {
    stats_.expert_counts.resize(fs.expert_counts.size());
    for (size_t l = 0; l < fs.expert_counts.size(); ++l) {
      auto& dst = stats_.expert_counts[l];
      dst.resize(fs.expert_counts[l].size());
      for (size_t e = 0; e < dst.size(); ++e) dst[e] += fs.expert_counts[l][e];
    }
  }
}

}  // namespace moe::server
