// Building blocks shared by the architectures: embedding lookup, norms, grouped-query attention
// over a KV cache, the SwiGLU feed-forward and the output head. An architecture file composes
// these; it does not re-implement them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "model/kv_cache.h"
#include "model/model.h"

namespace moe {

// x[i] = row tokens[i] of tok_embd, as f32.  x: [n_tokens, n_embd]
void embed_tokens(const Tensor& tok_embd, std::span<const int32_t> tokens, float* x);

// out[r] = rms_norm(x[r]) * weight for each of n_rows rows of width n. out may be x.
void rms_norm_rows(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out);

// y[r] += b for each of n_rows rows of width b.size().
void add_bias_rows(float* y, const std::vector<float>& b, int64_t n_rows);

// The rows of a batched forward that belong to one sequence: rows [row0, row0 + n_tokens) are its
// tokens at positions [pos0, pos0 + n_tokens); their keys and values go to *cache.
struct SeqRows {
  int64_t row0 = 0;
  int64_t n_tokens = 0;
  int64_t pos0 = 0;
  KvCache* cache = nullptr;
};

// Per row of a batch: its sequence's cache and its position. Built once per forward.
struct RowMap {
  explicit RowMap(std::span<const SeqRows> seqs);
  int64_t n_rows = 0;
  int64_t max_pos = 0;          // largest position of any row
  std::vector<int64_t> pos;     // [n_rows]
  std::vector<KvCache*> cache;  // [n_rows]
  std::span<const SeqRows> seqs;
};

struct GqaWeights {
  Tensor wq;                                         // ne {n_embd, n_head * head_dim_k}
  Tensor wk;                                         // ne {n_embd, n_head_kv * head_dim_k}
  Tensor wv;                                         // ne {n_embd, n_head_kv * head_dim_v}
  Tensor wo;                                         // ne {n_head * head_dim_v, n_embd}
  std::optional<std::vector<float>> bq, bk, bv, bo;  // Qwen2 has q/k/v biases
};

// Causal self-attention of the rows of `rows` (each sequence attends only to its own cache):
// projects (all rows at once), applies RoPE, appends k/v to layer il of each row's cache, attends,
// projects out.   h: [n_rows, n_embd] (normed input)   out: [n_rows, n_embd]
void attention_gqa(const ModelConfig& cfg, const GqaWeights& w, int64_t il, const float* h,
                   const RowMap& rows, float* out, ThreadPool& pool);

struct FfnWeights {
  Tensor gate;  // ne {n_embd, n_ff}
  Tensor up;    // ne {n_embd, n_ff}
  Tensor down;  // ne {n_ff, n_embd}
};

// out = down(silu(gate(h)) * up(h)).   h: [n_tokens, n_embd]   out: [n_tokens, n_embd]
void ffn_swiglu(const FfnWeights& w, const float* h, int64_t n_tokens, float* out, ThreadPool& pool);

// Several SwiGLU FFNs (the experts of a MoE layer) in two parallel passes: gate and up with
// silu * mul fused, then down. Each FFN's rows are split evenly over the threads, so there is
// one hand-off per pass, not one per matrix. *x must be live; y: [x.n_tokens(), n_embd].
struct FfnTask {
  const FfnWeights* w;
  const kernels::Activations* x;  // [m, n_embd]
  float* y;                       // [m, n_embd]
};
void ffn_swiglu_many(std::span<const FfnTask> tasks, ThreadPool& pool);

// Final norm and vocabulary projection of the rows listed in out_rows, in that order.
//   x: [n_rows, n_embd]   logits: [out_rows.size(), n_vocab]
void output_logits(const ModelConfig& cfg, const std::vector<float>& norm, const Tensor& output,
                   const float* x, std::span<const int64_t> out_rows, float* logits, ThreadPool& pool);

}  // namespace moe
