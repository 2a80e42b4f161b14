#include "model/moe_ffn.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>

#include "core/error.h"
#include "kernels/kernels.h"

namespace moe {

namespace {

// Indices of the k largest values, best first; ties go to the lower index (as a stable sort).
void top_k(const float* v, int64_t n, int64_t k, int32_t* out) {
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
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
      group_score[g] =
          select[g * per_group + best[0]] + (per_group > 1 ? select[g * per_group + best[1]] : 0.0f);
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
  const kernels::Activations hx(h, n_tokens, n_embd);                   // [n_tokens, n_embd], quantized once
  std::vector<float> logits(static_cast<size_t>(n_tokens * n_expert));  // [n_tokens, n_expert]
  kernels::matmul(w.gate_inp, hx, logits.data(), &pool);

  // Tokens per expert, so each expert's weights are read once for all its tokens.
  std::vector<std::vector<std::pair<int64_t, float>>> assigned(static_cast<size_t>(n_expert));
  std::vector<int32_t> ids(static_cast<size_t>(k));
  std::vector<float> weights(static_cast<size_t>(k));
  for (int64_t t = 0; t < n_tokens; ++t) {
    route_token(cfg, logits.data() + t * n_expert, w.bias ? w.bias->data() : nullptr, ids.data(),
                weights.data());
    for (int64_t i = 0; i < k; ++i) assigned[ids[i]].emplace_back(t, weights[i]);
  }

  // One FFN task per expert with tokens (and the shared experts, over every token), run together.
  std::vector<FfnTask> tasks;
  std::vector<int64_t> task_expert;                       // expert of each task; -1 = shared
  std::vector<std::vector<float>> xs, ys;                 // gathered inputs, outputs [m, n_embd]
  std::vector<std::unique_ptr<kernels::Activations>> xa;  // stable addresses for the tasks
  xs.reserve(static_cast<size_t>(n_expert));
  ys.reserve(static_cast<size_t>(n_expert) + 1);
  if (w.shared) {
    ys.emplace_back(static_cast<size_t>(n_tokens * n_embd));
    tasks.push_back(FfnTask{&*w.shared, &hx, ys.back().data()});
    task_expert.push_back(-1);
  }
  for (int64_t e = 0; e < n_expert; ++e) {
    const auto& rows = assigned[e];
    if (expert_counts) (*expert_counts)[e] += static_cast<int64_t>(rows.size());
    if (rows.empty()) continue;
    const int64_t m = static_cast<int64_t>(rows.size());
    const kernels::Activations* x = &hx;
    if (m != n_tokens) {  // a subset of the tokens (with all of them, they are in order: reuse hx)
      std::vector<float>& g = xs.emplace_back(static_cast<size_t>(m * n_embd));  // [m, n_embd]
      for (int64_t r = 0; r < m; ++r) std::copy_n(h + rows[r].first * n_embd, n_embd, g.data() + r * n_embd);
      xa.push_back(std::make_unique<kernels::Activations>(g.data(), m, n_embd));
      x = xa.back().get();
    }
    ys.emplace_back(static_cast<size_t>(m * n_embd));
    tasks.push_back(FfnTask{&w.experts[e], x, ys.back().data()});
    task_expert.push_back(e);
  }
  ffn_swiglu_many(tasks, pool);

  // out = shared + the experts' weighted outputs, in expert order.
  if (!w.shared) std::fill_n(out, n_tokens * n_embd, 0.0f);
  for (size_t i = 0; i < tasks.size(); ++i) {
    const float* y = tasks[i].y;
    if (task_expert[i] < 0) {
      std::copy_n(y, n_tokens * n_embd, out);
      continue;
    }
    const auto& rows = assigned[task_expert[i]];
    for (size_t r = 0; r < rows.size(); ++r) {
      float* o = out + rows[r].first * n_embd;
      const float* yr = y + static_cast<int64_t>(r) * n_embd;
      const float wt = rows[r].second;
      for (int64_t j = 0; j < n_embd; ++j) o[j] += wt * yr[j];
    }
  }
}

}  // namespace moe
