#include "train/train_model.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "train/train_layers.h"

namespace moe::train {

namespace {

std::string blk(int64_t il, const char* name) { return "blk." + std::to_string(il) + "." + name; }

void check_trainable(const ModelConfig& c) {
  MOE_CHECK(c.arch == "llama" || c.arch == "deepseek2", "train: architecture '", c.arch,
            "' is not trainable (llama and deepseek2 are)");
  validate_config(c, "train");
  MOE_CHECK(!c.rope.neox, "train: NeoX RoPE is not supported");
  MOE_CHECK(
      c.rope.freq_factors.empty() && c.rope.freq_scale == 1.0f && c.rope.ext_factor == 0.0f,
      "train: RoPE scaling (YaRN, linear or frequency factors) is not supported; train at the base context");
  MOE_CHECK(c.rope.n_rot % 2 == 0 && c.rope.n_rot > 0, "train: rope.dimension_count must be even and > 0");
  if (!c.is_mla())
    MOE_CHECK(c.rope.n_rot <= c.head_dim_k, "train: rope dims ", c.rope.n_rot, " exceed the head size ",
              c.head_dim_k);
}

}  // namespace

TrainModel::TrainModel(const ModelConfig& c) : c_(c) {
  check_trainable(c_);
  int64_t offset = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> ne, bool decay) {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    info_.push_back(ParamInfo{name, std::move(ne), offset, n, decay});
    offset += n;
  };
  const int64_t E = c.n_embd, H = c.n_head;
  add("token_embd.weight", {E, c.n_vocab}, true);
  add("output_norm.weight", {E}, false);
  add("output.weight", {E, c.n_vocab}, true);
  for (int64_t il = 0; il < c.n_layer; ++il) {
    add(blk(il, "attn_norm.weight"), {E}, false);
    if (c.is_mla()) {
      const int64_t rank = c.kv_lora_rank;
      if (c.q_lora_rank > 0) {
        add(blk(il, "attn_q_a.weight"), {E, c.q_lora_rank}, true);
        add(blk(il, "attn_q_a_norm.weight"), {c.q_lora_rank}, false);
        add(blk(il, "attn_q_b.weight"), {c.q_lora_rank, H * c.head_dim_k}, true);
      } else {
        add(blk(il, "attn_q.weight"), {E, H * c.head_dim_k}, true);
      }
      add(blk(il, "attn_kv_a_mqa.weight"), {E, rank + c.rope.n_rot}, true);
      add(blk(il, "attn_kv_a_norm.weight"), {rank}, false);
      add(blk(il, "attn_kv_b.weight"), {rank, H * (c.qk_nope_dim + c.head_dim_v)}, true);
    } else {
      add(blk(il, "attn_q.weight"), {E, H * c.head_dim_k}, true);
      add(blk(il, "attn_k.weight"), {E, c.n_head_kv * c.head_dim_k}, true);
      add(blk(il, "attn_v.weight"), {E, c.n_head_kv * c.head_dim_v}, true);
    }
    add(blk(il, "attn_output.weight"), {H * c.head_dim_v, E}, true);
    add(blk(il, "ffn_norm.weight"), {E}, false);
    if (c.is_moe_layer(il)) {
      const int64_t F = c.n_ff_exp, X = c.n_expert;
      add(blk(il, "ffn_gate_inp.weight"), {E, X}, true);
      if (c.gating_sigmoid) add(blk(il, "exp_probs_b.bias"), {X}, false);
      add(blk(il, "ffn_gate_exps.weight"), {E, F, X}, true);
      add(blk(il, "ffn_up_exps.weight"), {E, F, X}, true);
      add(blk(il, "ffn_down_exps.weight"), {F, E, X}, true);
      if (c.n_expert_shared > 0) {
        add(blk(il, "ffn_gate_shexp.weight"), {E, F * c.n_expert_shared}, true);
        add(blk(il, "ffn_up_shexp.weight"), {E, F * c.n_expert_shared}, true);
        add(blk(il, "ffn_down_shexp.weight"), {F * c.n_expert_shared, E}, true);
      }
    } else {
      add(blk(il, "ffn_gate.weight"), {E, c.n_ff}, true);
      add(blk(il, "ffn_up.weight"), {E, c.n_ff}, true);
      add(blk(il, "ffn_down.weight"), {c.n_ff, E}, true);
    }
  }
  values_.assign(static_cast<size_t>(offset), 0.0f);
  grads_.assign(static_cast<size_t>(offset), 0.0f);
}

