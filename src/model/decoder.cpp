#include "model/decoder.h"

#include <cstdlib>
#include <string>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/ref/quant_dot.h"
#include "model/weights.h"

namespace moe {

namespace {

GqaWeights load_gqa(const WeightLoader& w, const ModelConfig& c, const std::string& b, bool bias) {
  GqaWeights a;
  a.wq = w.matrix(b + "attn_q.weight", {c.n_embd, c.n_head * c.head_dim_k});
  a.wk = w.matrix(b + "attn_k.weight", {c.n_embd, c.n_head_kv * c.head_dim_k});
  a.wv = w.matrix(b + "attn_v.weight", {c.n_embd, c.n_head_kv * c.head_dim_v});
  a.wo = w.matrix(b + "attn_output.weight", {c.n_head * c.head_dim_v, c.n_embd});
  if (bias) {
    a.bq = w.vector(b + "attn_q.bias", c.n_head * c.head_dim_k);
    a.bk = w.vector(b + "attn_k.bias", c.n_head_kv * c.head_dim_k);
    a.bv = w.vector(b + "attn_v.bias", c.n_head_kv * c.head_dim_v);
  }
  return a;
}

// Per-head 2-D slices of a 3-D tensor ne {a, b, n_head}.
std::vector<Tensor> head_slices(const Tensor& t, int64_t n_head) {
  std::vector<Tensor> out;
  for (int64_t hd = 0; hd < n_head; ++hd) out.push_back(expert_slice(t, hd));
  return out;
}

MlaWeights load_mla(const WeightLoader& w, const ModelConfig& c, const std::string& b) {
  MlaWeights a;
  const int64_t n_head = c.n_head, dk = c.head_dim_k, dv = c.head_dim_v;
  const int64_t rank = c.kv_lora_rank, nope = c.qk_nope_dim;
  if (c.q_lora_rank == 0) {
    a.wq = w.matrix(b + "attn_q.weight", {c.n_embd, n_head * dk});
  } else {
    a.wq_a = w.matrix(b + "attn_q_a.weight", {c.n_embd, c.q_lora_rank});
    a.q_a_norm = w.vector(b + "attn_q_a_norm.weight", c.q_lora_rank);
    a.wq_b = w.matrix(b + "attn_q_b.weight", {c.q_lora_rank, n_head * dk});
  }
  a.wkv_a = w.matrix(b + "attn_kv_a_mqa.weight", {c.n_embd, rank + c.rope.n_rot});
  a.kv_a_norm = w.vector(b + "attn_kv_a_norm.weight", rank);
  a.wo = w.matrix(b + "attn_output.weight", {n_head * dv, c.n_embd});
  const bool split =
      w.file().find_tensor(b + "attn_k_b.weight") || w.file().find_tensor(b + "attn_v_b.weight");
  MOE_CHECK(split || w.file().find_tensor(b + "attn_kv_b.weight"), w.file().name(), ": tensor '", b,
            "attn_k_b.weight' is missing (and there is no '", b, "attn_kv_b.weight' of the older layout)");
  if (split) {
    a.wk_b = head_slices(w.matrix(b + "attn_k_b.weight", {nope, rank, n_head}), n_head);
    a.wv_b = head_slices(w.matrix(b + "attn_v_b.weight", {rank, dv, n_head}), n_head);
    return a;
  }
  // Older files: attn_kv_b holds, per head, nope rows of W_k then dv rows of W_v, each of rank
  // inputs. W_v rows are usable in place; W_k must be transposed for absorption.
  const Tensor kv_b = w.matrix(b + "attn_kv_b.weight", {rank, n_head * (nope + dv)});
  a.owned = std::make_shared<std::vector<float>>(static_cast<size_t>(n_head * rank * nope));
  std::vector<float> row(static_cast<size_t>(rank));
  for (int64_t hd = 0; hd < n_head; ++hd) {
    float* kb = a.owned->data() + hd * rank * nope;  // [rank, nope]: ne {nope, rank}
    for (int64_t i = 0; i < nope; ++i) {
      kernels::dequantize_row(kv_b.type, kv_b.row(hd * (nope + dv) + i), row.data(), rank);
      for (int64_t r = 0; r < rank; ++r) kb[r * nope + i] = row[r];
    }
    Tensor k;
    k.name = b + "attn_kv_b.weight[k" + std::to_string(hd) + "]";
    k.type = DType::F32;
    k.n_dims = 2;
    k.ne[0] = nope;
    k.ne[1] = rank;
    k.data = kb;
    set_contiguous_strides(k);
    a.wk_b.push_back(k);
    Tensor v = kv_b;
    v.name = b + "attn_kv_b.weight[v" + std::to_string(hd) + "]";
    v.ne[1] = dv;
    v.nb[2] = v.nb[3] = v.nb[1] * static_cast<size_t>(dv);
    v.data = kv_b.row(hd * (nope + dv) + nope);
    a.wv_b.push_back(v);
  }
  return a;
}

FfnWeights load_ffn(const WeightLoader& w, const ModelConfig& c, const std::string& b,
                    const std::string& suffix, int64_t n_ff) {
  return FfnWeights{w.matrix(b + "ffn_gate" + suffix + ".weight", {c.n_embd, n_ff}),
                    w.matrix(b + "ffn_up" + suffix + ".weight", {c.n_embd, n_ff}),
                    w.matrix(b + "ffn_down" + suffix + ".weight", {n_ff, c.n_embd})};
}

MoeWeights load_moe(const WeightLoader& w, const ModelConfig& c, const std::string& b) {
  MoeWeights m;
  const int64_t n_ff = c.n_ff_exp, n_expert = c.n_expert;
  m.gate_inp = w.matrix(b + "ffn_gate_inp.weight", {c.n_embd, n_expert});
  m.bias = w.optional_vector(b + "exp_probs_b.bias", n_expert);
  if (w.file().find_tensor(b + "ffn_gate_exps.weight") != nullptr) {
    const Tensor gate = w.matrix(b + "ffn_gate_exps.weight", {c.n_embd, n_ff, n_expert});
    const Tensor up = w.matrix(b + "ffn_up_exps.weight", {c.n_embd, n_ff, n_expert});
    const Tensor down = w.matrix(b + "ffn_down_exps.weight", {n_ff, c.n_embd, n_expert});
    for (int64_t e = 0; e < n_expert; ++e) {
      m.experts.push_back(FfnWeights{expert_slice(gate, e), expert_slice(up, e), expert_slice(down, e)});
    }
  } else {
    for (int64_t e = 0; e < n_expert; ++e) {
      m.experts.push_back(load_ffn(w, c, b, "." + std::to_string(e), n_ff));
    }
  }
  if (c.n_expert_shared > 0) m.shared = load_ffn(w, c, b, "_shexp", c.n_expert_shared * n_ff);
  return m;
}

}  // namespace

void validate_config(const ModelConfig& c, const std::string& src) {
  if (c.n_expert > 0) {
    MOE_CHECK(c.n_expert <= 4096, src, ": expert_count = ", c.n_expert, " is out of range");
    MOE_CHECK(c.n_expert_used > 0 && c.n_expert_used <= c.n_expert, src,
              ": expert_used_count = ", c.n_expert_used, " must be in [1, expert_count = ", c.n_expert, "]");
    MOE_CHECK(c.n_ff_exp > 0, src, ": the expert feed-forward width must be positive");
    MOE_CHECK(c.n_layer_dense_lead >= 0 && c.n_layer_dense_lead <= c.n_layer, src,
              ": leading_dense_block_count = ", c.n_layer_dense_lead, " is out of range");
    MOE_CHECK(c.n_expert_shared >= 0 && c.n_expert_shared <= 64, src,
              ": expert_shared_count = ", c.n_expert_shared, " is out of range");
    if (c.n_expert_groups > 1) {
      MOE_CHECK(c.n_expert % c.n_expert_groups == 0, src, ": expert_group_count = ", c.n_expert_groups,
                " does not divide expert_count = ", c.n_expert);
      MOE_CHECK(c.n_group_used > 0 && c.n_group_used <= c.n_expert_groups, src,
                ": expert_group_used_count = ", c.n_group_used, " must be in [1, expert_group_count]");
      MOE_CHECK(c.n_group_used * (c.n_expert / c.n_expert_groups) >= c.n_expert_used, src,
                ": the kept expert groups hold fewer experts than expert_used_count");
    }
  } else {
    MOE_CHECK(c.n_expert_used == 0, src, ": expert_used_count is set but expert_count is 0");
  }
  if (c.kv_lora_rank > 0) {
    MOE_CHECK(c.kv_lora_rank <= 65536 && c.q_lora_rank >= 0 && c.q_lora_rank <= 65536, src,
              ": MLA ranks are out of range");
    MOE_CHECK(c.qk_nope_dim > 0 && c.qk_nope_dim + c.rope.n_rot == c.head_dim_k, src, ": MLA key length ",
              c.head_dim_k, " must be the no-rope dims plus rope.dimension_count ", c.rope.n_rot);
  }
}

DecoderWeights load_decoder(const GgufFile& file, const ModelConfig& c, const DecoderOptions& opt) {
  validate_config(c, file.name());
  WeightLoader w(file);
  DecoderWeights d;
  d.tok_embd = w.matrix("token_embd.weight", {c.n_embd, c.n_vocab});
  d.output_norm = w.vector("output_norm.weight", c.n_embd);
  // Tied embeddings: without output.weight the embedding matrix doubles as the output head.
  d.output = w.optional_matrix("output.weight", {c.n_embd, c.n_vocab}).value_or(d.tok_embd);
  d.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    DecoderLayer& l = d.layers[il];
    l.attn_norm = w.vector(b + "attn_norm.weight", c.n_embd);
    if (c.is_mla()) {
      l.mla = load_mla(w, c, b);
    } else {
      l.gqa = load_gqa(w, c, b, opt.qkv_bias);
    }
    l.ffn_norm = w.vector(b + "ffn_norm.weight", c.n_embd);
    if (c.is_moe_layer(il)) {
      l.moe = load_moe(w, c, b);
    } else {
      MOE_CHECK(c.n_ff > 0, file.name(), ": ", c.arch, ".feed_forward_length is missing or zero");
      l.ffn = load_ffn(w, c, b, "", c.n_ff);
    }
  }
  group_matrices(d);
  return d;
}

