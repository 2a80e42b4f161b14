#include "model/moe_ffn.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "kernels/kernels.h"

namespace moe {

namespace {

// Indices of the k largest values, best first; ties go to the lower index (as a stable sort).
void top_k(const float* v, int64_t n, int64_t k, int32_t* out) {
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
    return v[a] > v[b] || (v[a] == v[b] && a < b);
  });
  std::copy_n(idx.begin(), k, out);
}

}  // namespace

void route_token(const ModelConfig& cfg, const float* logits, const float* bias, int32_t* ids,
                 float* weights) {
  const int64_t n = cfg.n_expert, k = cfg.n_expert_used;
  std::vector<float> scores(logits, logits + n);
  if (cfg.gating_sigmoid) {
    for (float& s : scores) s = 1.0f / (1.0f + std::exp(-s));
  } else {
    kernels::softmax(scores.data(), n);
  }
  std::vector<float> select = scores;
  if (bias != nullptr)
    for (int64_t e = 0; e < n; ++e) select[e] += bias[e];
  if (cfg.n_expert_groups > 1 && cfg.n_group_used < cfg.n_expert_groups) {
    const int64_t n_groups = cfg.n_expert_groups, per_group = n / n_groups;
    std::vector<float> group_score(static_cast<size_t>(n_groups));
    for (int64_t g = 0; g < n_groups; ++g) {
      int32_t best[2];
      top_k(select.data() + g * per_group, per_group, std::min<int64_t>(2, per_group), best);
      group_score[g] = select[g * per_group + best[0]] + (per_group > 1 ? select[g * per_group + best[1]] : 0.0f);
    }
    std::vector<int32_t> keep(static_cast<size_t>(cfg.n_group_used));
    top_k(group_score.data(), n_groups, cfg.n_group_used, keep.data());
    std::vector<bool> kept(static_cast<size_t>(n_groups), false);
    for (int32_t g : keep) kept[g] = true;
    for (int64_t e = 0; e < n; ++e)
      if (!kept[e / per_group]) select[e] = -std::numeric_limits<float>::infinity();
  }
  top_k(select.data(), n, k, ids);
  float sum = 0.0f;
  for (int64_t i = 0; i < k; ++i) sum += weights[i] = scores[ids[i]];
  // llama.cpp clamps the sum (to the smallest normal f16) before dividing.
  const float norm = cfg.expert_weights_norm ? 1.0f / std::max(sum, 6.103515625e-5f) : 1.0f;
  for (int64_t i = 0; i < k; ++i) weights[i] *= norm * cfg.expert_weights_scale;
}

Tensor expert_slice(const Tensor& stacked, int64_t e) {
  Tensor t = stacked;
  t.name = stacked.name + "[" + std::to_string(e) + "]";
  t.n_dims = 2;
  t.ne[2] = t.ne[3] = 1;
  t.data = stacked.row(0, e);
  t.nb[2] = t.nb[3] = t.nb[1] * static_cast<size_t>(t.ne[1]);
  return t;
}

void ffn_moe(const ModelConfig& cfg, const MoeWeights& w, const float* h, int64_t n_tokens, float* out,
             ThreadPool& pool, std::vector<int64_t>* expert_counts) {
  const int64_t n_embd = cfg.n_embd, n_expert = cfg.n_expert, k = cfg.n_expert_used;
  std::vector<float> logits(static_cast<size_t>(n_tokens * n_expert));  // [n_tokens, n_expert]
  kernels::matmul(w.gate_inp, h, n_tokens, logits.data(), &pool);

  // Tokens per expert, so each expert's weights are read once for all its tokens.
  std::vector<std::vector<std::pair<int64_t, float>>> assigned(static_cast<size_t>(n_expert));
  std::vector<int32_t> ids(static_cast<size_t>(k));
  std::vector<float> weights(static_cast<size_t>(k));
  for (int64_t t = 0; t < n_tokens; ++t) {
    route_token(cfg, logits.data() + t * n_expert, w.bias ? w.bias->data() : nullptr, ids.data(), weights.data());
    for (int64_t i = 0; i < k; ++i) assigned[ids[i]].emplace_back(t, weights[i]);
  }

  if (w.shared) {
    ffn_swiglu(*w.shared, h, n_tokens, out, pool);
  } else {
    std::fill_n(out, n_tokens * n_embd, 0.0f);
  }
  std::vector<float> xe, ye;
  for (int64_t e = 0; e < n_expert; ++e) {
    const auto& rows = assigned[e];
    if (expert_counts) (*expert_counts)[e] += static_cast<int64_t>(rows.size());
    if (rows.empty()) continue;
    const int64_t m = static_cast<int64_t>(rows.size());
    xe.resize(static_cast<size_t>(m * n_embd));  // [m, n_embd]: this expert's tokens
    ye.resize(xe.size());
    for (int64_t r = 0; r < m; ++r) std::copy_n(h + rows[r].first * n_embd, n_embd, xe.data() + r * n_embd);
    ffn_swiglu(FfnWeights{w.gate[e], w.up[e], w.down[e]}, xe.data(), m, ye.data(), pool);
    for (int64_t r = 0; r < m; ++r) {
      float* o = out + rows[r].first * n_embd;
      const float* y = ye.data() + r * n_embd;
      const float wt = rows[r].second;
      for (int64_t i = 0; i < n_embd; ++i) o[i] += wt * y[i];
    }
  }
}

}  // namespace moe
