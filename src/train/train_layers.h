// Internal to TrainModel: the blocks of one decoder layer, each forward beside its backward, and the
// activations a layer keeps between them.
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"
#include "train/ops.h"
#include "train/train_model.h"

namespace moe::train {

// Views of one layer's parameters (values or gradients) inside a flat buffer; null when absent.
struct LayerParams {
  float *attn_norm = nullptr, *ffn_norm = nullptr;
  // GQA
  float *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr;
  // MLA (wq when q_lora_rank == 0)
  float *wq_a = nullptr, *q_a_norm = nullptr, *wq_b = nullptr, *wkv_a = nullptr, *kv_a_norm = nullptr,
        *wkv_b = nullptr;
  // dense FFN, or shared experts of a MoE layer
  float *w_gate = nullptr, *w_up = nullptr, *w_down = nullptr;
  // MoE
  float *gate_inp = nullptr, *probs_bias = nullptr, *gate_exps = nullptr, *up_exps = nullptr,
        *down_exps = nullptr;
};

// Geometry every block needs.
struct LayerCtx {
  const ModelConfig* c = nullptr;
  int64_t il = 0;
  int64_t B = 0, T = 0, N = 0;  // N = B * T rows
  const std::vector<int32_t>* pos = nullptr;
  const RopeTable* rope = nullptr;
  Precision precision = Precision::kF32;
  float aux_alpha = 0.0f;
  ThreadPool* pool = nullptr;
};

// Everything one layer's backward reads. Sizes are 0 for what the layer's kind does not use.
struct LayerActs {
  std::vector<float> x_in;               // [N, D] layer input
  std::vector<float> h1, rstd1;          // [N, D], [N] attention input after RMSNorm
  std::vector<float> qa, qa_n, rstd_qa;  // MLA q_lora: [N, q_rank] x2, [N]
  std::vector<float> q, k, v;            // [N, H*dk] (roped), [N, Hkv*dk] or MLA [N, H*dk], [N, Hkv*dv]
  std::vector<float> kva, c_n, rstd_c,
      kv;  // MLA: [N, rank+rot] (latent raw, rope part roped), [N, rank], [N], [N, H*(nope+dv)]
  std::vector<float> probs;      // [B, H, T, T]
  std::vector<float> att;        // [N, H*dv]
  std::vector<float> x_mid;      // [N, D] after the attention residual
  std::vector<float> h2, rstd2;  // [N, D], [N]
  std::vector<float> g, u, act;  // dense FFN / shared experts: [N, F] each
  // MoE
  std::vector<float> r_logits, scores, weight;       // [N, E], [N, E], [N, k]
  std::vector<int32_t> idx;                          // [N, k]
  std::vector<std::vector<int64_t>> rows;            // per expert: slot ids t * k + j routed to it
  std::vector<std::vector<float>> eg, eu, eact, ey;  // per expert: [m, F] x3, [m, D]
  double aux = 0.0;
  int64_t bytes() const;
};

// x_out [N, D] = layer(acts->x_in); fills acts. x_out may not alias acts->x_in.
void layer_forward(const LayerCtx& ctx, const LayerParams& p, LayerActs* acts, float* x_out);
// dx [N, D]: on entry the gradient of the layer output, on return that of its input; gradients of
// the parameters accumulate into g. aux_dscale scales the auxiliary loss's gradient.
void layer_backward(const LayerCtx& ctx, const LayerParams& p, const LayerParams& g, const LayerActs& acts,
                    float aux_dscale, float* dx);

// dst = src rounded to bf16 / fp16 and back (precision kBf16 / kF16); src and dst may alias.
void round_to(Precision pr, const float* src, float* dst, int64_t n);

// y = x W^T in the given precision (operands rounded to bf16/fp16, f32 accumulate).
void linear_fwd(Precision pr, const float* x, const float* w, float* y, int64_t n, int64_t in, int64_t out);
void linear_bwd(Precision pr, const float* dy, const float* x, const float* w, float* dx, float* dw,
                int64_t n, int64_t in, int64_t out);

}  // namespace moe::train
