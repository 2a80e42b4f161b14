#include "model/mla.h"

#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"
#include "model/blocks.h"

namespace moe {

void attention_mla(const ModelConfig& cfg, const MlaWeights& w, int64_t il, const float* h,
                   const RowMap& rows, float* out, ThreadPool& pool) {
  const int64_t n_tokens = rows.n_rows;
  const int64_t n_head = cfg.n_head, dk = cfg.head_dim_k, dv = cfg.head_dim_v;
  const int64_t rank = cfg.kv_lora_rank, n_rot = cfg.rope.n_rot, nope = cfg.qk_nope_dim;
  const int64_t lat = rank + n_rot;  // cached width per token

  const kernels::Activations hx(h, n_tokens, cfg.n_embd);             // quantized once for q and kv
  std::vector<float> q(static_cast<size_t>(n_tokens * n_head * dk));  // [n_tokens, n_head, dk]
  if (w.wq) {
    kernels::matmul(*w.wq, hx, q.data(), &pool);
  } else {
    const int64_t qr = cfg.q_lora_rank;
    std::vector<float> qa(static_cast<size_t>(n_tokens * qr));  // [n_tokens, q_lora_rank]
    kernels::matmul(*w.wq_a, hx, qa.data(), &pool);
    rms_norm_rows(qa.data(), w.q_a_norm.data(), n_tokens, qr, cfg.rms_eps, qa.data());
    kernels::matmul(*w.wq_b, qa.data(), n_tokens, q.data(), &pool);
  }
  std::vector<float> kv(static_cast<size_t>(n_tokens * lat));  // [n_tokens, rank + n_rot]
  kernels::matmul(w.wkv_a, hx, kv.data(), &pool);

  // Rotate q_pe (the last n_rot dims of each head) and the shared k_pe; cache [norm(c) | k_pe].
  std::vector<float> pe(static_cast<size_t>(n_head * n_rot));  // [n_head, n_rot]
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* qt = q.data() + t * n_head * dk;
    for (int64_t hd = 0; hd < n_head; ++hd) std::copy_n(qt + hd * dk + nope, n_rot, pe.data() + hd * n_rot);
    const int64_t pos = rows.pos[t];
    kernels::rope(pe.data(), n_head, n_rot, pos, cfg.rope);
    for (int64_t hd = 0; hd < n_head; ++hd) std::copy_n(pe.data() + hd * n_rot, n_rot, qt + hd * dk + nope);
    float* kt = kv.data() + t * lat;
    kernels::rope(kt + rank, 1, n_rot, pos, cfg.rope);
    float* cached = rows.cache[t]->k(il, pos);
    kernels::rms_norm(kt, w.kv_a_norm.data(), rank, cfg.rms_eps, cached);
    std::copy_n(kt + rank, n_rot, cached + rank);
  }

  // Absorb W_kb into the queries: qa[t, hd] = [W_kb[hd] q_nope[t, hd] | q_pe[t, hd]].
  std::vector<float> qabs(static_cast<size_t>(n_tokens * n_head * lat));  // [n_tokens, n_head, lat]
  // Heads in parallel, each a single-threaded matmul (one hand-off instead of one per head).
  pool.run(n_head, [&](int, int64_t h0, int64_t h1) {
    std::vector<float> xin(static_cast<size_t>(n_tokens * nope));   // [n_tokens, nope]
    std::vector<float> yout(static_cast<size_t>(n_tokens * rank));  // [n_tokens, rank]
    for (int64_t hd = h0; hd < h1; ++hd) {
      for (int64_t t = 0; t < n_tokens; ++t)
        std::copy_n(q.data() + (t * n_head + hd) * dk, nope, xin.data() + t * nope);
      kernels::matmul(w.wk_b[hd], xin.data(), n_tokens, yout.data(), nullptr);
      for (int64_t t = 0; t < n_tokens; ++t) {
        float* dst = qabs.data() + (t * n_head + hd) * lat;
        std::copy_n(yout.data() + t * rank, rank, dst);
        std::copy_n(q.data() + (t * n_head + hd) * dk + nope, n_rot, dst + rank);
      }
    }
  });

  // Attention in latent space; one job per (token, head).
  std::vector<float> olat(static_cast<size_t>(n_tokens * n_head * rank));  // [n_tokens, n_head, rank]
  const float scale = cfg.kq_scale != 0.0f ? cfg.kq_scale : 1.0f / std::sqrt(static_cast<float>(dk));
  // Jobs of (token, block of heads): all heads share the latent keys, so one SIMD matmul with the
  // cache as weight rows scores a whole block. Few tokens (decode): heads split over threads.
  const int64_t n_blocks = n_tokens >= pool.size() ? 1 : std::min<int64_t>(n_head, 2 * pool.size());
  pool.run(n_tokens * n_blocks, [&](int, int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(n_head * (rows.max_pos + 1)));  // [heads, n_kv]
    for (int64_t job = begin; job < end; ++job) {
      const int64_t t = job / n_blocks, blk = job % n_blocks;
      const int64_t h0 = blk * n_head / n_blocks, h1 = (blk + 1) * n_head / n_blocks;
      const int64_t n_kv = rows.pos[t] + 1;
      KvCache& cache = *rows.cache[t];
      Tensor keys;  // ne {lat, n_kv}: the cached rows [0, n_kv)
      keys.name = "latent cache";
      keys.type = DType::F32;
      keys.n_dims = 2;
      keys.ne[0] = lat;
      keys.ne[1] = n_kv;
      set_contiguous_strides(keys);
      keys.data = cache.k(il, 0);
      kernels::matmul(keys, qabs.data() + (t * n_head + h0) * lat, h1 - h0, scores.data(), nullptr);
      for (int64_t hd = h0; hd < h1; ++hd) {
        float* sc = scores.data() + (hd - h0) * n_kv;
        for (int64_t j = 0; j < n_kv; ++j) sc[j] *= scale;
        kernels::softmax(sc, n_kv);
      }
      kernels::weighted_rows(scores.data(), n_kv, h1 - h0, cache.k(il, 0), lat, n_kv,
                             olat.data() + (t * n_head + h0) * rank, rank, rank);
    }
  });

  // Per head: values = W_vb[hd] · attended latent.
  std::vector<float> attn(static_cast<size_t>(n_tokens * n_head * dv));  // [n_tokens, n_head * dv]
  pool.run(n_head, [&](int, int64_t h0, int64_t h1) {
    std::vector<float> xin(static_cast<size_t>(n_tokens * rank));  // [n_tokens, rank]
    std::vector<float> yout(static_cast<size_t>(n_tokens * dv));   // [n_tokens, dv]
    for (int64_t hd = h0; hd < h1; ++hd) {
      for (int64_t t = 0; t < n_tokens; ++t)
        std::copy_n(olat.data() + (t * n_head + hd) * rank, rank, xin.data() + t * rank);
      kernels::matmul(w.wv_b[hd], xin.data(), n_tokens, yout.data(), nullptr);
      for (int64_t t = 0; t < n_tokens; ++t)
        std::copy_n(yout.data() + t * dv, dv, attn.data() + (t * n_head + hd) * dv);
    }
  });
  kernels::matmul(w.wo, attn.data(), n_tokens, out, &pool);
}

}  // namespace moe