const ParamInfo& TrainModel::param(const std::string& name) const {
  for (const ParamInfo& p : info_)
    if (p.name == name) return p;
  fail("train: the model has no parameter '", name, "'");
}

std::vector<uint8_t> TrainModel::decay_mask() const {
  std::vector<uint8_t> m(values_.size(), 0);
  for (const ParamInfo& p : info_)
    if (p.decay) std::fill_n(m.begin() + p.offset, p.size, uint8_t{1});
  return m;
}

void TrainModel::zero_grads() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

void TrainModel::init_random(uint64_t seed, float std) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float out_std = std / std::sqrt(2.0f * static_cast<float>(c_.n_layer));
  for (const ParamInfo& p : info_) {
    float* v = values_.data() + p.offset;
    const bool is_norm = p.name.find("norm") != std::string::npos;
    const bool is_bias = p.name.find(".bias") != std::string::npos;
    if (is_norm) {
      std::fill_n(v, p.size, 1.0f);
    } else if (is_bias) {
      std::fill_n(v, p.size, 0.0f);
    } else {
      const bool residual_out =
          p.name.find("attn_output") != std::string::npos || p.name.find("ffn_down") != std::string::npos;
      const float s = residual_out ? out_std : std;
      for (int64_t i = 0; i < p.size; ++i) v[i] = s * normal(rng);
    }
  }
}

void TrainModel::load_gguf(const std::string& path) {
  auto file = GgufFile::open(path);
  auto read = [&](const std::string& name, int64_t n, float* dst) {
    const GgufTensorInfo* t = file->find_tensor(name);
    MOE_CHECK(t != nullptr, path, ": tensor '", name, "' is missing");
    MOE_CHECK(t->type == DType::F32 || t->type == DType::F16 || t->type == DType::BF16, path, ": tensor '",
              name, "' is ", dtype_name(t->type), "; training loads f32, f16 or bf16");
    MOE_CHECK(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3] == n, path, ": tensor '", name,
              "' has the wrong size");
    kernels::dequantize_row(t->type, file->tensor_data(*t), dst, n);
  };
  for (const ParamInfo& p : info_) {
    float* dst = values_.data() + p.offset;
    if (p.name.ends_with("attn_kv_b.weight") && file->find_tensor(p.name) == nullptr) {
      // Newer layout: attn_k_b ne {nope, rank, H} and attn_v_b ne {rank, dv, H}; rebuild kv_b.
      const std::string b = p.name.substr(0, p.name.size() - std::string("attn_kv_b.weight").size());
      const int64_t H = c_.n_head, rank = c_.kv_lora_rank, nope = c_.qk_nope_dim, dv = c_.head_dim_v;
      std::vector<float> kb(static_cast<size_t>(H * rank * nope)), vb(static_cast<size_t>(H * dv * rank));
      read(b + "attn_k_b.weight", H * rank * nope, kb.data());
      read(b + "attn_v_b.weight", H * dv * rank, vb.data());
      for (int64_t hd = 0; hd < H; ++hd) {
        for (int64_t i = 0; i < nope; ++i)
          for (int64_t k = 0; k < rank; ++k)
            dst[(hd * (nope + dv) + i) * rank + k] = kb[(hd * rank + k) * nope + i];
        for (int64_t i = 0; i < dv; ++i)
          for (int64_t k = 0; k < rank; ++k)
            dst[(hd * (nope + dv) + nope + i) * rank + k] = vb[(hd * dv + i) * rank + k];
      }
      continue;
    }
    read(p.name, p.size, dst);
  }
}

// ---- the whole network ------------------------------------------------------------------------

