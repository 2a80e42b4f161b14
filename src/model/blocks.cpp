#include "model/blocks.h"

#include <algorithm>
#include <cmath>
#include <functional>
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

void rms_norm_rows(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) kernels::rms_norm(x + r * n, weight, n, eps, out + r * n);
}

void add_bias_rows(float* y, const std::vector<float>& b, int64_t n_rows) {
  const int64_t n = static_cast<int64_t>(b.size());
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t i = 0; i < n; ++i) y[r * n + i] += b[i];
}

RowMap::RowMap(std::span<const SeqRows> s) : seqs(s) {
  for (const SeqRows& q : s) {
    MOE_CHECK(q.cache != nullptr && q.row0 == n_rows,
              "forward: sequence rows must be contiguous, each with a cache");
    q.cache->check_room(q.pos0, q.n_tokens);
    for (int64_t i = 0; i < q.n_tokens; ++i) {
      pos.push_back(q.pos0 + i);
      cache.push_back(q.cache);
      max_pos = std::max(max_pos, q.pos0 + i);
    }
    n_rows += q.n_tokens;
  }
}

void attention_gqa(const ModelConfig& cfg, const GqaWeights& w, int64_t il, const float* h,
                   const RowMap& rows, float* out, ThreadPool& pool) {
  const int64_t n_head = cfg.n_head, n_head_kv = cfg.n_head_kv;
  const int64_t dk = cfg.head_dim_k, dv = cfg.head_dim_v;
  const int64_t q_width = n_head * dk, k_width = n_head_kv * dk, v_width = n_head_kv * dv;
  const int64_t n_tokens = rows.n_rows;

  std::vector<float> q(static_cast<size_t>(n_tokens * q_width));  // [n_tokens, n_head * dk]
  std::vector<float> k(static_cast<size_t>(n_tokens * k_width));  // [n_tokens, n_head_kv * dk]
  std::vector<float> v(static_cast<size_t>(n_tokens * v_width));  // [n_tokens, n_head_kv * dv]
  const kernels::Activations hx(h, n_tokens, cfg.n_embd);         // quantized once for q, k and v
  kernels::matmul(w.wq, hx, q.data(), &pool);
  kernels::matmul(w.wk, hx, k.data(), &pool);
  kernels::matmul(w.wv, hx, v.data(), &pool);
  if (w.bq) add_bias_rows(q.data(), *w.bq, n_tokens);
  if (w.bk) add_bias_rows(k.data(), *w.bk, n_tokens);
  if (w.bv) add_bias_rows(v.data(), *w.bv, n_tokens);

  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t pos = rows.pos[t];
    kernels::rope(q.data() + t * q_width, n_head, dk, pos, cfg.rope);
    kernels::rope(k.data() + t * k_width, n_head_kv, dk, pos, cfg.rope);
    std::copy_n(k.data() + t * k_width, k_width, rows.cache[t]->k(il, pos));
    std::copy_n(v.data() + t * v_width, v_width, rows.cache[t]->v(il, pos));
  }

  // One job per (token, kv head): the scores of the kv head's query heads come from one SIMD
  // matmul with the cached keys as its weight rows; each job writes only its own slice of attn.
  std::vector<float> attn(static_cast<size_t>(n_tokens * n_head * dv));  // [n_tokens, n_head * dv]
  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  const int64_t group = n_head / n_head_kv;
  pool.run(n_tokens * n_head_kv, [&](int, int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(group * (rows.max_pos + 1)));  // [group, n_kv]
    for (int64_t job = begin; job < end; ++job) {
      const int64_t t = job / n_head_kv, g = job % n_head_kv;
      const int64_t n_kv = rows.pos[t] + 1;  // causal: this token sees positions [0, pos]
      KvCache& cache = *rows.cache[t];
      Tensor keys;  // ne {dk, n_kv}: kv head g of every cached position
      keys.name = "k cache";
      keys.type = DType::F32;
      keys.n_dims = 2;
      keys.ne[0] = dk;
      keys.ne[1] = n_kv;
      keys.nb[0] = sizeof(float);
      keys.nb[1] = static_cast<size_t>(k_width) * sizeof(float);
      keys.nb[2] = keys.nb[3] = keys.nb[1] * static_cast<size_t>(n_kv);
      keys.data = cache.k(il, 0) + g * dk;
      kernels::matmul(keys, q.data() + t * q_width + g * group * dk, group, scores.data(), nullptr);
      for (int64_t i = 0; i < group; ++i) {
        float* sc = scores.data() + i * n_kv;
        for (int64_t j = 0; j < n_kv; ++j) sc[j] *= scale;
        kernels::softmax(sc, n_kv);
      }
      kernels::weighted_rows(scores.data(), n_kv, group, cache.v(il, 0) + g * dv, v_width, n_kv,
                             attn.data() + t * n_head * dv + g * group * dv, dv, dv);
    }
  });

  kernels::matmul(w.wo, attn.data(), n_tokens, out, &pool);
  if (w.bo) add_bias_rows(out, *w.bo, n_tokens);
}

