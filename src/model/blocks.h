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

struct GqaWeights {
  Tensor wq;                                         // ne {n_embd, n_head * head_dim_k}
  Tensor wk;                                         // ne {n_embd, n_head_kv * head_dim_k}
  Tensor wv;                                         // ne {n_embd, n_head_kv * head_dim_v}
  Tensor wo;                                         // ne {n_head * head_dim_v, n_embd}
  std::optional<std::vector<float>> bq, bk, bv, bo;  // Qwen2 has q/k/v biases
};

// Causal self-attention of n_tokens tokens at positions [pos0, pos0 + n_tokens): projects,
// applies RoPE, appends k/v to layer il of the cache, attends, projects out.
//   h: [n_tokens, n_embd] (normed input)   out: [n_tokens, n_embd]
void attention_gqa(const ModelConfig& cfg, const GqaWeights& w, int64_t il, const float* h, int64_t n_tokens,
                   int64_t pos0, KvCache& cache, float* out, ThreadPool& pool);

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

// Final norm and vocabulary projection of the rows selected by all_logits (all, or the last).
//   x: [n_tokens, n_embd]   logits: [n_rows_out, n_vocab]
void output_logits(const ModelConfig& cfg, const std::vector<float>& norm, const Tensor& output,
                   const float* x, int64_t n_tokens, bool all_logits, float* logits, ThreadPool& pool);

}  // namespace moe