namespace {

bool groupable(const Tensor& t) {
  return (t.type == DType::Q8_0 || t.type == DType::Q4_0) && !t.grouped && t.data != nullptr;
}

}  // namespace

void group_matrices(DecoderWeights& d) {
  if (const char* env = std::getenv("MOE_REPACK"); env != nullptr && std::string(env) == "0") return;
  std::vector<Tensor*> todo;
  auto add = [&](Tensor& t) {
    if (groupable(t)) todo.push_back(&t);
  };
  auto ffn = [&](FfnWeights& f) {
    add(f.gate);
    add(f.up);
    add(f.down);
  };
  add(d.output);
  for (DecoderLayer& l : d.layers) {
    if (l.gqa)
      for (Tensor* t : {&l.gqa->wq, &l.gqa->wk, &l.gqa->wv, &l.gqa->wo}) add(*t);
    if (l.mla) {
      MlaWeights& m = *l.mla;
      for (std::optional<Tensor>* t : {&m.wq, &m.wq_a, &m.wq_b})
        if (*t) add(**t);
      add(m.wkv_a);
      add(m.wo);
      for (Tensor& t : m.wk_b) add(t);
      for (Tensor& t : m.wv_b) add(t);
    }
    if (l.ffn) ffn(*l.ffn);
    if (l.moe) {
      add(l.moe->gate_inp);
      for (FfnWeights& f : l.moe->experts) ffn(f);
      if (l.moe->shared) ffn(*l.moe->shared);
    }
  }
  // One buffer for all, each matrix at a 64-byte boundary.
  auto padded = [](size_t n) { return (n + 63) / 64 * 64; };
  size_t total = 0;
  for (const Tensor* t : todo) total += padded(row_bytes(t->type, t->ne[0]) * static_cast<size_t>(t->rows()));
  if (total == 0) return;
  d.owned = std::make_shared<HugeBuffer>(total);
  size_t off = 0;
  for (Tensor* t : todo) {
    const size_t rb = row_bytes(t->type, t->ne[0]);
    uint8_t* dst = d.owned->data() + off;
    kernels::ref::group_rows(t->type, static_cast<const uint8_t*>(t->data), t->nb[1], t->rows(), t->ne[0],
                             dst);
    t->data = dst;
    t->nb[1] = rb;
    t->nb[2] = rb * static_cast<size_t>(t->ne[1]);
    t->nb[3] = t->nb[2] * static_cast<size_t>(t->ne[2]);
    t->grouped = true;
    off += padded(rb * static_cast<size_t>(t->rows()));
  }
}