void ffn_swiglu(const FfnWeights& w, const float* h, int64_t n_tokens, float* out, ThreadPool& pool) {
  const kernels::Activations x(h, n_tokens, w.gate.ne[0]);
  const FfnTask task{&w, &x, out};
  ffn_swiglu_many({&task, 1}, pool);
}

void ffn_swiglu_many(std::span<const FfnTask> tasks, ThreadPool& pool) {
  int64_t work = 0;
  std::vector<std::vector<float>> hidden(tasks.size());  // per task [m, n_ff]: gate, then silu(gate) * up
  std::vector<std::vector<float>> up(tasks.size());      // per task [m, n_ff]
  for (size_t i = 0; i < tasks.size(); ++i) {
    const FfnTask& t = tasks[i];
    const int64_t m = t.x->n_tokens(), n_ff = t.w->gate.ne[1];
    MOE_CHECK(t.w->up.ne[1] == n_ff && t.w->down.ne[0] == n_ff && t.w->gate.ne[0] == t.x->n_in(),
              "ffn: tensors '", t.w->gate.name, "', '", t.w->up.name, "', '", t.w->down.name,
              "' do not fit together");
    hidden[i].resize(static_cast<size_t>(m * n_ff));
    up[i].resize(static_cast<size_t>(m * n_ff));
    t.x->prepare_for(t.w->gate.type);
    t.x->prepare_for(t.w->up.type);
    work += 3 * m * n_ff * t.x->n_in();
  }
  // Tiny FFNs: the hand-off would cost more than the work.
  const int n_thr = work < (1 << 16) ? 1 : pool.size();
  // Rows [r0, r1) of n for thread ti: contiguous, in multiples of 16 rows.
  auto split = [n_thr](int64_t n, int64_t ti, int64_t* r0, int64_t* r1) {
    const int64_t units = (n + 15) / 16;
    *r0 = std::min(n, units * ti / n_thr * 16);
    *r1 = std::min(n, units * (ti + 1) / n_thr * 16);
  };
  auto run = [&](const std::function<void(int64_t)>& part) {
    if (n_thr == 1) {
      part(0);
    } else {
      pool.run(n_thr, [&](int, int64_t b, int64_t e) {
        for (int64_t ti = b; ti < e; ++ti) part(ti);
      });
    }
  };
  run([&](int64_t ti) {
    for (size_t i = 0; i < tasks.size(); ++i) {
      const FfnTask& t = tasks[i];
      const int64_t m = t.x->n_tokens(), n_ff = t.w->gate.ne[1];
      int64_t r0, r1;
      split(n_ff, ti, &r0, &r1);
      if (r0 == r1) continue;
      kernels::matmul_rows(t.w->gate, *t.x, hidden[i].data(), r0, r1);
      kernels::matmul_rows(t.w->up, *t.x, up[i].data(), r0, r1);
      for (int64_t k = 0; k < m; ++k) {
        float* g = hidden[i].data() + k * n_ff + r0;
        kernels::swiglu(g, up[i].data() + k * n_ff + r0, g, r1 - r0);
      }
    }
  });
  std::vector<kernels::Activations> hx;
  hx.reserve(tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i) {
    hx.emplace_back(hidden[i].data(), tasks[i].x->n_tokens(), tasks[i].w->gate.ne[1]);
    hx.back().prepare_for(tasks[i].w->down.type);
  }
  run([&](int64_t ti) {
    for (size_t i = 0; i < tasks.size(); ++i) {
      int64_t r0, r1;
      split(tasks[i].w->down.ne[1], ti, &r0, &r1);
      kernels::matmul_rows(tasks[i].w->down, hx[i], tasks[i].y, r0, r1);
    }
  });
}

void output_logits(const ModelConfig& cfg, const std::vector<float>& norm, const Tensor& output,
                   const float* x, std::span<const int64_t> out_rows, float* logits, ThreadPool& pool) {
  const int64_t n_embd = cfg.n_embd;
  const int64_t n_rows = static_cast<int64_t>(out_rows.size());
  if (n_rows == 0) return;
  std::vector<float> xn(static_cast<size_t>(n_rows * n_embd));  // [n_rows, n_embd]
  for (int64_t r = 0; r < n_rows; ++r)
    rms_norm_rows(x + out_rows[r] * n_embd, norm.data(), 1, n_embd, cfg.rms_eps, xn.data() + r * n_embd);
  kernels::matmul(output, xn.data(), n_rows, logits, &pool);
}

}  // namespace moe
