// The training ops of the decoder family, each forward beside its backward (llm.c style). All f32,
// row-major, dimensions explicit.
//
// Contracts shared by every op:
// - Backward functions ACCUMULATE (+=) into every gradient buffer they are given (dx, dw, ...), so
//   residual branches and shared inputs need no extra adds; callers zero gradients once per step.
//   A null gradient pointer means "not needed" and is skipped.
// - Inputs and outputs never alias unless the comment says so.
// - Results do not depend on the thread count: every output element is computed by the same
//   sequence of operations whatever pool->size() is (pool may be null: single thread).
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace moe::train {

// Sets the thread count of the BLAS the linear ops use (OpenBLAS). Call before training.
void set_blas_threads(int n);

// ---- linear: y = x W^T --------------------------------------------------------------------
// x [n, in], w [out, in] (GGUF ne {in, out}), y [n, out] (overwritten).
void linear_forward(const float* x, const float* w, float* y, int64_t n, int64_t in, int64_t out);
// dx [n, in] += dy W;  dw [out, in] += dy^T x.
void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, int64_t n,
                     int64_t in, int64_t out);

// ---- embedding ---------------------------------------------------------------------------
// out[i] = table[tokens[i]]: table [n_vocab, dim], out [n, dim]. Tokens must be in [0, n_vocab).
void embedding_forward(const int32_t* tokens, const float* table, float* out, int64_t n, int64_t dim);
void embedding_backward(const int32_t* tokens, const float* dout, float* dtable, int64_t n, int64_t dim);

// ---- RMSNorm: y = x / sqrt(mean(x^2) + eps) * w ---------------------------------------------
// x, y [n, dim]; w [dim]; rstd [n] receives 1/sqrt(mean(x^2)+eps) for the backward.
// Rows may be strided: x row i starts at x + i * x_stride (likewise y with y_stride).
void rmsnorm_forward(const float* x, int64_t x_stride, const float* w, float* y, int64_t y_stride,
                     float* rstd, int64_t n, int64_t dim, float eps);
// dx (stride x_stride) += d/dx, dw [dim] += d/dw, from dy (stride y_stride).
void rmsnorm_backward(const float* dy, int64_t y_stride, const float* x, int64_t x_stride, const float* w,
                      const float* rstd, float* dx, float* dw, int64_t n, int64_t dim);

// ---- RoPE on adjacent pairs (llama.cpp's non-NeoX mode) --------------------------------------
// Pair i of a head (x[2i], x[2i+1]) rotates by pos * freq_base^(-2i/n_rot).
struct RopeTable {
  int64_t n_rot = 0;
  std::vector<float> cos, sin;  // [n_pos, n_rot / 2]
};
RopeTable make_rope_table(int64_t n_pos, int64_t n_rot, float freq_base);
// In place on n_rows rows of n_heads heads: head h of row r starts at x + r * row_stride + h * head_stride
// + offset and its n_rot dims rotate by position pos[r]. inverse rotates by -angle, which is the backward
// (the rotation is orthogonal: dx = R^T dy).
void rope_apply(float* x, int64_t n_rows, int64_t n_heads, int64_t row_stride, int64_t head_stride,
                int64_t offset, const int32_t* pos, const RopeTable& t, bool inverse);

// ---- causal self-attention within each of B sequences of T rows --------------------------------
// Row r = b * T + t. Query head h reads key/value head h / (n_head / n_head_kv).
//   q: head h of row r at q + r * q_stride + h * dk      (dk values)
//   k: head g of row r at k + r * k_stride + g * dk
//   v: head g of row r at v + r * v_stride + g * dv
//   out: head h of row r at out + r * out_stride + h * dv
// probs [B, n_head, T, T] receives the softmax of scale * q.k over keys t' <= t (0 above the diagonal).
struct AttnShape {
  int64_t B = 0, T = 0, n_head = 0, n_head_kv = 0, dk = 0, dv = 0;
  float scale = 0.0f;
  int64_t q_stride = 0, k_stride = 0, v_stride = 0, out_stride = 0;
};
void attention_forward(const AttnShape& s, const float* q, const float* k, const float* v, float* out,
                       float* probs, ThreadPool* pool);
// dq, dk, dv (same layouts as q, k, v) += gradients from dout (layout of out).
void attention_backward(const AttnShape& s, const float* dout, const float* q, const float* k, const float* v,
                        const float* probs, float* dq, float* dk, float* dv, ThreadPool* pool);

// ---- SwiGLU: y = silu(g) * u, all [n] ------------------------------------------------------
void swiglu_forward(const float* g, const float* u, float* y, int64_t n);
void swiglu_backward(const float* dy, const float* g, const float* u, float* dg, float* du, int64_t n);

// ---- cross-entropy -------------------------------------------------------------------------
// logits [n, V]; targets[i] < 0 are ignored. Returns the SUM of -log softmax(logits[i])[targets[i]]
// over counted rows, and sets dlogits [n, V] (overwritten) to dscale * (softmax - onehot) for counted
// rows and 0 for ignored ones. dlogits may alias logits.
double cross_entropy(const float* logits, const int32_t* targets, int64_t n, int64_t V, float dscale,
                     float* dlogits, ThreadPool* pool);

// ---- MoE router -------------------------------------------------------------------------------
// DeepSeek's routing (and Mixtral's as its softmax case), as src/model/moe_ffn.cpp runs it:
//   scores = softmax(logits) or sigmoid(logits)                                [n, E]
//   choice = scores + bias (bias only when given; it steers selection, never the weights)
//   with n_groups > 1: keep the n_group_used groups (E / n_groups experts each) whose top-2 choice
//     values sum highest, then the top k of choice within them; else the top k of choice.
//   weight = scores[selected]; if norm: weight /= max(sum(weight), 6.103515625e-5); weight *= scale
//   (group-limited selection only when 1 < n_groups and n_group_used < n_groups)
// Ties select the lower expert index first; selected experts are listed in descending choice order.
struct RouterShape {
  int64_t n = 0;  // tokens
  int64_t E = 0;  // experts
  int64_t k = 0;  // experts used per token
  bool sigmoid = false;
  bool norm = false;
  float scale = 1.0f;
  int64_t n_groups = 0, n_group_used = 0;
};
// idx, weight [n, k]; scores [n, E] (kept for the backward).
void router_forward(const RouterShape& s, const float* logits, const float* bias, int32_t* idx, float* weight,
                    float* scores);
// dlogits [n, E] += gradient of the weights' loss through the selected scores (selection itself has
// no gradient). With sigmoid only the selected logits receive gradient; with softmax every logit of
// the token does, through the softmax Jacobian of the selected scores.
void router_backward(const RouterShape& s, const float* scores, const int32_t* idx, const float* dweight,
                     float* dlogits);

// The auxiliary load-balancing loss of one MoE layer over its n tokens (Switch Transformer / GShard):
//   aux = alpha * E * sum_i f_i * P_i
//   f_i = (slots routed to expert i) / (n * k)                   (no gradient)
//   P_i = mean over tokens of p_i, p = softmax scores, or for sigmoid the scores normalised per token
//         to sum 1 (as DeepSeek-V3's balance loss does; here over all n tokens of the
//         micro-batch, i.e. batch-wise, not per sequence)
// Returns aux and adds dscale * d aux / d logits into dlogits [n, E].
double aux_loss(const RouterShape& s, const float* scores, const int32_t* idx, float alpha, float dscale,
                float* dlogits);

}  // namespace moe::train