DecoderModel::DecoderModel(ModelConfig cfg, DecoderWeights w) : w_(std::move(w)) { config_ = std::move(cfg); }

KvCache DecoderModel::new_cache(int64_t n_ctx) const {
  const ModelConfig& c = config_;
  if (c.is_mla()) return new_mla_cache(c, n_ctx);
  return KvCache(c.n_layer, n_ctx, c.n_head_kv * c.head_dim_k, c.n_head_kv * c.head_dim_v);
}

void DecoderModel::forward(std::span<const int32_t> tokens, int64_t pos0, KvCache& cache, bool all_logits,
                           float* logits, ThreadPool& pool) const {
  const SeqBatch seq{tokens, pos0, &cache, all_logits};
  forward_batch({&seq, 1}, logits, pool);
}

void DecoderModel::forward_batch(std::span<const SeqBatch> seqs, float* logits, ThreadPool& pool,
                                 ForwardStats* stats) const {
  const ModelConfig& c = config_;
  std::vector<SeqRows> seq_rows;
  std::vector<int32_t> tokens;  // [n] every sequence's tokens, in order
  std::vector<int64_t> out_rows;
  for (const SeqBatch& s : seqs) {
    MOE_CHECK(s.cache != nullptr, "forward: a sequence has no cache");
    const int64_t row0 = static_cast<int64_t>(tokens.size()), m = static_cast<int64_t>(s.tokens.size());
    if (m == 0) continue;
    seq_rows.push_back(SeqRows{row0, m, s.pos0, s.cache});
    tokens.insert(tokens.end(), s.tokens.begin(), s.tokens.end());
    for (int64_t r = s.all_logits ? 0 : m - 1; r < m; ++r) out_rows.push_back(row0 + r);
  }
  const RowMap rows(seq_rows);
  const int64_t n = rows.n_rows;
  if (n == 0) return;
  if (stats) stats->expert_counts.resize(static_cast<size_t>(c.n_layer));
  std::vector<float> x(static_cast<size_t>(n * c.n_embd));  // [n, n_embd] residual stream
  std::vector<float> h(x.size());                           // [n, n_embd] normed input
  std::vector<float> y(x.size());                           // [n, n_embd] block output
  embed_tokens(w_.tok_embd, tokens, x.data());
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const DecoderLayer& l = w_.layers[il];
    rms_norm_rows(x.data(), l.attn_norm.data(), n, c.n_embd, c.rms_eps, h.data());
    if (l.mla) {
      attention_mla(c, *l.mla, il, h.data(), rows, y.data(), pool);
    } else {
      attention_gqa(c, *l.gqa, il, h.data(), rows, y.data(), pool);
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
    rms_norm_rows(x.data(), l.ffn_norm.data(), n, c.n_embd, c.rms_eps, h.data());
    if (l.moe) {
      std::vector<int64_t>* counts = nullptr;
      if (stats) {
        counts = &stats->expert_counts[il];
        counts->resize(static_cast<size_t>(c.n_expert));
      }
      ffn_moe(c, *l.moe, h.data(), n, y.data(), pool, counts);
    } else {
      ffn_swiglu(*l.ffn, h.data(), n, y.data(), pool);
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
  }
  output_logits(c, w_.output_norm, w_.output, x.data(), out_rows, logits, pool);
}

KvBytesPerToken kv_bytes_per_token(const ModelConfig& c) {
  KvBytesPerToken b;
  const int64_t f = static_cast<int64_t>(sizeof(float));
  b.naive = c.n_layer * c.n_head * (c.head_dim_k + c.head_dim_v) * f;
  b.stored = c.is_mla() ? c.n_layer * (c.kv_lora_rank + c.rope.n_rot) * f
                        : c.n_layer * c.n_head_kv * (c.head_dim_k + c.head_dim_v) * f;
  return b;
}

}  // namespace moe
