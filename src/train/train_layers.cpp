#include "train/train_layers.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"

namespace moe::train {

namespace {

using Vec = std::vector<float>;

Vec zeros(int64_t n) { return Vec(static_cast<size_t>(n), 0.0f); }

}  // namespace

void round_to(Precision pr, const float* src, float* dst, int64_t n) {
  if (pr == Precision::kBf16) {
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(fp32_to_bf16(src[i]));
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(fp32_to_fp16(src[i]));
  }
}

void linear_fwd(Precision pr, const float* x, const float* w, float* y, int64_t n, int64_t in, int64_t out) {
  if (pr == Precision::kF32) return linear_forward(x, w, y, n, in, out);
  Vec xr(static_cast<size_t>(n * in));
  round_to(pr, x, xr.data(), n * in);
  linear_forward(xr.data(), w, y, n, in, out);
}

void linear_bwd(Precision pr, const float* dy, const float* x, const float* w, float* dx, float* dw,
                int64_t n, int64_t in, int64_t out) {
  if (pr == Precision::kF32) return linear_backward(dy, x, w, dx, dw, n, in, out);
  Vec xr(static_cast<size_t>(n * in)), dyr(static_cast<size_t>(n * out));
  round_to(pr, x, xr.data(), n * in);
  round_to(pr, dy, dyr.data(), n * out);
  linear_backward(dyr.data(), xr.data(), w, dx, dw, n, in, out);
}

int64_t LayerActs::bytes() const {
  int64_t n = 0;
  for (const Vec* v :
       {&x_in, &h1,    &rstd1, &qa,    &qa_n, &rstd_qa, &q, &k, &v,   &kva,      &c_n,    &rstd_c,
        &kv,   &probs, &att,   &x_mid, &h2,   &rstd2,   &g, &u, &act, &r_logits, &scores, &weight})
    n += static_cast<int64_t>(v->size() * sizeof(float));
  n += static_cast<int64_t>(idx.size() * sizeof(int32_t));
  for (const auto& r : rows) n += static_cast<int64_t>(r.size() * sizeof(int64_t));
  for (const auto* vs : {&eg, &eu, &eact, &ey})
    for (const Vec& v : *vs) n += static_cast<int64_t>(v.size() * sizeof(float));
  return n;
}

namespace {

AttnShape attn_shape(const LayerCtx& ctx) {
  const ModelConfig& c = *ctx.c;
  AttnShape s;
  s.B = ctx.B;
  s.T = ctx.T;
  s.n_head = c.n_head;
  s.dk = c.head_dim_k;
  s.dv = c.head_dim_v;
  s.scale =
      c.kq_scale != 0.0f && c.is_mla() ? c.kq_scale : 1.0f / std::sqrt(static_cast<float>(c.head_dim_k));
  if (c.is_mla()) {
    s.n_head_kv = c.n_head;
    s.q_stride = s.k_stride = c.n_head * c.head_dim_k;
    s.v_stride = s.out_stride = c.n_head * c.head_dim_v;
  } else {
    s.n_head_kv = c.n_head_kv;
    s.q_stride = c.n_head * c.head_dim_k;
    s.k_stride = c.n_head_kv * c.head_dim_k;
    s.v_stride = c.n_head_kv * c.head_dim_v;
    s.out_stride = c.n_head * c.head_dim_v;
  }
  return s;
}

// ---- attention --------------------------------------------------------------------------------

void attention_fwd(const LayerCtx& ctx, const LayerParams& p, LayerActs& a, float* out) {
  const ModelConfig& c = *ctx.c;
  const int64_t N = ctx.N, D = c.n_embd, H = c.n_head, dk = c.head_dim_k, dv = c.head_dim_v;
  const Precision pr = ctx.precision;
  const int32_t* pos = ctx.pos->data();
  if (c.is_mla()) {
    const int64_t rank = c.kv_lora_rank, rot = c.rope.n_rot, nope = c.qk_nope_dim, qr = c.q_lora_rank;
    a.q = zeros(N * H * dk);
    if (qr > 0) {
      a.qa = zeros(N * qr);
      a.qa_n = zeros(N * qr);
      a.rstd_qa = zeros(N);
      linear_fwd(pr, a.h1.data(), p.wq_a, a.qa.data(), N, D, qr);
      rmsnorm_forward(a.qa.data(), qr, p.q_a_norm, a.qa_n.data(), qr, a.rstd_qa.data(), N, qr, c.rms_eps);
      linear_fwd(pr, a.qa_n.data(), p.wq_b, a.q.data(), N, qr, H * dk);
    } else {
      linear_fwd(pr, a.h1.data(), p.wq, a.q.data(), N, D, H * dk);
    }
    rope_apply(a.q.data(), N, H, H * dk, dk, nope, pos, *ctx.rope, false);
    a.kva = zeros(N * (rank + rot));
    linear_fwd(pr, a.h1.data(), p.wkv_a, a.kva.data(), N, D, rank + rot);
    a.c_n = zeros(N * rank);
    a.rstd_c = zeros(N);
    rmsnorm_forward(a.kva.data(), rank + rot, p.kv_a_norm, a.c_n.data(), rank, a.rstd_c.data(), N, rank,
                    c.rms_eps);
    rope_apply(a.kva.data(), N, 1, rank + rot, 0, rank, pos, *ctx.rope, false);
    a.kv = zeros(N * H * (nope + dv));
    linear_fwd(pr, a.c_n.data(), p.wkv_b, a.kv.data(), N, rank, H * (nope + dv));
    // Full per-head keys [k_nope | shared k_rope] and contiguous values.
    a.k = zeros(N * H * dk);
    a.v = zeros(N * H * dv);
    for (int64_t r = 0; r < N; ++r)
      for (int64_t h = 0; h < H; ++h) {
        const float* src = a.kv.data() + (r * H + h) * (nope + dv);
        float* kd = a.k.data() + (r * H + h) * dk;
        std::copy_n(src, nope, kd);
        std::copy_n(a.kva.data() + r * (rank + rot) + rank, rot, kd + nope);
        std::copy_n(src + nope, dv, a.v.data() + (r * H + h) * dv);
      }
  } else {
    const int64_t Hkv = c.n_head_kv;
    a.q = zeros(N * H * dk);
    a.k = zeros(N * Hkv * dk);
    a.v = zeros(N * Hkv * dv);
    linear_fwd(pr, a.h1.data(), p.wq, a.q.data(), N, D, H * dk);
    linear_fwd(pr, a.h1.data(), p.wk, a.k.data(), N, D, Hkv * dk);
    linear_fwd(pr, a.h1.data(), p.wv, a.v.data(), N, D, Hkv * dv);
    rope_apply(a.q.data(), N, H, H * dk, dk, 0, pos, *ctx.rope, false);
    rope_apply(a.k.data(), N, Hkv, Hkv * dk, dk, 0, pos, *ctx.rope, false);
  }
  const AttnShape s = attn_shape(ctx);
  a.probs = zeros(ctx.B * H * ctx.T * ctx.T);
  a.att = zeros(N * H * dv);
  attention_forward(s, a.q.data(), a.k.data(), a.v.data(), a.att.data(), a.probs.data(), ctx.pool);
  linear_fwd(pr, a.att.data(), p.wo, out, N, H * dv, D);
}

// dh1 [N, D] += gradient through the attention block from dout [N, D].
void attention_bwd(const LayerCtx& ctx, const LayerParams& p, const LayerParams& g, const LayerActs& a,
                   const float* dout, float* dh1) {
  const ModelConfig& c = *ctx.c;
  const int64_t N = ctx.N, D = c.n_embd, H = c.n_head, dk = c.head_dim_k, dv = c.head_dim_v;
  const Precision pr = ctx.precision;
  const int32_t* pos = ctx.pos->data();
  Vec datt = zeros(N * H * dv);
  linear_bwd(pr, dout, a.att.data(), p.wo, datt.data(), g.wo, N, H * dv, D);
  const AttnShape s = attn_shape(ctx);
  Vec dq = zeros(static_cast<int64_t>(a.q.size())), dk_ = zeros(static_cast<int64_t>(a.k.size())),
      dv_ = zeros(static_cast<int64_t>(a.v.size()));
  attention_backward(s, datt.data(), a.q.data(), a.k.data(), a.v.data(), a.probs.data(), dq.data(),
                     dk_.data(), dv_.data(), ctx.pool);
  if (c.is_mla()) {
    const int64_t rank = c.kv_lora_rank, rot = c.rope.n_rot, nope = c.qk_nope_dim, qr = c.q_lora_rank;
    Vec dkv = zeros(N * H * (nope + dv)), dkva = zeros(N * (rank + rot));
    for (int64_t r = 0; r < N; ++r)
      for (int64_t h = 0; h < H; ++h) {
        float* dst = dkv.data() + (r * H + h) * (nope + dv);
        const float* dkh = dk_.data() + (r * H + h) * dk;
        std::copy_n(dkh, nope, dst);
        std::copy_n(dv_.data() + (r * H + h) * dv, dv, dst + nope);
        float* dkr = dkva.data() + r * (rank + rot) + rank;
        for (int64_t i = 0; i < rot; ++i) dkr[i] += dkh[nope + i];
      }
    rope_apply(dkva.data(), N, 1, rank + rot, 0, rank, pos, *ctx.rope, true);
    Vec dc = zeros(N * rank);
    linear_bwd(pr, dkv.data(), a.c_n.data(), p.wkv_b, dc.data(), g.wkv_b, N, rank, H * (nope + dv));
    rmsnorm_backward(dc.data(), rank, a.kva.data(), rank + rot, p.kv_a_norm, a.rstd_c.data(), dkva.data(),
                     g.kv_a_norm, N, rank);
    linear_bwd(pr, dkva.data(), a.h1.data(), p.wkv_a, dh1, g.wkv_a, N, D, rank + rot);
    rope_apply(dq.data(), N, H, H * dk, dk, nope, pos, *ctx.rope, true);
    if (qr > 0) {
      Vec dqan = zeros(N * qr), dqa = zeros(N * qr);
      linear_bwd(pr, dq.data(), a.qa_n.data(), p.wq_b, dqan.data(), g.wq_b, N, qr, H * dk);
      rmsnorm_backward(dqan.data(), qr, a.qa.data(), qr, p.q_a_norm, a.rstd_qa.data(), dqa.data(), g.q_a_norm,
                       N, qr);
      linear_bwd(pr, dqa.data(), a.h1.data(), p.wq_a, dh1, g.wq_a, N, D, qr);
    } else {
      linear_bwd(pr, dq.data(), a.h1.data(), p.wq, dh1, g.wq, N, D, H * dk);
    }
  } else {
    const int64_t Hkv = c.n_head_kv;
    rope_apply(dq.data(), N, H, H * dk, dk, 0, pos, *ctx.rope, true);
    rope_apply(dk_.data(), N, Hkv, Hkv * dk, dk, 0, pos, *ctx.rope, true);
    linear_bwd(pr, dq.data(), a.h1.data(), p.wq, dh1, g.wq, N, D, H * dk);
    linear_bwd(pr, dk_.data(), a.h1.data(), p.wk, dh1, g.wk, N, D, Hkv * dk);
    linear_bwd(pr, dv_.data(), a.h1.data(), p.wv, dh1, g.wv, N, D, Hkv * dv);
  }
}

// ---- SwiGLU FFN ----------------------------------------------------------------------------

// y [m, D] = down(silu(x gate^T) * (x up^T)); keeps g, u, act [m, F].
void ffn_fwd(Precision pr, const float* x, int64_t m, int64_t D, int64_t F, const float* wg, const float* wu,
             const float* wd, Vec& g, Vec& u, Vec& act, float* y) {
  g = zeros(m * F);
  u = zeros(m * F);
  act = zeros(m * F);
  linear_fwd(pr, x, wg, g.data(), m, D, F);
  linear_fwd(pr, x, wu, u.data(), m, D, F);
  swiglu_forward(g.data(), u.data(), act.data(), m * F);
  linear_fwd(pr, act.data(), wd, y, m, F, D);
}

// dx [m, D] += gradient from dy [m, D].
void ffn_bwd(Precision pr, const float* x, int64_t m, int64_t D, int64_t F, const float* wg, const float* wu,
             const float* wd, float* dwg, float* dwu, float* dwd, const Vec& g, const Vec& u, const Vec& act,
             const float* dy, float* dx) {
  Vec dact = zeros(m * F), dg = zeros(m * F), du = zeros(m * F);
  linear_bwd(pr, dy, act.data(), wd, dact.data(), dwd, m, F, D);
  swiglu_backward(dact.data(), g.data(), u.data(), dg.data(), du.data(), m * F);
  linear_bwd(pr, dg.data(), x, wg, dx, dwg, m, D, F);
  linear_bwd(pr, du.data(), x, wu, dx, dwu, m, D, F);
}

RouterShape router_shape(const ModelConfig& c, int64_t n) {
  RouterShape s;
  s.n = n;
  s.E = c.n_expert;
  s.k = c.n_expert_used;
  s.sigmoid = c.gating_sigmoid;
  s.norm = c.expert_weights_norm;
  s.scale = c.expert_weights_scale;
  s.n_groups = c.n_expert_groups;
  s.n_group_used = c.n_group_used;
  return s;
}

// ---- MoE ------------------------------------------------------------------------------------

void moe_fwd(const LayerCtx& ctx, const LayerParams& p, LayerActs& a, float* out) {
  const ModelConfig& c = *ctx.c;
  const int64_t N = ctx.N, D = c.n_embd, E = c.n_expert, K = c.n_expert_used, F = c.n_ff_exp;
  const Precision pr = ctx.precision;
  a.r_logits = zeros(N * E);
  a.scores = zeros(N * E);
  a.weight = zeros(N * K);
  a.idx.assign(static_cast<size_t>(N * K), 0);
  linear_fwd(pr, a.h2.data(), p.gate_inp, a.r_logits.data(), N, D, E);
  const RouterShape rs = router_shape(c, N);
  router_forward(rs, a.r_logits.data(), p.probs_bias, a.idx.data(), a.weight.data(), a.scores.data());
  a.aux =
      ctx.aux_alpha > 0.0f ? aux_loss(rs, a.scores.data(), a.idx.data(), ctx.aux_alpha, 0.0f, nullptr) : 0.0;
  a.rows.assign(static_cast<size_t>(E), {});
  for (int64_t s = 0; s < N * K; ++s) a.rows[a.idx[s]].push_back(s);
  a.eg.assign(static_cast<size_t>(E), {});
  a.eu.assign(static_cast<size_t>(E), {});
  a.eact.assign(static_cast<size_t>(E), {});
  a.ey.assign(static_cast<size_t>(E), {});
  if (c.n_expert_shared > 0) {
    ffn_fwd(pr, a.h2.data(), N, D, F * c.n_expert_shared, p.w_gate, p.w_up, p.w_down, a.g, a.u, a.act, out);
  } else {
    std::fill_n(out, N * D, 0.0f);
  }
  Vec xe;
  for (int64_t e = 0; e < E; ++e) {
    const auto& rows = a.rows[e];
    const int64_t m = static_cast<int64_t>(rows.size());
    if (m == 0) continue;
    xe.resize(static_cast<size_t>(m * D));
    for (int64_t r = 0; r < m; ++r) std::copy_n(a.h2.data() + rows[r] / K * D, D, xe.data() + r * D);
    a.ey[e] = zeros(m * D);
    ffn_fwd(pr, xe.data(), m, D, F, p.gate_exps + e * F * D, p.up_exps + e * F * D, p.down_exps + e * D * F,
            a.eg[e], a.eu[e], a.eact[e], a.ey[e].data());
  }
  // Sum in slot order per token (token t's slots j = 0..K-1), independent of expert scheduling.
  std::vector<std::pair<int64_t, int64_t>> where(static_cast<size_t>(N * K));  // slot -> (expert, row)
  for (int64_t e = 0; e < E; ++e)
    for (size_t r = 0; r < a.rows[e].size(); ++r) where[a.rows[e][r]] = {e, static_cast<int64_t>(r)};
  for (int64_t t = 0; t < N; ++t)
    for (int64_t j = 0; j < K; ++j) {
      const auto [e, r] = where[t * K + j];
      const float w = a.weight[t * K + j];
      const float* y = a.ey[e].data() + r * D;
      float* o = out + t * D;
      for (int64_t d = 0; d < D; ++d) o[d] += w * y[d];
    }
}

void moe_bwd(const LayerCtx& ctx, const LayerParams& p, const LayerParams& g, const LayerActs& a,
             float aux_dscale, const float* dout, float* dh2) {
  const ModelConfig& c = *ctx.c;
  const int64_t N = ctx.N, D = c.n_embd, E = c.n_expert, K = c.n_expert_used, F = c.n_ff_exp;
  const Precision pr = ctx.precision;
  if (c.n_expert_shared > 0)
    ffn_bwd(pr, a.h2.data(), N, D, F * c.n_expert_shared, p.w_gate, p.w_up, p.w_down, g.w_gate, g.w_up,
            g.w_down, a.g, a.u, a.act, dout, dh2);
  Vec dweight = zeros(N * K), xe, dye, dxe;
  for (int64_t e = 0; e < E; ++e) {
    const auto& rows = a.rows[e];
    const int64_t m = static_cast<int64_t>(rows.size());
    if (m == 0) continue;
    xe.resize(static_cast<size_t>(m * D));
    dye.resize(static_cast<size_t>(m * D));
    dxe.assign(static_cast<size_t>(m * D), 0.0f);
    for (int64_t r = 0; r < m; ++r) {
      const int64_t t = rows[r] / K;
      std::copy_n(a.h2.data() + t * D, D, xe.data() + r * D);
      const float w = a.weight[rows[r]];
      const float* dy = dout + t * D;
      const float* y = a.ey[e].data() + r * D;
      double dw = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        dye[r * D + d] = w * dy[d];
        dw += static_cast<double>(dy[d]) * y[d];
      }
      dweight[rows[r]] = static_cast<float>(dw);
    }
    ffn_bwd(pr, xe.data(), m, D, F, p.gate_exps + e * F * D, p.up_exps + e * F * D, p.down_exps + e * D * F,
            g.gate_exps + e * F * D, g.up_exps + e * F * D, g.down_exps + e * D * F, a.eg[e], a.eu[e],
            a.eact[e], dye.data(), dxe.data());
    for (int64_t r = 0; r < m; ++r) {
      float* dst = dh2 + rows[r] / K * D;
      const float* src = dxe.data() + r * D;
      for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
    }
  }
  const RouterShape rs = router_shape(c, N);
  Vec dlogits = zeros(N * E);
  router_backward(rs, a.scores.data(), a.idx.data(), dweight.data(), dlogits.data());
  if (ctx.aux_alpha > 0.0f)
    aux_loss(rs, a.scores.data(), a.idx.data(), ctx.aux_alpha, aux_dscale, dlogits.data());
  linear_bwd(pr, dlogits.data(), a.h2.data(), p.gate_inp, dh2, g.gate_inp, N, D, E);
}

}  // namespace

