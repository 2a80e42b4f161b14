// The mixture-of-experts feed-forward: a router picks n_expert_used experts per token (softmax or
// sigmoid scores, optional selection bias, optional group-limited routing, optional
// renormalisation and scaling of the weights), each picked expert is a SwiGLU FFN, and their
// weighted outputs are summed, plus any shared (always-on) experts. Follows llama.cpp's
// build_moe_ffn, which follows the reference implementations (Mixtral, DeepSeek-V2/V3).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/blocks.h"
#include "model/model.h"

namespace moe {

struct MoeWeights {
  Tensor gate_inp;                         // ne {n_embd, n_expert}: router
  std::optional<std::vector<float>> bias;  // [n_expert]: added to the scores for selection only
  // Per expert: 2-D views (slices of ggml's stacked 3-D tensors, or separate tensors):
  // gate and up ne {n_embd, n_ff_exp}, down ne {n_ff_exp, n_embd}.
  std::vector<FfnWeights> experts;
  std::optional<FfnWeights> shared;  // shared experts, fused into one FFN (width n_shared * n_ff_exp)
};

// Routing of one token. scores_logits: [n_expert] router outputs. Writes the chosen experts to
// ids[0..n_expert_used) (best first) and their weights to weights[0..n_expert_used).
//   scores = softmax(logits) or sigmoid(logits)
//   selection = scores + bias (if any); with groups, only the n_group_used groups whose two best
//   selection values sum highest stay eligible; pick the n_expert_used best eligible experts
//   weights = scores of the picked (never the bias), renormalised to sum 1 if asked, times scale
void route_token(const ModelConfig& cfg, const float* logits, const float* bias, int32_t* ids,
                 float* weights);

// out = sum over picked experts of weight * swiglu_e(h), plus the shared experts.
//   h: [n_tokens, n_embd]   out: [n_tokens, n_embd]
// If expert_counts is given ([n_expert]), adds how many tokens each expert received.
void ffn_moe(const ModelConfig& cfg, const MoeWeights& w, const float* h, int64_t n_tokens, float* out,
             ThreadPool& pool, std::vector<int64_t>* expert_counts = nullptr);

// The 2-D slice e of a stacked expert tensor (ne {a, b, n_expert}).
Tensor expert_slice(const Tensor& stacked, int64_t e);

}  // namespace moe
