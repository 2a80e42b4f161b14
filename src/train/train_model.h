// The decoder family (src/model/decoder.h) as a trainable network: f32 master parameters under
// llama.cpp's tensor names, a forward that keeps what the backward needs, and the backward.
//
// The forward computes the same function as DecoderModel::forward over a fresh cache (tests check
// logits against it through an exported GGUF); it differs in how: whole sequences at once, no cache,
// BLAS matrix products, and activations kept for the backward. Supported: architecture llama or
// deepseek2; GQA or MLA (training keeps MLA's kv_b as one matrix, attn_kv_b); dense and MoE layers
// (softmax or sigmoid router, selection bias, groups, top-k renormalisation, scale, shared experts);
// RoPE on adjacent pairs without YaRN or frequency factors; untied output.
//
// Loss of a micro-batch of B sequences of T+1 tokens (inputs tokens[:, :T], targets tokens[:, 1:]):
//   loss = mean cross-entropy over the B*T targets + sum over MoE layers of aux_loss (ops.h)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"

namespace moe::train {

// One named parameter tensor inside the flat buffers. ne in GGUF order (ne[0] is the contiguous dim).
struct ParamInfo {
  std::string name;
  std::vector<int64_t> ne;
  int64_t offset = 0;  // into the flat buffer, in floats
  int64_t size = 0;
  bool decay = false;  // AdamW weight decay applies (matrices, including embeddings and experts)
};

enum class Precision { kF32, kBf16, kF16 };

struct TrainOptions {
  float aux_alpha = 0.01f;              // 0 disables the auxiliary loss
  bool checkpoint_activations = false;  // keep only block inputs; recompute each block in backward
  // Matrix products take operands rounded to bf16 / fp16 (weights from the f32 masters, and the
  // activations), accumulate in f32; the backward does the same with the gradients.
  Precision precision = Precision::kF32;
};

struct StepResult {
  double loss = 0.0;      // mean cross-entropy
  double aux = 0.0;       // summed over MoE layers (already multiplied by alpha)
  int64_t n_targets = 0;  // B*T
  // Routed slots per expert in this micro-batch, per layer ([n_layer][n_expert]; dense layers empty).
  std::vector<std::vector<int64_t>> expert_counts;
  int64_t activation_bytes = 0;  // peak bytes of activations held for the backward
};

class TrainModel {
 public:
  // Lays out the parameters of config c (throws moe::Error naming what is unsupported); values zero.
  explicit TrainModel(const ModelConfig& c);

  const ModelConfig& config() const { return c_; }
  const std::vector<ParamInfo>& params() const { return info_; }
  const ParamInfo& param(const std::string& name) const;  // throws naming an unknown name
  std::vector<float>& values() { return values_; }        // [n_params]
  const std::vector<float>& values() const { return values_; }
  std::vector<float>& grads() { return grads_; }  // [n_params], same layout
  std::vector<uint8_t> decay_mask() const;        // [n_params], 1 where decay

  // Normal(0, std) matrices (the output projections of attention and FFN scaled by 1/sqrt(2 n_layer),
  // GPT-2 style), norms 1, selection biases 0. Deterministic in seed.
  void init_random(uint64_t seed, float std = 0.02f);
  // Values from a GGUF model of the same config (f32/f16/bf16 tensors; MLA in either layout).
  void load_gguf(const std::string& path);

  // Forward and backward over tokens [B, T+1]: grads += loss_scale * grad_scale * d(loss)/d(params).
  // (Call zero_grads() between optimizer steps; accumulate micro-batches with grad_scale = 1/n_micro.)
  StepResult forward_backward(const int32_t* tokens, int64_t B, int64_t T, const TrainOptions& opt,
                              float grad_scale, float loss_scale, ThreadPool& pool);
  // The forward alone (validation): no gradients, no activations kept.
  StepResult evaluate(const int32_t* tokens, int64_t B, int64_t T, const TrainOptions& opt, ThreadPool& pool);
  // Logits [B*T, n_vocab] of the inputs tokens [B, T] (no targets), for checks against inference.
  std::vector<float> logits(const int32_t* tokens, int64_t B, int64_t T, ThreadPool& pool);
  void zero_grads();

  // DeepSeek-V3's loss-free balancing: after a step, each MoE layer's selection bias (exp_probs_b.bias)
  // moves by +gamma for experts below the mean load and -gamma above it.
  void update_balance_bias(const std::vector<std::vector<int64_t>>& counts, float gamma);

 private:
  struct Impl;
  ModelConfig c_;
  std::vector<ParamInfo> info_;
  std::vector<float> values_, grads_;
};

}  // namespace moe::train
