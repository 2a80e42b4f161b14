#include "model/blocks.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/kernels.h"

namespace moe {

void embed_tokens(const Tensor& tok_embd, std::span<const int32_t> tokens, float* x) {
  const int64_t n_embd = tok_embd.ne[0];
  const int64_t n_vocab = tok_embd.ne[1];
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t id = tokens[i];
    MOE_CHECK(id >= 0 && id < n_vocab, "token id ", id, " is out of range [0, ", n_vocab, ")");
    kernels::dequantize_row(tok_embd.type, tok_embd.row(id), x + static_cast<int64_t>(i) * n_embd, n_embd);
  }
}

void rms_norm_rows(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps,
                   float* out) {
  for (int64_t r = 0; r < n_rows; ++r) kernels::rms_norm(x + r * n, weight, n, eps, out + r * n);
}

void add_bias_rows(float* y, const std::vector<float>& b, int64_t n_rows) {
  const int64_t n = static_cast<int64_t>(b.size());
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t i = 0; i < n; ++i) y[r * n + i] += b[i];
}

void attention_gqa(const ModelConfig& cfg, const GqaWeights& w, int64_t il, const float* h,
                   int64_t n_tokens, int64_t pos0, KvCache& cache, float* out, ThreadPool& pool) {
  const int64_t n_head = cfg.n_head, n_head_kv = cfg.n_head_kv;
  const int64_t dk = cfg.head_dim_k, dv = cfg.head_dim_v;
  const int64_t q_width = n_head * dk, k_width = n_head_kv * dk, v_width = n_head_kv * dv;
  cache.check_room(pos0, n_tokens);

  std::vector<float> q(static_cast<size_t>(n_tokens * q_width));  // [n_tokens, n_head * dk]
  std::vector<float> k(static_cast<size_t>(n_tokens * k_width));  // [n_tokens, n_head_kv * dk]
  std::vector<float> v(static_cast<size_t>(n_tokens * v_width));  // [n_tokens, n_head_kv * dv]
  kernels::matmul(w.wq, h, n_tokens, q.data(), &pool);
  kernels::matmul(w.wk, h, n_tokens, k.data(), &pool);
  kernels::matmul(w.wv, h, n_tokens, v.data(), &pool);
  if (w.bq) add_bias_rows(q.data(), *w.bq, n_tokens);
  if (w.bk) add_bias_rows(k.data(), *w.bk, n_tokens);
  if (w.bv) add_bias_rows(v.data(), *w.bv, n_tokens);

  for (int64_t t = 0; t < n_tokens; ++t) {
    kernels::rope(q.data() + t * q_width, n_head, dk, pos0 + t, cfg.rope);
    kernels::rope(k.data() + t * k_width, n_head_kv, dk, pos0 + t, cfg.rope);
    std::copy_n(k.data() + t * k_width, k_width, cache.k(il, pos0 + t));
    std::copy_n(v.data() + t * v_width, v_width, cache.v(il, pos0 + t));
  }

  // One job per (token, head); each writes only its own slice of attn.
  std::vector<float> attn(static_cast<size_t>(n_tokens * n_head * dv));  // [n_tokens, n_head * dv]
  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  const int64_t group = n_head / n_head_kv;
  const int64_t n_ctx_used = pos0 + n_tokens;
  pool.run(n_tokens * n_head, [&](int, int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(n_ctx_used));
    for (int64_t job = begin; job < end; ++job) {
      const int64_t t = job / n_head, hd = job % n_head, g = hd / group;
      const float* qh = q.data() + t * q_width + hd * dk;
      const int64_t n_kv = pos0 + t + 1;  // causal: this token sees positions [0, pos0 + t]
      for (int64_t j = 0; j < n_kv; ++j) {
        const float* kj = cache.k(il, j) + g * dk;
        float s = 0.0f;
        for (int64_t d = 0; d < dk; ++d) s += qh[d] * kj[d];
        scores[j] = s * scale;
      }
      kernels::softmax(scores.data(), n_kv);
      float* o = attn.data() + t * n_head * dv + hd * dv;
      std::fill_n(o, dv, 0.0f);
      for (int64_t j = 0; j < n_kv; ++j) {
        const float* vj = cache.v(il, j) + g * dv;
        const float p = scores[j];
        for (int64_t d = 0; d < dv; ++d) o[d] += p * vj[d];
      }
    }
  });

  kernels::matmul(w.wo, attn.data(), n_tokens, out, &pool);
  if (w.bo) add_bias_rows(out, *w.bo, n_tokens);
}

void ffn_swiglu(const FfnWeights& w, const float* h, int64_t n_tokens, float* out, ThreadPool& pool) {
  const int64_t n_ff = w.gate.ne[1];
  std::vector<float> g(static_cast<size_t>(n_tokens * n_ff));  // [n_tokens, n_ff]
  std::vector<float> u(static_cast<size_t>(n_tokens * n_ff));  // [n_tokens, n_ff]
  kernels::matmul(w.gate, h, n_tokens, g.data(), &pool);
  kernels::matmul(w.up, h, n_tokens, u.data(), &pool);
  kernels::swiglu(g.data(), u.data(), g.data(), n_tokens * n_ff);
  kernels::matmul(w.down, g.data(), n_tokens, out, &pool);
}

void output_logits(const ModelConfig& cfg, const std::vector<float>& norm, const Tensor& output,
                   const float* x, int64_t n_tokens, bool all_logits, float* logits, ThreadPool& pool) {
  const int64_t n_embd = cfg.n_embd;
  const int64_t first = all_logits ? 0 : n_tokens - 1;
  const int64_t n_rows = n_tokens - first;
  std::vector<float> xn(static_cast<size_t>(n_rows * n_embd));  // [n_rows, n_embd]
  rms_norm_rows(x + first * n_embd, norm.data(), n_rows, n_embd, cfg.rms_eps, xn.data());
  kernels::matmul(output, xn.data(), n_rows, logits, &pool);
}

}  // namespace moe
