// Multi-head latent attention (DeepSeek-V2/V3/R1) with weight absorption: the cache holds, per
// token and layer, only the normalised KV latent (kv_lora_rank values) and the shared rotated
// key (n_rot values) — 576 floats for R1 instead of n_head * (192 + 128) = 40960 for a naive
// per-head cache. Queries are mapped into the latent space through W_kb, attention runs there,
// and W_vb maps the attended latent to each head's values.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/blocks.h"
#include "model/kv_cache.h"
#include "model/model.h"

namespace moe {

struct MlaWeights {
  std::optional<Tensor> wq;      // ne {n_embd, n_head * head_dim_k} (no query compression)
  std::optional<Tensor> wq_a;    // ne {n_embd, q_lora_rank}
  std::vector<float> q_a_norm;   // [q_lora_rank]
  std::optional<Tensor> wq_b;    // ne {q_lora_rank, n_head * head_dim_k}
  Tensor wkv_a;                  // ne {n_embd, kv_lora_rank + n_rot}
  std::vector<float> kv_a_norm;  // [kv_lora_rank]
  std::vector<Tensor> wk_b;      // per head ne {qk_nope_dim, kv_lora_rank}: q_nope -> latent
  std::vector<Tensor> wv_b;      // per head ne {kv_lora_rank, head_dim_v}: latent -> values
  Tensor wo;                     // ne {n_head * head_dim_v, n_embd}
  // Memory behind wk_b when it had to be built at load time (the older attn_kv_b layout).
  std::shared_ptr<std::vector<float>> owned;
};

// Cache widths for MLA: k holds [latent | rotated k_pe]; v is unused.
inline KvCache new_mla_cache(const ModelConfig& c, int64_t n_ctx) {
  return KvCache(c.n_layer, n_ctx, c.kv_lora_rank + c.rope.n_rot, 0);
}

// Causal MLA of the rows of `rows`, each sequence over its own cache.
//   h: [n_rows, n_embd] (normed input)   out: [n_rows, n_embd]
void attention_mla(const ModelConfig& cfg, const MlaWeights& w, int64_t il, const float* h,
                   const RowMap& rows, float* out, ThreadPool& pool);

}  // namespace moe