void layer_forward(const LayerCtx& ctx, const LayerParams& p, LayerActs* acts, float* x_out) {
  LayerActs& a = *acts;
  const ModelConfig& c = *ctx.c;
  const int64_t N = ctx.N, D = c.n_embd;
  a.h1 = zeros(N * D);
  a.rstd1 = zeros(N);
  rmsnorm_forward(a.x_in.data(), D, p.attn_norm, a.h1.data(), D, a.rstd1.data(), N, D, c.rms_eps);
  a.x_mid = zeros(N * D);
  attention_fwd(ctx, p, a, a.x_mid.data());
  for (int64_t i = 0; i < N * D; ++i) a.x_mid[i] += a.x_in[i];
  a.h2 = zeros(N * D);
  a.rstd2 = zeros(N);
  rmsnorm_forward(a.x_mid.data(), D, p.ffn_norm, a.h2.data(), D, a.rstd2.data(), N, D, c.rms_eps);
  if (c.is_moe_layer(ctx.il)) {
    moe_fwd(ctx, p, a, x_out);
  } else {
    ffn_fwd(ctx.precision, a.h2.data(), N, D, c.n_ff, p.w_gate, p.w_up, p.w_down, a.g, a.u, a.act, x_out);
  }
  for (int64_t i = 0; i < N * D; ++i) x_out[i] += a.x_mid[i];
}

void layer_backward(const LayerCtx& ctx, const LayerParams& p, const LayerParams& g, const LayerActs& a,
                    float aux_dscale, float* dx) {
  const ModelConfig& c = *ctx.c;
  const int64_t N = ctx.N, D = c.n_embd;
  // dx is the gradient of x_out; the residual passes it to x_mid unchanged.
  Vec dh = zeros(N * D);
  if (c.is_moe_layer(ctx.il)) {
    moe_bwd(ctx, p, g, a, aux_dscale, dx, dh.data());
  } else {
    ffn_bwd(ctx.precision, a.h2.data(), N, D, c.n_ff, p.w_gate, p.w_up, p.w_down, g.w_gate, g.w_up, g.w_down,
            a.g, a.u, a.act, dx, dh.data());
  }
  rmsnorm_backward(dh.data(), D, a.x_mid.data(), D, p.ffn_norm, a.rstd2.data(), dx, g.ffn_norm, N, D);
  std::fill(dh.begin(), dh.end(), 0.0f);
  attention_bwd(ctx, p, g, a, dx, dh.data());
  rmsnorm_backward(dh.data(), D, a.x_in.data(), D, p.attn_norm, a.rstd1.data(), dx, g.attn_norm, N, D);
}

}  // namespace moe::train