struct TrainModel::Impl {
  // Views of layer il's tensors in buffer base (values or gradients).
  static LayerParams layer(const TrainModel& m, float* base, int64_t il) {
    LayerParams p;
    const std::string pre = "blk." + std::to_string(il) + ".";
    auto at = [&](const char* name) -> float* {
      const std::string full = pre + name;
      for (const ParamInfo& i : m.info_)
        if (i.name == full) return base + i.offset;
      return nullptr;
    };
    p.attn_norm = at("attn_norm.weight");
    p.ffn_norm = at("ffn_norm.weight");
    p.wq = at("attn_q.weight");
    p.wk = at("attn_k.weight");
    p.wv = at("attn_v.weight");
    p.wo = at("attn_output.weight");
    p.wq_a = at("attn_q_a.weight");
    p.q_a_norm = at("attn_q_a_norm.weight");
    p.wq_b = at("attn_q_b.weight");
    p.wkv_a = at("attn_kv_a_mqa.weight");
    p.kv_a_norm = at("attn_kv_a_norm.weight");
    p.wkv_b = at("attn_kv_b.weight");
    if (m.c_.is_moe_layer(il)) {
      p.w_gate = at("ffn_gate_shexp.weight");
      p.w_up = at("ffn_up_shexp.weight");
      p.w_down = at("ffn_down_shexp.weight");
    } else {
      p.w_gate = at("ffn_gate.weight");
      p.w_up = at("ffn_up.weight");
      p.w_down = at("ffn_down.weight");
    }
    p.gate_inp = at("ffn_gate_inp.weight");
    p.probs_bias = at("exp_probs_b.bias");
    p.gate_exps = at("ffn_gate_exps.weight");
    p.up_exps = at("ffn_up_exps.weight");
    p.down_exps = at("ffn_down_exps.weight");
    return p;
  }

  // The weights the products use: the masters, or a copy rounded to the compute precision (the
  // norms and the selection bias stay f32, as autocast keeps them).
  static std::vector<float> compute_weights(const TrainModel& m, Precision pr) {
    std::vector<float> w = m.values_;
    if (pr == Precision::kF32) return w;
    for (const ParamInfo& p : m.info_) {
      if (!p.decay) continue;
      round_to(pr, w.data() + p.offset, w.data() + p.offset, p.size);
    }
    return w;
  }

  // want: 0 = loss only, 1 = loss and gradients, 2 = logits only (into *logits_out).
  static StepResult run(TrainModel& m, const int32_t* tokens, int64_t B, int64_t T, const TrainOptions& opt,
                        float grad_scale, float loss_scale, ThreadPool& pool, int want,
                        std::vector<float>* logits_out) {
    const ModelConfig& c = m.c_;
    MOE_CHECK(B > 0 && T > 0, "train: empty batch");
    const int64_t N = B * T, D = c.n_embd, V = c.n_vocab, L = c.n_layer;
    const int64_t row = want == 2 ? T : T + 1;
    std::vector<int32_t> inputs(static_cast<size_t>(N)), targets(static_cast<size_t>(N), -1),
        pos(static_cast<size_t>(N));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        const int32_t tok = tokens[b * row + t];
        MOE_CHECK(tok >= 0 && tok < V, "train: token ", tok, " is outside the vocabulary of ", V);
        inputs[b * T + t] = tok;
        pos[b * T + t] = static_cast<int32_t>(t);
        if (want != 2) {
          const int32_t tgt = tokens[b * row + t + 1];
          MOE_CHECK(tgt >= 0 && tgt < V, "train: token ", tgt, " is outside the vocabulary of ", V);
          targets[b * T + t] = tgt;
        }
      }
    const RopeTable rope = make_rope_table(T, c.rope.n_rot, c.rope.freq_base);
    std::vector<float> w = compute_weights(m, opt.precision);
    const bool backward = want == 1;
    const bool keep_all = backward && !opt.checkpoint_activations;

    LayerCtx ctx;
    ctx.c = &c;
    ctx.B = B;
    ctx.T = T;
    ctx.N = N;
    ctx.pos = &pos;
    ctx.rope = &rope;
    ctx.precision = opt.precision;
    ctx.aux_alpha = opt.aux_alpha;
    ctx.pool = &pool;

