// The transformer family every architecture here belongs to: token embedding, n_layer pre-norm
// blocks (attention: GQA or MLA; feed-forward: dense SwiGLU or MoE), final norm, output head.
// An architecture file reads its hyperparameters into a ModelConfig and asks load_decoder for its
// tensors under llama.cpp's names; the forward pass is this one.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "core/huge_buffer.h"
#include "formats/gguf.h"
#include "model/blocks.h"
#include "model/mla.h"
#include "model/model.h"
#include "model/moe_ffn.h"

namespace moe {

struct DecoderLayer {
  std::vector<float> attn_norm, ffn_norm;  // [n_embd]
  std::optional<GqaWeights> gqa;           // exactly one of gqa, mla
  std::optional<MlaWeights> mla;
  std::optional<FfnWeights> ffn;  // exactly one of ffn, moe
  std::optional<MoeWeights> moe;
};

struct DecoderWeights {
  Tensor tok_embd;                 // ne {n_embd, n_vocab}
  std::vector<float> output_norm;  // [n_embd]
  Tensor output;                   // ne {n_embd, n_vocab}; tok_embd when tied
  std::vector<DecoderLayer> layers;
  // Memory behind matrices regrouped at load time (Q8_0 / Q4_0 in the kernels' grouped layout).
  std::shared_ptr<HugeBuffer> owned;
};

struct DecoderOptions {
  bool qkv_bias = false;  // Qwen2: attn_{q,k,v}.bias (required)
};

// Copies every Q8_0 / Q4_0 matrix the forward pass multiplies into the kernels' grouped layout
// (kernels/ref/quant_dot.h) in memory the weights own; the embedding table stays as it is.
// Skipped when MOE_REPACK=0 is set in the environment.
void group_matrices(DecoderWeights& d);

// Reads every tensor the config calls for (blk.N.attn_q.weight, ...), checking shapes; throws
// moe::Error naming the tensor. Accepts both MLA layouts (attn_kv_b, or attn_k_b + attn_v_b)
// and both expert layouts (stacked ffn_*_exps, or per-expert ffn_*.E.weight).
DecoderWeights load_decoder(const GgufFile& file, const ModelConfig& cfg, const DecoderOptions& opt);

class DecoderModel : public Model {
 public:
  DecoderModel(ModelConfig cfg, DecoderWeights w);
  KvCache new_cache(int64_t n_ctx) const override;
  void forward(std::span<const int32_t> tokens, int64_t pos0, KvCache& cache, bool all_logits, float* logits,
               ThreadPool& pool) const override;
  void forward_batch(std::span<const SeqBatch> seqs, float* logits, ThreadPool& pool,
                     ForwardStats* stats = nullptr) const override;

 private:
  DecoderWeights w_;
};

// Bytes of KV cache per token of context: what this engine stores, and what a cache of full
// per-head keys and values (head_dim_k + head_dim_v per head, f32) would need.
struct KvBytesPerToken {
  int64_t stored = 0;
  int64_t naive = 0;
};
KvBytesPerToken kv_bytes_per_token(const ModelConfig& cfg);

// Checks the MoE/MLA fields of a config for consistency; throws naming `source` and the field.
void validate_config(const ModelConfig& cfg, const std::string& source);

}  // namespace moe