    StepResult res;
    res.n_targets = want == 2 ? 0 : N;
    res.expert_counts.assign(static_cast<size_t>(L), {});
    std::vector<LayerActs> acts(static_cast<size_t>(L));
    std::vector<float> x(static_cast<size_t>(N * D));  // [N, D] the residual stream
    embedding_forward(inputs.data(), w.data() + m.param("token_embd.weight").offset, x.data(), N, D);
    int64_t held = 0, peak = 0;
    for (int64_t il = 0; il < L; ++il) {
      ctx.il = il;
      LayerActs& a = acts[il];
      a.x_in = x;
      layer_forward(ctx, layer(m, w.data(), il), &a, x.data());
      res.aux += a.aux;
      if (c.is_moe_layer(il)) {
        res.expert_counts[il].assign(static_cast<size_t>(c.n_expert), 0);
        for (int64_t e = 0; e < c.n_expert; ++e)
          res.expert_counts[il][e] = static_cast<int64_t>(a.rows[e].size());
      }
      const int64_t b = a.bytes();
      peak = std::max(peak, held + b);
      if (keep_all) {
        held += b;
      } else {  // keep only the block input (checkpointing) or nothing (no backward)
        std::vector<float> x_in = backward ? std::move(a.x_in) : std::vector<float>();
        a = LayerActs();
        a.x_in = std::move(x_in);
        held += static_cast<int64_t>(a.x_in.size() * sizeof(float));
      }
    }
    // Final norm and head.
    std::vector<float> xf(static_cast<size_t>(N * D)), rstd_f(static_cast<size_t>(N));
    const float* out_norm = w.data() + m.param("output_norm.weight").offset;
    const float* w_out = w.data() + m.param("output.weight").offset;
    rmsnorm_forward(x.data(), D, out_norm, xf.data(), D, rstd_f.data(), N, D, c.rms_eps);
    std::vector<float> logits(static_cast<size_t>(N * V));  // [N, V]
    linear_fwd(opt.precision, xf.data(), w_out, logits.data(), N, D, V);
    held += (2 * N * D + N + N * V) * static_cast<int64_t>(sizeof(float));  // xf, x, rstd_f, logits
    peak = std::max(peak, held);
    if (want == 2) {
      *logits_out = std::move(logits);
      return res;
    }
    // d(total)/d(logit) for the mean over N targets, times the loss and accumulation scales.
    const float dscale = grad_scale * loss_scale;
    const double ce_sum = cross_entropy(logits.data(), targets.data(), N, V, dscale / static_cast<float>(N),
                                        logits.data(), &pool);
    res.loss = ce_sum / static_cast<double>(N);
    if (!backward) return res;

    float* g = m.grads_.data();
    std::vector<float> dxf(static_cast<size_t>(N * D), 0.0f), dx(static_cast<size_t>(N * D), 0.0f);
    linear_bwd(opt.precision, logits.data(), xf.data(), w_out, dxf.data(),
               g + m.param("output.weight").offset, N, D, V);
    logits = std::vector<float>();
    rmsnorm_backward(dxf.data(), D, x.data(), D, out_norm, rstd_f.data(), dx.data(),
                     g + m.param("output_norm.weight").offset, N, D);
    for (int64_t il = L - 1; il >= 0; --il) {
      ctx.il = il;
      LayerActs& a = acts[il];
      if (opt.checkpoint_activations) {  // recompute the block from its saved input
        std::vector<float> scratch(static_cast<size_t>(N * D));
        layer_forward(ctx, layer(m, w.data(), il), &a, scratch.data());
        peak = std::max(peak, held + a.bytes());
      }
      layer_backward(ctx, layer(m, w.data(), il), layer(m, g, il), a, dscale, dx.data());
      a = LayerActs();
    }
    embedding_backward(inputs.data(), dx.data(), g + m.param("token_embd.weight").offset, N, D);
    res.activation_bytes = peak;
    return res;
  }
};

StepResult TrainModel::forward_backward(const int32_t* tokens, int64_t B, int64_t T, const TrainOptions& opt,
                                        float grad_scale, float loss_scale, ThreadPool& pool) {
  return Impl::run(*this, tokens, B, T, opt, grad_scale, loss_scale, pool, 1, nullptr);
}

StepResult TrainModel::evaluate(const int32_t* tokens, int64_t B, int64_t T, const TrainOptions& opt,
                                ThreadPool& pool) {
  return Impl::run(*this, tokens, B, T, opt, 1.0f, 1.0f, pool, 0, nullptr);
}

std::vector<float> TrainModel::logits(const int32_t* tokens, int64_t B, int64_t T, ThreadPool& pool) {
  std::vector<float> out;
  Impl::run(*this, tokens, B, T, TrainOptions{}, 1.0f, 1.0f, pool, 2, &out);
  return out;
}

void TrainModel::update_balance_bias(const std::vector<std::vector<int64_t>>& counts, float gamma) {
  for (int64_t il = 0; il < c_.n_layer && il < static_cast<int64_t>(counts.size()); ++il) {
    if (!c_.is_moe_layer(il) || !c_.gating_sigmoid || counts[il].empty()) continue;
    float* bias = values_.data() + param(blk(il, "exp_probs_b.bias")).offset;
    double mean = 0.0;
    for (int64_t n : counts[il]) mean += static_cast<double>(n);
    mean /= static_cast<double>(counts[il].size());
    for (size_t e = 0; e < counts[il].size(); ++e) {
      const double load = static_cast<double>(counts[il][e]);
      if (load < mean)
        bias[e] += gamma;
      else if (load > mean)
        bias[e] -= gamma;
    }
  }
}

}  // namespace moe::train
